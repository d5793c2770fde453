"""Template coadd, Alard–Lupton subtraction and DIA detection on synthetic visits with injected transients."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES
from pachon.pipelines.prompt.calibrate import calibrate_detector
from pachon.pipelines.prompt.coadd import CoaddInput, coadd
from pachon.pipelines.prompt.dia import RB_FEATURES, detect_dia_sources
from pachon.pipelines.prompt.measure import psf_photometry
from pachon.pipelines.prompt.realbogus import RealBogusModel, train_real_bogus
from pachon.pipelines.prompt.subtract import basis_kernels, subtract
from pachon.pipelines.prompt.testing import make_field, make_visit
from pachon.pipelines.prompt.warp import warp_exposure

UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]
    field = make_field(seed=11)
    ref = field.refcat()
    inputs = []
    for k, seeing in enumerate((0.62, 0.66, 0.7)):
        v = make_visit(field, seed=20 + k, seeing_arcsec=seeing, mjd=60900.0 + k)
        cal = calibrate_detector(
            v.raw, refcat=ref, band="r", epoch=Time(60900.0 + k, format="mjd"), flat=v.flat
        )
        inputs.append(CoaddInput(cal.visit_image, cal.psf.fwhm, cal.psf))
    template = coadd(inputs, inputs[0].exposure.wcs, (1024, 1024))
    rng = np.random.default_rng(5)
    n = 80
    px, py = rng.uniform(40, 984, n), rng.uniform(40, 984, n)
    ra, dec = inputs[0].exposure.wcs.all_pix2world(px, py, 0)
    transients = Table({"ra": ra, "dec": dec, "mag": rng.uniform(19.0, 22.5, n)})
    # star 40 fades to 30 %: a negative DIA source
    sci_visit = make_visit(
        field, seed=99, seeing_arcsec=0.85, mjd=61000.0, transients=transients, variable_scale={40: 0.3}
    )
    cal = calibrate_detector(
        sci_visit.raw, refcat=ref, band="r", epoch=Time(61000.0, format="mjd"), flat=sci_visit.flat
    )
    warped = warp_exposure(template, cal.visit_image.wcs, (1024, 1024))
    s = cal.sources
    snr = np.asarray(s["psfFlux"]) / np.asarray(s["psfFluxErr"])
    sel = (snr > 10) & ~np.asarray(s["pixelFlags_saturated"])
    order = np.argsort(-snr[sel])
    result = subtract(
        cal.visit_image, warped, cal.psf, np.asarray(s["x"])[sel][order], np.asarray(s["y"])[sel][order]
    )
    dia = detect_dia_sources(result.difference, cal.visit_image, warped, result.psf, direct_sources=s)
    return {
        "field": field,
        "visit": sci_visit,
        "cal": cal,
        "template": warped,
        "result": result,
        "dia": dia,
        "transients": transients,
    }


def test_basis_is_normalised() -> None:
    basis = basis_kernels(21, (1.0, 2.0, 4.0), (4, 2, 2))
    assert basis.shape == (15 + 6 + 6, 21, 21)
    assert basis[0].sum() == pytest.approx(1.0)
    assert np.allclose(basis[1:].sum(axis=(1, 2)), 0.0, atol=1e-9)


def test_template_is_deeper_and_psf_matched(scene) -> None:  # type: ignore[no-untyped-def]
    t = scene["template"]
    ok = (np.asarray(t.mask) & UNUSABLE) == 0
    assert ok.mean() > 0.95
    sci_var = np.median(scene["cal"].visit_image.variance)
    assert np.median(np.asarray(t.variance)[ok]) < 0.6 * sci_var


def test_difference_noise_matches_variance(scene) -> None:  # type: ignore[no-untyped-def]
    d = scene["result"].difference
    ok = (np.asarray(d.mask) & UNUSABLE) == 0
    z = (np.asarray(d.data) / np.sqrt(np.asarray(d.variance)))[ok]
    robust = 1.4826 * np.median(np.abs(z - np.median(z)))
    assert abs(robust - 1.0) < 0.1
    assert abs(scene["result"].kernel_sum - 1.0) < 0.05


def test_transient_completeness(scene) -> None:  # type: ignore[no-untyped-def]
    cal, dia, tr = scene["cal"], scene["dia"], scene["transients"]
    d = scene["result"].difference
    x, y = cal.visit_image.wcs.all_world2pix(tr["ra"], tr["dec"], 0)
    bad = (np.asarray(d.mask) & UNUSABLE) != 0
    forced = psf_photometry(np.asarray(d.data), np.asarray(d.variance), bad, scene["result"].psf, x, y)
    true_flux = 10 ** (-0.4 * (np.asarray(tr["mag"]) - 31.4))
    true_snr = true_flux / (np.asarray(forced["fluxErr"]) * float(d.meta["DIFNOISE"]))
    pos = dia[~np.asarray(dia["isNegative"])]
    dist, _ = cKDTree(np.column_stack([pos["x"], pos["y"]])).query(np.column_stack([x, y]))
    found = dist < 2.0
    bright = true_snr >= 10
    mid = (true_snr >= 5) & (true_snr < 10)
    assert bright.sum() >= 12 and mid.sum() >= 5
    assert found[bright].mean() >= 0.95
    assert found[mid].mean() >= 0.5


def test_fading_star_is_a_negative_source(scene) -> None:  # type: ignore[no-untyped-def]
    star = scene["visit"].truth[40]
    neg = scene["dia"][np.asarray(scene["dia"]["isNegative"])]
    d = np.hypot(np.asarray(neg["x"]) - star["x"], np.asarray(neg["y"]) - star["y"])
    assert d.min() < 2.0
    assert neg["psfFlux"][np.argmin(d)] < 0


def test_false_positives_are_rare(scene) -> None:  # type: ignore[no-untyped-def]
    dia, cal, tr = scene["dia"], scene["cal"], scene["transients"]
    x, y = cal.visit_image.wcs.all_world2pix(tr["ra"], tr["dec"], 0)
    star = scene["visit"].truth[40]
    known = np.column_stack([np.concatenate([x, [star["x"]]]), np.concatenate([y, [star["y"]]])])
    dist, _ = cKDTree(known).query(np.column_stack([dia["x"], dia["y"]]))
    false = dist > 3.0
    # Residuals of bright stars (PSF-shape mismatch at the 1 % level, tens of σ for SNR > 500 stars)
    # are left to the real/bogus classifier (template flux ratio, template SNR, bright neighbour);
    # away from bright stars (SNR > 50 within 4 FWHM) the difference image is clean.
    src = cal.sources
    bright = (np.asarray(src["psfFlux"]) / np.asarray(src["psfFluxErr"])) > 50
    d_bright, _ = cKDTree(np.column_stack([src["x"][bright], src["y"][bright]])).query(
        np.column_stack([dia["x"], dia["y"]])
    )
    near_bright = d_bright < 4 * cal.psf.fwhm
    print(f"false DIA sources: {false.sum()} ({np.sum(false & near_bright)} on bright-star residuals)")
    assert np.sum(false & ~near_bright) <= 10  # measured 7 on this scene (galaxy cores, SNR<50 stars)
    assert false.sum() <= 80


def test_dia_columns_follow_the_apdb(scene) -> None:  # type: ignore[no-untyped-def]
    dia = scene["dia"]
    for col in ("ra", "dec", "x", "y", "psfFlux", "psfFluxErr", "scienceFlux", "templateFlux", "isDipole",
                "dipoleMeanFlux", "ixx", "ixxPSF", "snr", "isNegative", "pixelFlags_saturated", *RB_FEATURES):  # fmt: skip
        assert col in dia.colnames, col


def test_real_bogus_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    n = 400
    t = Table({f: rng.normal(0, 1, n) for f in RB_FEATURES})
    labels = t["rb_log_snr"] + 0.5 * t["rb_chi2"] > 0
    model = train_real_bogus(t, labels)
    assert model.train_accuracy > 0.95
    again = RealBogusModel.from_dict(model.to_dict())
    assert np.allclose(again.predict(t), model.predict(t))
