"""Optics: our exact distortion inversion against astropy's SIP WCS, PSF normalisation, jitter size."""

from __future__ import annotations

import math

import numpy as np

from pachon.pipelines.sim.config import preset
from pachon.pipelines.sim.optics import DetectorGeometry, Jitter, PsfModel, gnomonic, inverse_gnomonic


def test_gnomonic_round_trip() -> None:
    rng = np.random.default_rng(1)
    ra = 180 + rng.uniform(-0.5, 0.5, 100)
    dec = rng.uniform(-0.5, 0.5, 100)
    xi, eta = gnomonic(ra, dec, 180.0, 0.2)
    ra2, dec2 = inverse_gnomonic(xi, eta, 180.0, 0.2)
    assert np.allclose(ra2, ra, atol=1e-11) and np.allclose(dec2, dec, atol=1e-11)


def test_world_to_pixel_agrees_with_astropy_sip_wcs() -> None:
    """Our projection (Newton-inverted distortion) and astropy's TAN-SIP agree to < 1 mpx both ways."""
    for name in ("tiny", "small"):
        cam = preset(name).camera
        for det in (0, cam.n_detectors - 1):
            geom = DetectorGeometry(cam, det)
            wcs = geom.wcs(180.01, 0.49, 0.003)
            rng = np.random.default_rng(det)
            x = rng.uniform(0, cam.nx - 1, 200)
            y = rng.uniform(0, cam.ny - 1, 200)
            ra, dec = wcs.all_pix2world(x, y, 0)
            x2, y2 = geom.world_to_pixel(ra, dec, 180.01, 0.49, 0.003)
            assert np.max(np.hypot(x2 - x, y2 - y)) < 1e-3, (name, det)
            # the SIP inverse polynomials (AP/BP) written into the header invert A/B to < 0.01 px
            pix = np.stack([x, y], 1)
            back = wcs.sip_foc2pix(wcs.sip_pix2foc(pix, 0), 0)
            assert np.max(np.abs(back - pix)) < 0.01, (name, det)


def test_distortion_is_present_but_small() -> None:
    """The SIP term matters (≥ 0.05 px at the tiny field's edge) yet stays below a few pixels."""
    cam = preset("tiny").camera
    geom = DetectorGeometry(cam, 0)
    wcs = geom.wcs(180.0, 0.5, 0.0)
    x, y = np.array([0.0]), np.array([0.0])
    ra_sip, dec_sip = wcs.all_pix2world(x, y, 0)
    ra_tan, dec_tan = wcs.wcs_pix2world(x, y, 0)
    shift_px = math.hypot((ra_sip[0] - ra_tan[0]) * 3600, (dec_sip[0] - dec_tan[0]) * 3600) / cam.pixel_scale
    assert 0.05 < shift_px < 3.0


def test_psf_is_normalised_and_has_the_requested_fwhm() -> None:
    psf = PsfModel(0.8, 0.0, 0.0, 0.2)
    h = 60
    g = np.arange(-h, h + 1, dtype=float)
    img = psf.render(g[None, :] + 0 * g[:, None], g[:, None] + 0 * g[None, :], 0.8, 0.0, 0.0, oversample=5)
    assert abs(img.sum() - psf.enclosed_fraction(h, 0.8)) < 2e-3
    # FWHM along the x axis from the oversampled profile (pixel integration widens it a little)
    fine = psf.render(np.linspace(-10, 10, 2001)[None, :], np.zeros((1, 2001)), 0.8, 0, 0, oversample=1)[0]
    above = np.linspace(-10, 10, 2001)[fine >= fine.max() / 2]
    assert abs((above[-1] - above[0]) * 0.2 - 0.8) < 0.01


def test_jitter_has_the_requested_rms_and_is_correlated() -> None:
    rms = []
    corr = []
    for seed in range(40):
        j = Jitter.draw(seed, 5.0)
        rng = np.random.default_rng(seed)
        fx, fy = rng.uniform(-10, 10, 400), rng.uniform(-10, 10, 400)
        dx, _dy = j.displacement(fx, fy)
        rms.append(np.sqrt(np.mean(dx**2)))
        dx2, _ = j.displacement(fx + 0.2, fy)  # 12″ away
        corr.append(np.corrcoef(dx, dx2)[0, 1])
    assert 3.5 < np.sqrt(np.mean(np.square(rms))) < 6.5
    assert np.median(corr) > 0.9
