"""The speed rewrites compute what the straightforward versions computed (ndimage, np.interp, astropy)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import fit_wcs_from_points
from scipy import ndimage

from pachon.pipelines.prompt.astrometry import fit_tan_sip
from pachon.pipelines.prompt.isr import _dilate, _interpolate_bad
from pachon.pipelines.prompt.psf import spline_shift


@pytest.mark.parametrize("mode", ["constant", "nearest"])
def test_spline_shift_equals_ndimage_shift(mode: str) -> None:
    rng = np.random.default_rng(5)
    for shape in ((25, 25), (31, 31), (21, 27)):
        for k in range(60):
            img = rng.normal(size=shape).astype(np.float32)
            dy, dx = rng.uniform(-1, 1, 2) if k > 2 else [(0.0, 0.5), (-1.0, 1.0), (0.5, -0.5)][k]
            ref = ndimage.shift(img.astype(float), (dy, dx), order=3, mode=mode)
            assert np.abs(spline_shift(img, dy, dx, mode=mode) - ref).max() < 1e-12
    # beyond one pixel it defers to ndimage
    img = rng.normal(size=(25, 25))
    assert np.array_equal(
        spline_shift(img, 2.5, 0.0), ndimage.shift(img, (2.5, 0.0), order=3, mode="constant")
    )


def _interpolate_rows_reference(image: np.ndarray, bad: np.ndarray) -> None:
    for r in np.flatnonzero(bad.any(axis=1)):
        good = np.flatnonzero(~bad[r])
        if good.size < 2:
            continue
        cols = np.flatnonzero(bad[r])
        image[r, cols] = np.interp(cols, good, image[r, good])


def test_row_interpolation_equals_np_interp_per_row() -> None:
    rng = np.random.default_rng(0)
    img = rng.normal(size=(300, 200)).astype(np.float32)
    bad = rng.random((300, 200)) < 0.05
    bad[:, 50] = bad[:, 0] = bad[:, -1] = True  # columns, including both edges
    bad[10, :] = True  # a dead row: left alone
    bad[11, 1:] = True  # one good pixel: left alone
    bad[12, :-1] = True
    bad[13, :198] = True  # two good pixels at the right end
    a, b = img.copy(), img.copy()
    _interpolate_rows_reference(a, bad)
    _interpolate_bad(b, bad)
    assert np.abs(a - b).max() < 1e-5


def test_dilate_equals_binary_dilation() -> None:
    rng = np.random.default_rng(1)
    m = rng.random((120, 90)) < 0.02
    m[0, 0] = m[-1, -1] = m[0, -1] = m[-1, 0] = True
    assert np.array_equal(_dilate(m), ndimage.binary_dilation(m, iterations=1))


def test_linear_tan_sip_fit_matches_truth_and_astropy() -> None:
    """The linear fit recovers a distorted WCS as well as astropy's non-linear fit_wcs_from_points."""
    truth = WCS(naxis=2)
    truth.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    truth.wcs.crval = [150.0, -30.0]
    truth.wcs.crpix = [1900.0, 2150.0]
    truth.wcs.cd = np.array([[-5.5e-5, 2e-7], [3e-7, 5.5e-5]])
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[0, 2], a[3, 0], a[1, 2] = 3e-7, -2e-7, 4e-11, 2e-11
    b[0, 2], b[1, 1], b[0, 3], b[2, 1] = 2.5e-7, 1e-7, -3e-11, 1e-11
    truth.sip = Sip(a, b, None, None, truth.wcs.crpix)
    truth.wcs.set()
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 4095, (2, 600))
    ra, dec = truth.all_pix2world(x, y, 0)
    noise = 5.0 / 3.6e6  # 5 mas
    ra_n = ra + rng.normal(0, noise, ra.size) / np.cos(np.radians(dec))
    dec_n = dec + rng.normal(0, noise, dec.size)
    fit = fit_tan_sip(x, y, ra_n, dec_n, (4096, 4096), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = fit_wcs_from_points(
            (x, y), SkyCoord(ra_n, dec_n, unit="deg"), proj_point="center", sip_degree=3
        )
    gx, gy = np.meshgrid(np.linspace(0, 4095, 30), np.linspace(0, 4095, 30))

    def err_mas(w: WCS) -> float:
        r, d = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
        t_r, t_d = truth.all_pix2world(gx.ravel(), gy.ravel(), 0)
        return float(np.sqrt(np.mean(((r - t_r) * np.cos(np.radians(t_d))) ** 2 + (d - t_d) ** 2)) * 3.6e6)

    print(f"linear fit {err_mas(fit):.2f} mas, astropy {err_mas(ref):.2f} mas")
    assert err_mas(fit) < 2.0  # 600 stars at 5 mas: the model error is ~0.5 mas
    assert err_mas(fit) < 1.5 * err_mas(ref) + 0.5
    # round trip through the iterative inverse
    px, py = fit.all_world2pix(ra[:50], dec[:50], 0)
    assert np.hypot(px - x[:50], py - y[:50]).max() < 0.05
