"""Postage stamps for alerts: FITS bytes of a small image, its variance and a local TAN WCS.

Why this layout: it is what Rubin's ``packageAlerts.py`` sends (an astropy ``CCDData`` written
to FITS): the image in nJy in the primary HDU, the variance in an ``UNCERT`` extension marked
``UTYPE = 'VarianceUncertainty'``, and optionally the PSF in ``PSFIMAGE``, so that
``astropy.nddata.CCDData.read(io.BytesIO(stamp))`` in a notebook gives the stamp with its
uncertainty and WCS. We write the HDUs with ``astropy.io.fits`` directly (the same bytes
``CCDData.write`` produces, about three times faster).

The WCS is a *local* TAN approximation at the stamp centre: the centre pixel's sky position
and the pixel→sky Jacobian measured there by finite differences of the full (possibly
distorted) WCS. Over ≤102 pixels the residual of a smooth distortion is far below a pixel,
and every FITS reader understands plain TAN, which SIP/TPV distortions do not guarantee.

Size: square, ``bboxSize`` clamped to 30–102 pixels as Rubin does (30 = minimum useful for
a PSF, 102 = longest trail at 10 deg/day in 30 s plus the PSF).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["MAX_SIZE", "MIN_SIZE", "Cutouts", "cutout_size", "make_cutout", "make_cutouts"]

MIN_SIZE = 30
MAX_SIZE = 102


def cutout_size(bbox_size: int | None) -> int:
    """Stamp side in pixels for a source footprint of ``bbox_size`` (clamped to 30–102)."""
    if bbox_size is None:
        return MIN_SIZE
    return int(min(MAX_SIZE, max(MIN_SIZE, int(bbox_size))))


@dataclass(frozen=True)
class Cutouts:
    """The three stamps of an alert as FITS bytes (any may be ``None``), all ``size`` pixels square."""

    difference: bytes | None
    science: bytes | None
    template: bytes | None
    size: int


def _extract(array: np.ndarray, x0: int, y0: int, size: int) -> np.ndarray:
    """``array[y0:y0+size, x0:x0+size]`` padded with NaN where the box leaves the image."""
    out = np.full((size, size), np.nan, dtype=np.float32)
    ny, nx = array.shape
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, nx), min(y0 + size, ny)
    if xs < xe and ys < ye:
        out[ys - y0 : ye - y0, xs - x0 : xe - x0] = array[ys:ye, xs:xe]
    return out


def _local_tan_header(wcs: Any, xc: float, yc: float, x0: int, y0: int) -> fits.Header:
    """A TAN header tangent at pixel ``(xc, yc)`` of the full image, for a stamp whose corner is ``(x0, y0)``."""
    step = 1.0
    pix = np.array([[xc, yc], [xc + step, yc], [xc, yc + step]])
    world = np.asarray(wcs.all_pix2world(pix, 0))
    ra0, dec0 = world[0]
    # Jacobian d(ra cos dec, dec)/d(x, y) in degrees per pixel, in the tangent plane.
    dra = (world[1:, 0] - ra0 + 180.0) % 360.0 - 180.0
    cos_dec = np.cos(np.deg2rad(dec0))
    cd = np.array([[dra[0] * cos_dec, dra[1] * cos_dec], [world[1, 1] - dec0, world[2, 1] - dec0]]) / step
    header = fits.Header()
    header["WCSAXES"] = 2
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CUNIT1"], header["CUNIT2"] = "deg", "deg"
    header["CRVAL1"], header["CRVAL2"] = float(ra0), float(dec0)
    # FITS pixels are 1-based: stamp pixel (xc - x0) 0-based is (xc - x0 + 1) in FITS.
    header["CRPIX1"], header["CRPIX2"] = float(xc - x0 + 1.0), float(yc - y0 + 1.0)
    header["CD1_1"], header["CD1_2"] = float(cd[0, 0]), float(cd[0, 1])
    header["CD2_1"], header["CD2_2"] = float(cd[1, 0]), float(cd[1, 1])
    header["RADESYS"] = "ICRS"
    header["LTV1"], header["LTV2"] = float(-x0), float(-y0)  # stamp → parent image offset (IRAF)
    return header


def make_cutout(
    image: np.ndarray,
    variance: np.ndarray,
    wcs: Any,
    x: float,
    y: float,
    size: int = MIN_SIZE,
    *,
    psf: np.ndarray | None = None,
    rotpa: float | None = None,
    header: fits.Header | None = None,
) -> bytes:
    """FITS bytes of a ``size``×``size`` stamp of ``image`` (in nJy) centred on pixel ``(x, y)``.

    Parameters
    ----------
    image, variance
        Full detector (or warped template) planes, calibrated to nJy and nJy².
    wcs
        ``astropy.wcs.WCS`` of the image (distortion allowed); the stamp gets a local TAN WCS.
    x, y
        0-based pixel position of the source (the DiaSource ``x``, ``y``).
    psf
        Optional PSF image written as the ``PSFIMAGE`` extension.
    rotpa
        Rotation angle of the focal plane on the sky (degrees), written as ``ROTPA``.

    Examples
    --------
    >>> stamp = make_cutout(diff.image, diff.variance, diff.wcs, src["x"], src["y"], 30)
    >>> CCDData.read(io.BytesIO(stamp)).unit
    Unit("nJy")
    """
    size = cutout_size(size)
    x0 = round(x) - size // 2
    y0 = round(y) - size // 2
    hdr = _local_tan_header(wcs, x, y, x0, y0)
    if header is not None:
        hdr.update(header)
    hdr["BUNIT"] = "nJy"
    if rotpa is not None:
        hdr["ROTPA"] = (float(rotpa), "[deg] focal plane rotation on the sky")
    hdus: list[Any] = [fits.PrimaryHDU(_extract(image, x0, y0, size), header=hdr)]
    var_header = fits.Header()
    var_header["UTYPE"] = "VarianceUncertainty"
    var_header["BUNIT"] = "nJy2"
    hdus.append(fits.ImageHDU(_extract(variance, x0, y0, size), header=var_header, name="UNCERT"))
    if psf is not None:
        hdus.append(fits.ImageHDU(np.asarray(psf, dtype=np.float32), name="PSFIMAGE"))
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


def make_cutouts(
    x: float,
    y: float,
    *,
    difference: tuple[np.ndarray, np.ndarray, Any] | None,
    science: tuple[np.ndarray, np.ndarray, Any] | None,
    template: tuple[np.ndarray, np.ndarray, Any] | None,
    bbox_size: int | None = None,
    psf: np.ndarray | None = None,
    rotpa: float | None = None,
) -> Cutouts:
    """The three stamps of one DiaSource from ``(image, variance, wcs)`` triples of each plane.

    The template must be the warped template on the science pixel grid (as subtracted), so the
    same ``(x, y)`` addresses the same sky in all three.
    """
    size = cutout_size(bbox_size)

    def one(planes: tuple[np.ndarray, np.ndarray, Any] | None) -> bytes | None:
        if planes is None:
            return None
        image, variance, wcs = planes
        return make_cutout(image, variance, wcs, x, y, size, psf=psf, rotpa=rotpa)

    return Cutouts(difference=one(difference), science=one(science), template=one(template), size=size)
