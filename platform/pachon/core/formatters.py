"""Butler formatters for Pachón's own Python types.

The Butler maps a *storage class* (what a dataset is in memory) to a *formatter* (how it
is written to a file). Tables use the Butler's own Parquet formatter (storage class
``ArrowAstropy``); our image type :class:`pachon.core.image.Exposure` needs this one, so
that ``Butler(REPO).get("visit_image", visit=…, detector=…)`` returns an Exposure, as on
the Rubin platform.

Processed images are written tile-compressed (:data:`COMPRESSION_BY_DATASET_TYPE`): a 2k×2k
``visit_image`` shrinks from 50 MB to about 8 MB with the image quantized at σ/16 (see
:mod:`pachon.core.image` and ``benchmarks/core/bench_fits_compression.py`` for the figures).
Raws and flats stay plain FITS: the simulator writes raws at survey pace, and an instrument's
raw data and calibrations are kept exactly as taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath

from pachon.core.image import (
    LOSSLESS_COMPRESSION,
    LOSSY_COMPRESSION,
    Exposure,
    FitsCompression,
    read_fits,
    read_fits_header,
    write_fits,
)

__all__ = ["COMPRESSION_BY_DATASET_TYPE", "COMPRESSION_PRESETS", "ExposureFitsFormatter", "compression_for"]

COMPRESSION_PRESETS: Mapping[str, FitsCompression | None] = {
    "lossy": LOSSY_COMPRESSION,
    "lossless": LOSSLESS_COMPRESSION,
    "none": None,
}
"""Names a Butler config may give as the write parameter ``compression``."""

COMPRESSION_BY_DATASET_TYPE: Mapping[str, FitsCompression | None] = {
    "visit_image": LOSSY_COMPRESSION,
    "difference_image": LOSSY_COMPRESSION,
    "template_coadd": LOSSY_COMPRESSION,
    "deep_coadd": LOSSY_COMPRESSION,
}
"""How each Exposure dataset type is written; types not listed (``raw``, ``flat``) stay plain FITS."""


def compression_for(
    dataset_type: str, write_parameters: Mapping[str, Any] | None = None
) -> FitsCompression | None:
    """The compression a dataset type is written with (a ``compression`` write parameter wins).

    A repo's ``butler.yaml`` may override it per dataset type, the Butler way::

        datastore:
          formatters:
            visit_image:
              formatter: pachon.core.formatters.ExposureFitsFormatter
              parameters: {compression: lossless}
    """
    if write_parameters and "compression" in write_parameters:
        name = str(write_parameters["compression"])
        if name not in COMPRESSION_PRESETS:
            raise ValueError(
                f"write parameter compression={name!r} for {dataset_type}: use one of {', '.join(COMPRESSION_PRESETS)}"
            )
        return COMPRESSION_PRESETS[name]
    return COMPRESSION_BY_DATASET_TYPE.get(dataset_type)


class ExposureFitsFormatter(FormatterV2):
    """Read and write :class:`~pachon.core.image.Exposure` as multi-extension FITS.

    Components ``image``, ``mask``, ``variance``, ``wcs`` and ``metadata`` can be read on
    their own (``butler.get("visit_image.wcs", …)``) without the caller unpacking the whole
    object; ``wcs`` and ``metadata`` read only the header, the pixel components read the file once.
    Plain (older, uncompressed) and tile-compressed files are both read.
    """

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    supported_write_parameters = frozenset({"compression"})
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        if component in ("wcs", "metadata"):
            wcs, meta = read_fits_header(path)
            return wcs if component == "wcs" else meta
        exposure = read_fits(path)
        if component is None:
            return exposure
        if component == "image":
            return exposure.image
        if component == "mask":
            return exposure.mask
        if component == "variance":
            return exposure.variance
        raise ValueError(f"unknown component {component!r} of a Pachón Exposure")

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        if not isinstance(in_memory_dataset, Exposure):
            raise TypeError(f"expected a pachon.core.image.Exposure, got {type(in_memory_dataset).__name__}")
        name = self.dataset_ref.datasetType.nameAndComponent()[0]
        write_fits(in_memory_dataset, uri.ospath, compression_for(name, self.write_parameters))
