"""PSF fits on the sky of each difference image: a local noise factor for detection, a χ² scale for real/bogus."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pachon.pipelines.prompt.dia import SkyFitNoise, sky_fit_noise
from pachon.pipelines.prompt.measure import detect, psf_photometry
from pachon.pipelines.prompt.psf import gaussian_psf

SHAPE = (600, 600)


def _white(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, SHAPE).astype(np.float32), np.ones(SHAPE, np.float32)


def _preconvolved(seed: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """White noise convolved with a Gaussian, its variance plane the (correct) per-pixel variance."""
    rng = np.random.default_rng(seed)
    kernel_sq = 1.0 / (4 * np.pi * sigma**2)  # Σ g² of a unit-sum Gaussian
    image = ndimage.gaussian_filter(rng.normal(0.0, 1.0, SHAPE), sigma).astype(np.float32)
    return image, np.full(SHAPE, kernel_sq, np.float32)


def _chi2_at_random(image: np.ndarray, var: np.ndarray, psf, n: int = 400, seed: int = 5) -> np.ndarray:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    x = rng.integers(40, SHAPE[1] - 40, n).astype(float)
    y = rng.integers(40, SHAPE[0] - 40, n).astype(float)
    return np.asarray(psf_photometry(image, var, np.zeros(SHAPE, bool), psf, x, y)["chi2"], float)


def _robust_sigma(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def test_white_noise_is_left_alone() -> None:
    psf = gaussian_psf(1.8, size=25)
    image, var = _white(1)
    sky = sky_fit_noise(image, var, np.zeros(SHAPE, bool), psf)
    assert sky.factor < 1.1
    assert abs(sky.chi2_median - 1.0) < 0.05
    # the white-noise σ of χ²/dof is what the sky shows, so the calibration changes little
    assert 0.8 < sky.chi2_sigma / sky.chi2_sigma_white < 1.25
    chi2 = np.array([0.8, 1.0, 1.5, 4.0])
    assert np.all(np.abs(sky.calibrate_chi2(chi2) - chi2) <= 0.25 * (chi2 - 0.8) + 0.05)


def test_preconvolved_noise_is_brought_to_the_white_scale() -> None:
    psf = gaussian_psf(2.5, size=31)  # the broader PSF of a pre-convolved difference
    image, var = _preconvolved(2, sigma=1.8)
    sky = sky_fit_noise(image, var, np.zeros(SHAPE, bool), psf)
    assert sky.factor > 2.0  # correlated: PSF fluxes scatter more than the variance plane says
    assert sky.chi2_sigma > 2.5 * sky.chi2_sigma_white
    # fits elsewhere on the same image: raw χ² scatters widely, calibrated χ² as white noise would
    other = _chi2_at_random(image, var, psf)
    assert _robust_sigma(other) > 2.5 * sky.chi2_sigma_white
    calibrated = sky.calibrate_chi2(other)
    assert abs(np.median(calibrated) - 1.0) < 0.05
    assert 0.7 < _robust_sigma(calibrated) / sky.chi2_sigma_white < 1.4


def test_uncalibrated_noise_model_is_the_identity() -> None:
    chi2 = np.array([0.5, 1.0, 3.0])
    np.testing.assert_array_equal(SkyFitNoise().calibrate_chi2(chi2), chi2)


def _strip(seed: int, noisy: float = 1.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """White noise with a 64-px strip ``noisy`` × noisier than the variance plane says, where the
    template's share of the variance is higher (as beside a template input's bad column)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.0, 1.0, (1024, 1024))
    share = np.full((1024, 1024), 0.05, np.float32)
    image[:, 600:664] *= noisy
    share[:, 600:664] = 0.12
    return image.astype(np.float32), np.ones((1024, 1024), np.float32), share


def test_noise_factor_follows_the_template_share() -> None:
    psf = gaussian_psf(1.8, size=25)
    image, var, share = _strip(3)
    sky = sky_fit_noise(image, var, np.zeros(image.shape, bool), psf, template_share=share)
    assert sky.share_coeffs is not None
    outside, inside = sky.factor_at(np.array([100.0, 630.0]), np.array([500.0, 500.0]), image.shape)
    assert outside < 1.08
    assert abs(inside - 1.3) < 0.12
    full = sky.factor_image(image.shape)
    assert full.shape == image.shape and full.dtype == np.float32
    np.testing.assert_allclose(full[500, [100, 630]], [outside, inside], atol=1e-5)
    # without the share, only the blocks (256 px) follow the strip: its block is raised as a whole
    plain = sky_fit_noise(image, var, np.zeros(image.shape, bool), psf)
    assert plain.share_coeffs is None and plain.block_factors is not None
    assert plain.block_factors[:, 2].mean() > plain.block_factors[:, 0].mean() + 0.02


def test_local_factor_keeps_noise_detections_at_the_gaussian_rate() -> None:
    """A 3.5σ threshold over white noise, in units of the local factor: the noisy strip no longer dominates."""
    psf = gaussian_psf(1.8, size=25)
    counts = {"global": [0, 0], "local": [0, 0]}
    for seed in range(3):
        image, var, share = _strip(10 + seed, noisy=1.4)
        bad = np.zeros(image.shape, bool)
        sky = sky_fit_noise(image, var, bad, psf, template_share=share)
        for name, v in (("global", var * sky.factor**2), ("local", var * sky.factor_image(image.shape) ** 2)):
            objs, _ = detect(image, v, bad, psf, threshold=3.5, deblend=False)
            x = np.asarray(objs["x"])
            counts[name][0] += int(((x < 580) | (x > 684)).sum())  # 920 columns away from the strip
            counts[name][1] += int(((x > 604) & (x < 660)).sum())  # 56 columns inside it
    # per column, one image-wide factor lets the strip make far more detections than the rest;
    # with the local factor the rate is the same (within the Poisson noise of a few counts)
    per_col = {k: (v[0] / 920, v[1] / 56) for k, v in counts.items()}
    assert per_col["global"][1] > 5 * per_col["global"][0]
    assert per_col["local"][1] < 3 * max(per_col["local"][0], 1 / 920)


def test_whole_pixel_fits_are_psf_photometry_vectorised() -> None:
    """The sky fits' vectorised path gives psf_photometry's flux, error and χ² (spatially varying PSF, masks)."""
    from pachon.pipelines.prompt.measure import psf_photometry_at_pixels
    from pachon.pipelines.prompt.psf import PsfModel

    rng = np.random.default_rng(7)
    g = gaussian_psf(1.9, size=25).components[0]
    comps = np.stack([g, 0.05 * (np.roll(g, 1, axis=0) - g), 0.03 * (np.roll(g, 1, axis=1) - g)])
    psf = PsfModel(components=comps, shape=(512, 512), fwhm=4.5, n_stars=10)
    image = rng.normal(size=(512, 512)).astype(np.float32)
    var = (1 + 0.2 * rng.random((512, 512))).astype(np.float32)
    bad = rng.random((512, 512)) < 0.02
    ix, iy = rng.integers(20, 492, 2000), rng.integers(20, 492, 2000)
    flux, err, chi2 = psf_photometry_at_pixels(image, var, bad, psf, ix, iy)
    loop = psf_photometry(image, var, bad, psf, ix.astype(float), iy.astype(float))
    np.testing.assert_allclose(flux, np.asarray(loop["flux"]), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(err, np.asarray(loop["fluxErr"]), rtol=1e-9)
    np.testing.assert_allclose(chi2, np.asarray(loop["chi2"]), rtol=1e-9)
