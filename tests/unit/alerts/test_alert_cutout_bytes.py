"""The hand-assembled cutout FITS bytes equal what astropy.io.fits writes for the same HDUs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, Sip

from pachon.core.alerts.cutouts import _extract, _local_tan_header, cutout_size, make_cutout, make_cutouts


def _wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [35.0, -62.0]
    wcs.wcs.crpix = [512.0, 512.0]
    wcs.wcs.cd = [[-0.2 / 3600, 1e-7], [2e-7, 0.2 / 3600]]
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0] = 2e-6
    b[0, 2] = -1.5e-6
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def _astropy_stamp(image, variance, wcs, x, y, size, psf=None, rotpa=None, header=None) -> bytes:  # type: ignore[no-untyped-def]
    """The reference: the HDUs built and written by astropy (the previous implementation)."""
    size = cutout_size(size)
    x0, y0 = round(x) - size // 2, round(y) - size // 2
    hdr = _local_tan_header(wcs, x, y, x0, y0)
    if header is not None:
        hdr.update(header)
    hdr["BUNIT"] = "nJy"
    if rotpa is not None:
        hdr["ROTPA"] = (float(rotpa), "[deg] focal plane rotation on the sky")
    hdus: list = [fits.PrimaryHDU(_extract(image, x0, y0, size), header=hdr)]
    var_header = fits.Header()
    var_header["UTYPE"] = "VarianceUncertainty"
    var_header["BUNIT"] = "nJy2"
    hdus.append(fits.ImageHDU(_extract(variance, x0, y0, size), header=var_header, name="UNCERT"))
    if psf is not None:
        hdus.append(fits.ImageHDU(np.asarray(psf, dtype=np.float32), name="PSFIMAGE"))
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer, output_verify="silentfix")
    return buffer.getvalue()


@pytest.mark.parametrize("seed", range(4))
def test_cutout_bytes_equal_astropy_writer(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 10, (256, 256)).astype(np.float32)
    image[5, 7] = np.nan
    variance = np.abs(image) + 1.0
    wcs = _wcs()
    for k in range(25):
        x, y = rng.uniform(-10, 266, 2)
        size = int(rng.integers(5, 130))
        kw: dict = {}
        if k % 3 == 0:
            kw["psf"] = rng.normal(size=(11, 11))
        if k % 4 == 0:
            kw["rotpa"] = float(rng.uniform(0, 360))
        if k % 5 == 0:
            extra = fits.Header()
            extra["OBSID"] = ("o'brien", "an id with a quote")
            extra["CRVAL1"] = 1.25
            extra["HISTORY"] = "made by a test"
            kw["header"] = extra
        assert make_cutout(image, variance, wcs, x, y, size, **kw) == _astropy_stamp(
            image, variance, wcs, x, y, size, **kw
        )
        stamps = make_cutouts(
            x,
            y,
            difference=(image, variance, wcs),
            science=None,
            template=(variance, image, wcs),
            bbox_size=size,
        )
        assert stamps.template == _astropy_stamp(variance, image, wcs, x, y, size)
        assert stamps.difference == _astropy_stamp(image, variance, wcs, x, y, size)
