"""Butler formatters for Pachón's own Python types.

The Butler maps a *storage class* (what a dataset is in memory) to a *formatter* (how it
is written to a file). Tables use the Butler's own Parquet formatter (storage class
``ArrowAstropy``); our image type :class:`pachon.core.image.Exposure` needs this one, so
that ``Butler(REPO).get("visit_image", visit=…, detector=…)`` returns an Exposure, as on
the Rubin platform.
"""

from __future__ import annotations

from typing import Any

from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath

from pachon.core.image import Exposure, read_fits, write_fits

__all__ = ["ExposureFitsFormatter"]


class ExposureFitsFormatter(FormatterV2):
    """Read and write :class:`~pachon.core.image.Exposure` as multi-extension FITS.

    Components ``image``, ``mask``, ``variance``, ``wcs`` and ``metadata`` can be read on
    their own (``butler.get("visit_image.wcs", …)``) without the caller unpacking the whole
    object; the file is still read once.
    """

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        exposure = read_fits(path)
        if component is None:
            return exposure
        if component == "image":
            return exposure.image
        if component == "mask":
            return exposure.mask
        if component == "variance":
            return exposure.variance
        if component == "wcs":
            return exposure.wcs
        if component == "metadata":
            return exposure.meta
        raise ValueError(f"unknown component {component!r} of a Pachón Exposure")

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        if not isinstance(in_memory_dataset, Exposure):
            raise TypeError(f"expected a pachon.core.image.Exposure, got {type(in_memory_dataset).__name__}")
        write_fits(in_memory_dataset, uri.ospath)
