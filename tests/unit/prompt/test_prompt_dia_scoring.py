"""Trail-aware DIA measurement, fragment removal, real/bogus training fakes and the scoring's true SNR."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from pachon.core.image import Exposure
from pachon.pipelines.prompt.dia import _fragments, _trail_fit
from pachon.pipelines.prompt.psf import gaussian_psf
from pachon.pipelines.prompt.scoring import _sigma_flux, moffat_psf
from pachon.pipelines.prompt.training import FakeInjector, _add_source, label_dia_sources


def test_moffat_noise_equivalent_area_exceeds_gaussian() -> None:
    """A β = 3.5 Moffat has ≈ 1.5× the noise-equivalent area of a Gaussian of the same FWHM."""
    fwhm = 4.0
    m = moffat_psf(fwhm, 3.5, 81)
    yy, xx = np.mgrid[:81, :81] - 40
    g = np.exp(-(xx**2 + yy**2) / (2 * (fwhm / 2.3548) ** 2))
    g /= g.sum()
    assert abs(m.sum() - 1) < 1e-9
    nea_m, nea_g = 1 / (m**2).sum(), 1 / (g**2).sum()
    # analytic: π α² (2β−1)/(β−1)² with α = FWHM / (2√(2^{1/β}−1)), and 4πσ²
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
    assert abs(nea_m / (np.pi * alpha**2 * 6 / 6.25) - 1) < 0.03
    assert abs(nea_g / (4 * np.pi * (fwhm / 2.3548) ** 2) - 1) < 0.03
    assert 1.4 < nea_m / nea_g < 1.6
    var = np.full((101, 101), 4.0)
    sigma = _sigma_flux(var, np.zeros_like(var, bool), m, 50.0, 50.0)
    assert abs(sigma / np.sqrt(4.0 * nea_m) - 1) < 1e-6


def test_trailed_fit_recovers_flux_where_a_psf_fit_fails() -> None:
    rng = np.random.default_rng(3)
    psf = gaussian_psf(1.7, size=25, shape=(200, 200))
    image = rng.normal(0, 1.0, (200, 200))
    var = np.ones((200, 200))
    bad = np.zeros((200, 200), bool)
    length, angle = 14.0, 0.6
    _add_source(image, psf, 100.0, 100.0, 2000.0, length, angle)
    flux, err, chi2 = _trail_fit(image, var, bad, psf, 100.0, 100.0, length, angle)
    assert abs(flux - 2000.0) < 4 * err
    assert chi2 < 1.5
    _f0, _e0, chi2_wrong = _trail_fit(image, var, bad, psf, 100.0, 100.0, length, angle + np.pi / 2)
    assert chi2_wrong > 3 * chi2


def test_faint_peaks_in_a_bright_source_wings_are_fragments() -> None:
    psf = gaussian_psf(1.7, size=25)
    t = Table({"x": [50.0, 58.0, 150.0], "y": [50.0, 52.0, 150.0], "psfFlux": [-1e5, 800.0, 800.0]})
    assert _fragments(t, psf).tolist() == [False, True, False]


def test_fake_injector_adds_sky_host_and_trailed_sources() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(100.0, 10.0, (400, 400)).astype(np.float32)
    psf = gaussian_psf(1.7, size=25, shape=(400, 400))
    for x, y in [(100, 120), (250, 300), (300, 90), (180, 260)]:  # host stars
        _add_source(data, psf, float(x), float(y), 5e4, 0.0, 0.0)
    data -= 100.0
    exp = Exposure(data, unit="nJy")
    exp.variance = np.full(data.shape, 100.0, np.float32)
    before = data.copy()
    fakes = FakeInjector(n=40, seed=1)(exp, psf)
    kinds = set(np.asarray(fakes["kind"]).tolist())
    assert kinds == {"sky", "host", "trail"}
    assert (np.asarray(fakes["trail"])[np.asarray(fakes["kind"]) == "trail"] >= 3).all()
    added = float((np.asarray(exp.data) - before).sum())
    assert abs(added - float(np.sum(fakes["flux"]))) < 1e-3 * float(np.abs(fakes["flux"]).sum())
    # labels: a trailed fake is matched at its midpoint, a fading fake only by a negative DiaSource
    k = int(np.flatnonzero(np.asarray(fakes["kind"]) == "trail")[0])
    dia = Table(
        {
            "x": [float(fakes["x"][k]) + 3.0, 10.0],
            "y": [float(fakes["y"][k]), 10.0],
            "isNegative": [False, False],
        }
    )
    labels = label_dia_sources(dia, fakes=fakes[[k]], truth=None, variable_ids=set())
    assert labels.tolist() == [float(fakes["trail"][k]) / 2 + 2 > 3.0, False]
