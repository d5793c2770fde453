"""Coadd detection, deblending and measurement on synthetic images with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage
from scipy.special import gammainc, gammaincinv

from pachon.core.image import Exposure
from pachon.pipelines.drp.coadd import coadd_psf, expanded_patch, flat_grid_points, flat_image
from pachon.pipelines.drp.detect import detect_patch, detection_image
from pachon.pipelines.drp.measure_coadd import (
    RADII_PX,
    STAMP,
    BandInputs,
    adaptive_moments,
    joint_psf_fluxes,
    measure_patch,
    profile_templates,
    random_psf_noise,
)
from pachon.pipelines.prompt.psf import gaussian_psf
from pachon.pipelines.prompt.skymap import Patch

SIGMA_PSF = 2.0
NOISE = 1.0


def _render(shape: tuple[int, int], sources: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Sum of circular Gaussians (x, y, flux, intrinsic σ) convolved with the Gaussian PSF."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for x, y, f, s in sources:
        s2 = SIGMA_PSF**2 + s**2
        img += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s2)) / (2 * np.pi * s2)
    return img


def _exponential(shape: tuple[int, int], x: float, y: float, flux: float, r_half: float) -> np.ndarray:
    """A circular exponential disk (half-light radius ``r_half`` px) seen through the Gaussian PSF."""
    ss = 5
    yy, xx = (np.mgrid[: shape[0] * ss, : shape[1] * ss] + 0.5) / ss - 0.5
    h = r_half / 1.6783
    prof = np.exp(-np.hypot(xx - x, yy - y) / h)
    img = prof.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))
    img *= flux / img.sum()
    return np.asarray(ndimage.gaussian_filter(img, SIGMA_PSF, mode="constant"))


def _exposure(img: np.ndarray, var: float) -> Exposure:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [180.0, 0.0]
    w.wcs.crpix = [1.0, 1.0]
    w.wcs.cd = np.array([[-0.2 / 3600, 0], [0, 0.2 / 3600]])
    e = Exposure(
        img.astype(np.float32), unit="nJy", mask=np.zeros(img.shape, np.int32), wcs=w, meta=fits.Header()
    )
    e.variance = np.full(img.shape, var, np.float32)
    return e


def test_adaptive_moments_of_a_gaussian() -> None:
    img = _render((61, 61), [(30.3, 29.8, 1000.0, 0.0)])
    ixx, iyy, ixy, flag = adaptive_moments(img, np.zeros(img.shape, bool), 30.0, 30.0, 1.5)
    assert not flag
    assert ixx == pytest.approx(SIGMA_PSF**2, rel=0.02) and iyy == pytest.approx(SIGMA_PSF**2, rel=0.02)
    assert abs(ixy) < 0.02


def test_joint_fit_splits_a_blended_pair_that_single_fits_double_count() -> None:
    rng = np.random.default_rng(3)
    img = _render((60, 80), [(35.0, 30.0, 5000.0, 0.0), (41.0, 30.0, 3000.0, 0.0)])
    img += rng.normal(0, NOISE, img.shape)
    var = np.full(img.shape, NOISE**2)
    bad = np.zeros(img.shape, bool)
    psf = gaussian_psf(SIGMA_PSF, size=25)
    x, y = np.array([35.0, 41.0]), np.array([30.0, 30.0])
    flux, err, masked = joint_psf_fluxes(img, var, bad, psf, x, y, np.array([1, 1]))
    assert flux == pytest.approx([5000.0, 3000.0], abs=5 * err.max())
    single, _, _ = joint_psf_fluxes(img, var, bad, psf, x, y, np.array([1, 2]))
    assert single[1] > 3300  # the neighbour's light leaks into one-by-one fits
    assert np.all(masked < 0.01)


def test_uniform_weights_make_bright_and_faint_stars_agree_under_a_psf_model_error() -> None:
    """Forced photometry's fit (``pixel_weights=False``): the variance plane holds each star's own
    Poisson noise, so inverse-variance weights down-weight a bright star's core; with a PSF model 10 %
    too narrow that measures bright and faint stars differently. Uniform weights do not, and their
    errors (the variance plane through the same linear map) match the scatter."""
    shape = (41, 41)
    psf = gaussian_psf(SIGMA_PSF * 0.9, size=25)  # the model is 10 % narrower than the stars
    bad = np.zeros(shape, bool)
    sky = 100.0
    x, y = np.array([20.3]), np.array([19.8])
    ratio: dict[bool, list[float]] = {True: [], False: []}
    for flux in (1e3, 1e6):
        star = _render(shape, [(20.3, 19.8, flux, 0.0)])
        var = sky + star
        for weighted in (True, False):
            f, _, _ = joint_psf_fluxes(star, var, bad, psf, x, y, np.array([1]), pixel_weights=weighted)
            ratio[weighted].append(float(f[0]) / flux)
    bias_weighted = -2.5 * np.log10(ratio[True][1] / ratio[True][0])
    bias_uniform = -2.5 * np.log10(ratio[False][1] / ratio[False][0])
    assert abs(bias_weighted) > 0.03  # measured: 0.07 mag brighter at 10⁶ than at 10³
    assert abs(bias_uniform) < 1e-6
    # errors of the uniform-weight fit predict its scatter on noise
    rng = np.random.default_rng(2)
    star = _render(shape, [(20.3, 19.8, 2e4, 0.0)])
    var = sky + star
    fits_ = [
        joint_psf_fluxes(
            star + rng.normal(size=shape) * np.sqrt(var),
            var,
            bad,
            psf,
            x,
            y,
            np.array([1]),
            pixel_weights=False,
        )
        for _ in range(400)
    ]
    scatter = np.std([f[0][0] for f in fits_])
    assert scatter == pytest.approx(float(np.median([f[1][0] for f in fits_])), rel=0.1)


def test_noise_factor_recovers_an_understated_variance_plane() -> None:
    rng = np.random.default_rng(5)
    img = rng.normal(0, 2.0, (300, 300))
    bi = BandInputs("r", img, np.full(img.shape, 1.0), np.zeros(img.shape, bool),
                    np.zeros(img.shape, np.int32), gaussian_psf(SIGMA_PSF, size=25), 1.0, 0.0)  # fmt: skip
    factor, depth = random_psf_noise(bi, None)
    assert factor == pytest.approx(2.0, rel=0.1)
    sigma_flux = 2.0 * np.sqrt(4 * np.pi * SIGMA_PSF**2)  # PSF-flux noise of white noise σ=2
    assert depth == pytest.approx(-2.5 * np.log10(5 * sigma_flux) + 31.4, abs=0.1)


def test_templates_are_normalised_to_total_flux() -> None:
    psf = gaussian_psf(SIGMA_PSF, size=25).image()
    for n in (1.0, 4.0):
        t = profile_templates(psf, n)
        assert t[0].sum() == pytest.approx(1.0, abs=1e-6)  # radius 0 is the PSF
        sums = t.sum(axis=(1, 2))
        # the light a Sérsic profile puts within the stamp's equal-area circle (the rest is extrapolated)
        b = gammaincinv(2 * n, 0.5)
        radii = np.array(RADII_PX[1:9])
        inside = gammainc(2 * n, b * (STAMP / np.sqrt(np.pi) / radii) ** (1 / n))
        assert np.allclose(sums[1:9], inside, atol=0.005)
        assert np.all(np.diff(sums[6:]) < 0)  # bigger radii lose more to truncation


def test_measure_patch_detects_deblends_and_classifies() -> None:
    rng = np.random.default_rng(11)
    shape = (160, 200)
    # isolated star, isolated exponential galaxy (r_half 4 px), and a blended pair of stars 10 px apart
    truth = [(40.0, 40.0, 20000.0, 0.0), (120.0, 45.0, 20000.0, 4.0), (80.0, 110.0, 15000.0, 0.0),
             (90.0, 110.0, 10000.0, 0.0)]  # fmt: skip
    coadds = {}
    for band, scale in (("g", 0.8), ("r", 1.0)):
        img = _render(shape, [(x, y, f * scale, 0.0) for x, y, f, r in truth if r == 0])
        img += _exponential(shape, 120.0, 45.0, 20000.0 * scale, 4.0)
        img += rng.normal(0, NOISE, shape)
        coadds[band] = (_exposure(img, NOISE**2), gaussian_psf(SIGMA_PSF, size=25), 60000.0)
    res = measure_patch(coadds, ref_band="r", inner=(0, shape[1], 0, shape[0]))
    t = res.table
    assert len(t) == 4
    order = np.argsort(np.asarray(t["det_x"]) + 1000 * np.round(np.asarray(t["det_y"]) / 50))
    t = t[order]  # star, galaxy, pair (left, right)
    assert np.asarray(t["det_nChild"]).tolist() == [1, 1, 2, 2]
    assert t["det_parent"][2] == t["det_parent"][3]
    assert np.asarray(t["r_extendedness"]).tolist() == [0.0, 1.0, 0.0, 0.0]
    assert t["r_sizeExtendedness"][1] == 1.0 and t["r_sizeExtendedness"][0] == 0.0
    for k, (_, _, f, _) in enumerate(truth):
        err = float(t["r_psfFluxErr"][k])
        if k != 1:
            assert float(t["r_psfFlux"][k]) == pytest.approx(f, abs=max(6 * err, 0.02 * f))
    assert float(t["r_cModelFlux"][1]) == pytest.approx(20000.0, rel=0.05)  # measured 1.5 % low
    assert float(t["r_bdReD"][1]) == pytest.approx(4.0, rel=0.3)
    assert float(t["r_psfFlux"][1]) < 0.8 * 20000.0  # a PSF misses an extended galaxy's light
    assert float(t["g_psfFlux"][0]) == pytest.approx(16000.0, rel=0.03)
    assert float(t["r_ixx"][1]) > 2 * float(t["r_ixx"][0]) > 2 * 0.9 * SIGMA_PSF**2
    assert res.noise_factor["r"] == pytest.approx(1.0, abs=0.15)


def test_detection_image_weights_bands_by_inverse_variance() -> None:
    a, b = np.full((4, 4), 10.0), np.full((4, 4), 40.0)
    img, var, cov = detection_image([a, b], [np.full((4, 4), 1.0), np.full((4, 4), 3.0)],
                                    [np.ones((4, 4), bool), np.ones((4, 4), bool)])  # fmt: skip
    assert np.allclose(img, (10 / 1 + 40 / 3) / (1 + 1 / 3)) and np.allclose(var, 1 / (1 + 1 / 3))
    assert cov.all()
    det = detect_patch(np.zeros((64, 64)), np.ones((64, 64)), np.ones((64, 64), bool), SIGMA_PSF)
    assert len(det.table) == 0  # nothing in an empty, noiseless image


def test_coadd_psf_and_expanded_patch() -> None:
    narrow, wide = gaussian_psf(1.5, size=25), gaussian_psf(2.5, size=25)
    psf = coadd_psf([(narrow, 1.0), (wide, 3.0)], target_fwhm=2.5 * 2.3548 * 1.02)
    assert psf.image().sum() == pytest.approx(1.0)
    assert psf.fwhm >= 2.5 * 2.3548
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crpix = [100.0, 100.0]
    w.wcs.crval = [10.0, 0.0]
    w.wcs.cd = np.array([[-0.2 / 3600, 0], [0, 0.2 / 3600]])
    p = Patch(id=3, x0=200, y0=0, nx=100, ny=100, wcs=w)
    big = expanded_patch(p, 10)
    assert (big.x0, big.y0, big.nx, big.ny) == (190, -10, 120, 120)
    ra, dec = p.wcs.all_pix2world([5.0], [7.0], 0)
    assert np.allclose(big.wcs.all_world2pix(ra, dec, 0), [[15.0], [17.0]])


def test_star_flat_grid_is_interpolated_bilinearly() -> None:
    gx, gy = flat_grid_points((50, 80))
    grid = tuple(float(v) for v in 1.0 + 0.001 * gx + 0.002 * gy)  # a plane is reproduced exactly
    img = flat_image(grid, (50, 80))
    yy, xx = np.mgrid[:50, :80]
    assert np.allclose(img, 1.0 + 0.001 * xx + 0.002 * yy, atol=1e-5)
    assert flat_image((), (50, 80)) == 1.0
