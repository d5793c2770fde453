"""Single-visit calibration on synthetic detector images, scored against their truth.

The synthetic visit (``pachon.pipelines.prompt.testing``) has overscan with a bias drift, an
imperfect flat, hot and dead columns, cosmic rays, saturated stars with bleed trails, a Moffat PSF
whose width varies across the detector, SIP distortion and an 8–15″ pointing error.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.astrometry import AstrometryError, fit_astrometry, propagate_refcat
from pachon.pipelines.prompt.calibrate import calibrate_detector
from pachon.pipelines.prompt.characterize import characterize
from pachon.pipelines.prompt.config import AstrometryConfig
from pachon.pipelines.prompt.isr import IsrError, find_cosmic_rays, parse_section, run_isr
from pachon.pipelines.prompt.photocal import fit_zero_point
from pachon.pipelines.prompt.testing import make_field, make_visit

MJD = 61000.0


@pytest.fixture(scope="module")
def field():  # type: ignore[no-untyped-def]
    return make_field(seed=3)


@pytest.fixture(scope="module")
def visit(field):  # type: ignore[no-untyped-def]
    return make_visit(field, seed=4, mjd=MJD, pointing_error_arcsec=12.0)


@pytest.fixture(scope="module")
def calibrated(field, visit):  # type: ignore[no-untyped-def]
    return calibrate_detector(
        visit.raw,
        refcat=field.refcat(),
        band="r",
        epoch=Time(MJD, format="mjd", scale="tai"),
        visit=7,
        detector=1,
        flat=visit.flat,
    )


def test_parse_section_is_fits_one_based() -> None:
    rows, cols = parse_section("[1:1024,3:10]")
    assert (rows.start, rows.stop, cols.start, cols.stop) == (2, 10, 0, 1024)
    with pytest.raises(IsrError, match="FITS form"):
        parse_section("1:10")


def test_isr_removes_overscan_and_masks_defects(visit) -> None:  # type: ignore[no-untyped-def]
    post = run_isr(visit.raw, flat=visit.flat)
    assert post.unit == "electron"
    assert post.data.shape == (1024, 1024)
    # the sky level (300 e-) is recovered after overscan, gain and flat (vignetting normalised away)
    assert abs(np.median(post.data) - 300.0) < 20.0
    assert post.meta["ISR_NBAD"] >= 2  # one hot and one dead column
    assert post.mask_plane("SAT").sum() > 0
    assert post.mask_plane("CR").sum() > 0
    # variance ≈ sky + read noise², within 10 %
    assert abs(np.median(post.variance) / (300.0 + 36.0) - 1) < 0.1


def test_cosmic_rays_spare_star_cores(visit) -> None:  # type: ignore[no-untyped-def]
    post = run_isr(visit.raw, flat=visit.flat)
    t = visit.truth
    bright = (t["mag"] < 17.5) & (t["x"] > 5) & (t["x"] < 1018) & (t["y"] > 5) & (t["y"] < 1018)
    ix = np.round(np.asarray(t["x"][bright])).astype(int)
    iy = np.round(np.asarray(t["y"][bright])).astype(int)
    cr = post.mask_plane("CR")
    assert bright.sum() > 20
    assert cr[iy, ix].mean() < 0.05


def test_find_cosmic_rays_on_noise_and_a_track() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (200, 200))
    image[50, 60:64] += 3000.0
    var = np.full_like(image, 100.0)
    cr = find_cosmic_rays(image, var, np.zeros_like(image, bool), psf_fwhm=4.0, grow=0)
    assert cr[50, 60:64].all()
    assert cr.sum() < 12


def test_corrupt_raw_is_rejected(visit) -> None:  # type: ignore[no-untyped-def]
    bad = Exposure(np.full((64, 96), np.nan, np.float32), unit="adu", meta=visit.raw.header_copy())
    bad.meta["DATASEC"] = "[1:64,1:64]"
    bad.meta["BIASSEC"] = "[65:96,1:64]"
    with pytest.raises(IsrError, match="corrupt"):
        run_isr(bad)


def test_psf_model_matches_seeing(visit) -> None:  # type: ignore[no-untyped-def]
    char = characterize(run_isr(visit.raw, flat=visit.flat))
    # the simulated PSF FWHM is 4 px at the centre, ±5 % across the detector
    assert abs(char.psf.fwhm - visit.seeing_px) / visit.seeing_px < 0.1
    assert char.psf.n_stars >= 30


def test_astrometry_within_20_mas_of_truth(calibrated, visit) -> None:  # type: ignore[no-untyped-def]
    yy, xx = np.mgrid[0:1024:64, 0:1024:64]
    fit = calibrated.astrometry.wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    true = visit.true_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    d = np.hypot((fit[0] - true[0]) * np.cos(np.radians(fit[1])), fit[1] - true[1]) * 3.6e6
    assert np.sqrt(np.mean(d**2)) < 20.0
    assert calibrated.astrometry.rms_mas < 20.0
    assert calibrated.visit_image.meta["ASTRMS"] == pytest.approx(calibrated.astrometry.rms_mas)


def test_photometry_within_002_mag_of_truth(calibrated, visit) -> None:  # type: ignore[no-untyped-def]
    s = calibrated.sources
    t = visit.truth
    d, i = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([s["x"], s["y"]]))
    snr = np.asarray(s["psfFlux"]) / np.asarray(s["psfFluxErr"])
    ok = (d < 0.5) & (snr > 30) & ~np.asarray(s["pixelFlags_saturated"])
    dmag = -2.5 * np.log10(np.asarray(s["psfFlux"])[ok] / np.asarray(t["flux_nJy"])[i[ok]])
    assert ok.sum() > 100
    assert abs(np.median(dmag)) < 0.02
    # fluxes are nJy and the image is calibrated consistently
    assert calibrated.visit_image.unit == "nJy"
    assert s["psfFlux"].unit == "nJy"


def test_refcat_propagation_applies_proper_motion(field) -> None:  # type: ignore[no-untyped-def]
    ref = field.refcat()
    _ra, dec = propagate_refcat(ref, Time(2026.0, format="jyear", scale="tai"))
    ddec_mas = (dec - np.asarray(ref["coord_dec"])) * 3.6e6
    expected = np.asarray(ref["pm_dec"]) * 10.0  # ten years
    # parallax adds at most ~1 mas here
    assert np.median(np.abs(ddec_mas - expected)) < 3.0


def test_astrometry_fails_clearly_without_references(calibrated, visit) -> None:  # type: ignore[no-untyped-def]
    far = make_field(seed=9, ra0=10.0, dec0=-40.0).refcat()
    with pytest.raises(AstrometryError, match="reference stars fall on the detector"):
        fit_astrometry(
            calibrated.sources,
            far,
            visit.raw.wcs,
            Time(MJD, format="mjd"),
            (1024, 1024),
            config=AstrometryConfig(),
        )


def test_zero_point_is_robust_to_outliers() -> None:
    inst = np.full(20, 100.0)
    ref = np.full(20, 250.0)
    ref[:3] = 1000.0  # variable or blended references
    pc = fit_zero_point(inst, np.ones(20), ref)
    assert pc.scale == pytest.approx(2.5, rel=1e-6)
    assert pc.n_stars == 17


def test_mask_planes_survive_into_visit_image(calibrated) -> None:  # type: ignore[no-untyped-def]
    mask = np.asarray(calibrated.visit_image.mask)
    assert (mask & (1 << MASK_PLANES["SAT"])).any()
    assert (mask & (1 << MASK_PLANES["DETECTED"])).any()
    assert np.all(np.isfinite(calibrated.visit_image.variance))
