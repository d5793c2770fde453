"""Pachón's image type: pixels, mask planes, variance, WCS and metadata in one object.

:class:`Exposure` plays the role of the Rubin stack's ``ExposureF`` but is an
:class:`astropy.nddata.CCDData`, so notebooks use it with the astropy ecosystem directly
(``exp.wcs``, ``exp.data``, ``exp.uncertainty.array``). Unlike plain CCDData the mask is
an ``int32`` array of bit planes (:data:`MASK_PLANES`), as in the LSST stack, so a pixel can
be saturated *and* a cosmic ray.

On disk (:func:`write_fits` / :func:`read_fits`) an Exposure is a multi-extension FITS file
laid out the way ``CCDData.read`` expects — PRIMARY (image + WCS + metadata), ``MASK``
(int32, with ``MP_<NAME>`` bit keywords), ``UNCERT`` (variance, ``UTYPE =
'VarianceUncertainty'``) — so ``CCDData.read(path)`` and DS9 open our files too, while
:func:`read_fits` restores the full bit mask bit for bit.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.wcs import WCS, FITSFixedWarning

__all__ = ["MASK_PLANES", "Exposure", "ImageFormatError", "read_fits", "write_fits"]

MASK_PLANES: dict[str, int] = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
    "STREAK": 9,
}
"""Mask plane name → bit number (the LSST stack's names)."""

_WCS_KEY_PREFIXES = (
    "WCSAXES", "CRPIX", "CRVAL", "CTYPE", "CUNIT", "CDELT", "CD1_", "CD2_", "PC1_", "PC2_",
    "LONPOLE", "LATPOLE", "RADESYS", "EQUINOX", "MJDREF", "DATEREF", "A_", "B_", "AP_", "BP_",
    "A_ORDER", "B_ORDER", "AP_ORDER", "BP_ORDER", "A_DMAX", "B_DMAX", "WCSNAME", "MJD-OBS", "DATE-OBS",
    "PV1_", "PV2_",
)  # fmt: skip


class ImageFormatError(ValueError):
    """A file is not a readable Pachón image; the message says which file and what is wrong."""


class Exposure(CCDData):  # type: ignore[misc]
    """An image with int32 mask planes, a variance plane, a WCS and a FITS-header ``meta``.

    Examples
    --------
    >>> import numpy as np
    >>> from pachon.core.image import Exposure
    >>> exp = Exposure(np.zeros((4, 4), np.float32), unit="adu")
    >>> exp.set_mask_plane("SAT", exp.data > 1e4)
    >>> int(exp.mask_plane("SAT").sum())
    0
    """

    def __init__(self, data: Any, *args: Any, **kwargs: Any) -> None:
        if "unit" not in kwargs and not isinstance(data, CCDData | u.Quantity):
            kwargs["unit"] = "adu"
        super().__init__(data, *args, **kwargs)
        if self._mask is None or self._mask is np.ma.nomask or np.asarray(self._mask).dtype != np.int32:
            self.mask = kwargs.get("mask")

    # CCDData (via NDDataArray) coerces masks to bool; ours are int32 bit planes.
    @property  # type: ignore[override]
    def mask(self) -> np.ndarray:
        return self._mask  # type: ignore[no-any-return]

    @mask.setter
    def mask(self, value: Any) -> None:
        if value is None or value is np.ma.nomask:
            self._mask = np.zeros(np.shape(self.data), dtype=np.int32)
            return
        mask = np.asarray(value)
        if mask.shape != np.shape(self.data):
            raise ValueError(f"mask shape {mask.shape} does not match the image {np.shape(self.data)}")
        self._mask = mask.astype(np.int32, copy=False)

    # Convenience views named as scientists think of them ------------------------------
    @property
    def image(self) -> np.ndarray:
        return np.asarray(self.data)

    @property
    def variance(self) -> np.ndarray | None:
        """The variance plane (same unit squared), or None for images without one (e.g. raw)."""
        return None if self.uncertainty is None else np.asarray(self.uncertainty.array)

    @variance.setter
    def variance(self, value: np.ndarray | None) -> None:
        self.uncertainty = None if value is None else VarianceUncertainty(value)

    @property
    def metadata(self) -> fits.Header:
        """The FITS-header metadata (the Butler component ``metadata``)."""
        return self.header_copy()

    def mask_plane(self, name: str) -> np.ndarray:
        """Boolean array of pixels with the named plane set."""
        return (np.asarray(self.mask) & (1 << MASK_PLANES[name])) != 0

    def set_mask_plane(self, name: str, where: np.ndarray) -> None:
        """Set the named plane wherever ``where`` is true (other planes untouched)."""
        self.mask[where] |= np.int32(1 << MASK_PLANES[name])

    def copy(self) -> Exposure:
        return Exposure(
            np.array(self.data),
            unit=self.unit,
            mask=np.array(self.mask),
            uncertainty=None if self.uncertainty is None else VarianceUncertainty(np.array(self.variance)),
            wcs=None if self.wcs is None else self.wcs.deepcopy(),
            meta=fits.Header(self.header_copy()),
        )

    def header_copy(self) -> fits.Header:
        meta = self.meta
        return meta.copy() if isinstance(meta, fits.Header) else fits.Header(dict(meta))


def _clean_meta(meta: Mapping[str, Any] | fits.Header | None) -> fits.Header:
    """Metadata without WCS keywords (the WCS object is the one source of truth)."""
    header = meta.copy() if isinstance(meta, fits.Header) else fits.Header(dict(meta or {}))
    for key in list(header.keys()):
        if key.startswith(_WCS_KEY_PREFIXES) and key not in ("MJD-OBS", "DATE-OBS"):
            del header[key]
    return header


def write_fits(exposure: Exposure, target: str | Path | BinaryIO) -> None:
    """Write an Exposure as a CCDData-compatible multi-extension FITS file."""
    header = _clean_meta(exposure.meta)
    if exposure.wcs is not None:
        header.extend(exposure.wcs.to_header(relax=True), update=True)
    header["BUNIT"] = exposure.unit.to_string("fits") if exposure.unit is not None else ""
    hdus = [fits.PrimaryHDU(np.asarray(exposure.data), header=header)]
    mask_header = fits.Header()
    for name, bit in MASK_PLANES.items():
        mask_header[f"MP_{name}"[:8]] = (bit, f"mask plane bit for {name}")
    hdus.append(fits.ImageHDU(np.asarray(exposure.mask, dtype=np.int32), header=mask_header, name="MASK"))
    if exposure.uncertainty is not None:
        var_header = fits.Header()
        var_header["UTYPE"] = "VarianceUncertainty"
        hdus.append(fits.ImageHDU(np.asarray(exposure.variance), header=var_header, name="UNCERT"))
    fits.HDUList(hdus).writeto(target, overwrite=True, output_verify="exception", checksum=False)


def _native(array: np.ndarray) -> np.ndarray:
    """FITS stores big-endian; hand back native byte order (same values, same kind and size)."""
    return np.array(array, dtype=array.dtype.newbyteorder("="))


def read_fits(source: str | Path | bytes) -> Exposure:
    """Read a file written by :func:`write_fits` (or any CCDData-style MEF) bit for bit."""
    label = "<bytes>" if isinstance(source, bytes) else str(source)
    opener = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with fits.open(opener, memmap=False) as hdul:
            primary = hdul[0]
            if primary.data is None:
                raise ImageFormatError(f"{label}: the primary HDU holds no image")
            header = primary.header.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                wcs = WCS(header) if "CTYPE1" in header else None
            unit = header.get("BUNIT") or "adu"
            mask = hdul["MASK"].data.astype(np.int32) if "MASK" in hdul else None
            variance = _native(hdul["UNCERT"].data) if "UNCERT" in hdul else None
            data = _native(primary.data)
    except ImageFormatError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ImageFormatError(f"{label}: not a readable FITS image ({exc})") from exc
    meta = _clean_meta(header)
    for key in ("BUNIT", "SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND"):
        meta.remove(key, ignore_missing=True)
    return Exposure(
        data,
        unit=unit,
        mask=mask,
        uncertainty=None if variance is None else VarianceUncertainty(variance),
        wcs=wcs,
        meta=meta,
    )
