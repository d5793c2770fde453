"""Cutouts: FITS stamps a notebook reads with CCDData, with a local TAN WCS true to the parent WCS."""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.nddata import CCDData, VarianceUncertainty
from astropy.wcs import WCS

from pachon.core.alerts.cutouts import cutout_size, make_cutout, make_cutouts


def _distorted_wcs() -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [35.0, -62.0]
    wcs.wcs.crpix = [512.0, 512.0]
    wcs.wcs.cd = [[-0.2 / 3600, 0.01 / 3600], [0.005 / 3600, 0.2 / 3600]]
    from astropy.wcs import Sip

    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0] = 2e-6
    b[0, 2] = -1.5e-6
    wcs.sip = Sip(a, b, None, None, wcs.wcs.crpix)
    return wcs


def test_stamp_reads_back_as_ccddata_in_njy_with_variance_and_local_wcs() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(0, 10, (1024, 1024)).astype(np.float32)
    variance = np.full_like(image, 100.0)
    image[700, 300] = 5000.0
    wcs = _distorted_wcs()
    stamp = make_cutout(image, variance, wcs, 300.2, 700.4, 30, psf=np.ones((11, 11)), rotpa=12.5)
    ccd = CCDData.read(io.BytesIO(stamp))
    assert ccd.shape == (30, 30)
    assert str(ccd.unit) == "nJy"
    assert isinstance(ccd.uncertainty, VarianceUncertainty)
    assert np.all(ccd.uncertainty.array == 100.0)
    assert ccd.header["ROTPA"] == 12.5
    # The bright pixel sits where it should in the stamp: x0 = 300 - 15, y0 = 700 - 15.
    assert ccd.data[15, 15] == 5000.0
    # Local TAN WCS agrees with the distorted parent WCS to far below a pixel (0.2") across the stamp.
    for dx, dy in [(0, 0), (14, 14), (-15, -15), (14, -15)]:
        parent = wcs.all_pix2world([[300 + dx, 700 + dy]], 0)[0]
        local = ccd.wcs.all_pix2world([[15 + dx, 15 + dy]], 0)[0]
        sep = np.hypot((parent[0] - local[0]) * np.cos(np.deg2rad(parent[1])), parent[1] - local[1]) * 3600
        assert sep < 0.01, (dx, dy, sep)


def test_edges_are_padded_with_nan_and_sizes_are_clamped() -> None:
    image = np.ones((100, 100), dtype=np.float32)
    wcs = _distorted_wcs()
    stamp = CCDData.read(io.BytesIO(make_cutout(image, image, wcs, 2.0, 50.0, 30)))
    assert np.isnan(stamp.data[:, :13]).all() and np.all(stamp.data[:, 13:] == 1.0)
    assert (
        cutout_size(None) == 30
        and cutout_size(10) == 30
        and cutout_size(55) == 55
        and cutout_size(500) == 102
    )


@pytest.mark.parametrize("bbox", [12, 64])
def test_make_cutouts_gives_three_equal_sized_stamps(bbox: int) -> None:
    image = np.zeros((300, 300), dtype=np.float32)
    wcs = _distorted_wcs()
    stamps = make_cutouts(
        150, 150, difference=(image, image, wcs), science=(image, image, wcs), template=None, bbox_size=bbox
    )
    assert stamps.size == cutout_size(bbox)
    assert stamps.template is None
    for raw in (stamps.difference, stamps.science):
        assert CCDData.read(io.BytesIO(raw)).shape == (stamps.size, stamps.size)
