"""Prompt processing of the simulated ``tiny`` survey, scored against the simulator's truth.

Scores exclude the template and real/bogus training visits (their DIA sources were seen in
training or are in the template). The DIA figures come from :mod:`pachon.pipelines.prompt.scoring`
(also behind ``benchmarks/prompt/score_prompt.py``), which says for every truth object how it was
found or lost and for every false positive its likely cause. Figures are printed (``pytest -s``).

Completeness is also measured on ~1000 supernova-like fakes injected into three of the scored
(held-out) visits and scored the same way (``fakes`` fixture): the simulation holds only 26 SNe and
asteroids at true SNR ≥ 10, too few to resolve a 95 % point (one miss is 4 %).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from pachon.core.repo import DataRepository
from pachon.pipelines.prompt.pipeline import list_exposures, prompt_run
from pachon.pipelines.prompt.scoring import (
    association_purity,
    fake_completeness,
    score_repo,
    variables_recovered,
)

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def score(ctx):  # type: ignore[no-untyped-def]
    """Every truth SN, asteroid, variable and flare on a scored detector-visit, found or how it was lost."""
    result = score_repo(ctx["path"])
    print(result.summary())
    return result


def test_false_dia_sources_after_real_bogus(score) -> None:  # type: ignore[no-untyped-def]
    """≤ 5 false DIA sources per 4k detector per visit after real/bogus (a 1k² detector is 1/16 of one)."""
    per_4k = score.false_per_4k()
    print(
        f"false DIA sources after real/bogus: {len(score.false)} in {score.n_detector_visits} detector-visits "
        f"= {per_4k:.1f} per 4k detector per visit; causes {score.false_causes()}"
    )
    assert score.n_detector_visits >= 30
    assert per_4k <= 5.0


def test_transient_completeness_regression(score) -> None:  # type: ignore[no-untyped-def]
    """Bright SNe and asteroids are found whatever else changes (guards the acceptance test below)."""
    hi, n_hi = score.completeness(10.0)
    assert n_hi >= 10
    assert hi >= 0.85


def test_transient_completeness_acceptance(score) -> None:  # type: ignore[no-untyped-def]
    """Issue 5: SN + asteroid completeness ≥ 95 % at true SNR ≥ 10 and ≥ 50 % at SNR 5–10.

    True SNR as defined in :mod:`pachon.pipelines.prompt.scoring`: the flux change since the template
    over the optimal PSF-flux error in the difference image's real noise (science + template), with the
    source's true profile (Moffat, trailed for asteroids).
    """
    hi, n_hi = score.completeness(10.0)
    mid, n_mid = score.completeness(5.0, 10.0)
    print(f"SN + asteroid completeness: {hi:.2f} at SNR ≥ 10 (n={n_hi}), {mid:.2f} at 5–10 (n={n_mid})")
    assert n_hi >= 10 and n_mid >= 5
    assert hi >= 0.95
    assert mid >= 0.5


def test_association_purity(ctx, score) -> None:  # type: ignore[no-untyped-def]
    """DiaSources of one DiaObject come from one truth object (≥ 99 %)."""
    pure, total, n_objects, multi = association_purity(ctx["path"], score)
    print(
        f"association purity {pure}/{total} = {pure / max(total, 1):.3f} over {n_objects} DiaObjects ({multi} with >1 source)"
    )
    assert total > 0
    assert pure / total >= 0.99


def test_variable_stars_recovered(ctx) -> None:  # type: ignore[no-untyped-def]
    """Variables with amplitude > 0.3 mag on the scored detectors get a DiaObject within 1″."""
    found, n = variables_recovered(ctx["path"])
    print(
        f"variables with amplitude > 0.3 mag on the scored detectors: {n}, with a DiaObject within 1″: {found}"
    )
    assert n > 0
    assert found >= 1


@pytest.fixture(scope="module")
def fakes(ctx):  # type: ignore[no-untyped-def]
    """SN-like fakes on held-out visits, scored like truth: up to 100 per detector-visit on 3 scored visits.

    Held out: the real/bogus model never saw these visits (it trains on the first non-template
    visit per band), and these fakes come from a different seed and a different mix than the
    training fakes: point sources on empty sky, on *galaxy* cores (one per galaxy, 30 % fading out
    of the template) and trailed like asteroids, at PSF SNR 3–60, no two within 3 FWHM. ~1000 fakes
    (~400 at SNR ≥ 10, ~75 of them on galaxy cores) resolve the 95 % point that the 26 simulated SNe
    and asteroids at true SNR ≥ 10 cannot (25/26 = 0.96).
    """
    from astropy.table import vstack

    from pachon.pipelines.prompt.config import PromptConfig
    from pachon.pipelines.prompt.parallel import detector_map
    from pachon.pipelines.prompt.pipeline import load_rb_model
    from pachon.pipelines.prompt.scoring import score_injected

    rb = load_rb_model(ctx["repo"])
    assert rb is not None, "the processed tiny repo has no real/bogus model"
    config_json = PromptConfig().model_dump_json()
    chosen = ctx["scored"][:: max(1, len(ctx["scored"]) // 3)][:3]
    jobs = [
        (str(ctx["path"]), e, det, config_json, rb, 9000 + i)
        for i, e in enumerate(chosen)
        for det in ctx["reports"][e.id].detectors_ok
    ]
    with detector_map(2) as mapper:
        tables = [t for t in mapper(score_injected, jobs) if isinstance(t, Table)]
    return vstack(tables)


def _fake_figures(fakes) -> dict[str, float]:  # type: ignore[no-untyped-def]
    kind = np.asarray(fakes["kind"])
    hi, n_hi = fake_completeness(fakes, 10.0)
    mid, n_mid = fake_completeness(fakes, 5.0, 10.0)
    low, n_low = fake_completeness(fakes, 3.0, 5.0)
    by_kind = {k: fake_completeness(fakes[kind == k], 10.0)[0] for k in ("sky", "host", "trail")}
    point, n_point = fake_completeness(fakes[kind != "host"], 10.0)
    print(
        f"injected transients on held-out visits: {hi:.3f} at SNR ≥ 10 (n={n_hi}), {mid:.3f} at 5–10 "
        f"(n={n_mid}), {low:.3f} at 3–5 (n={n_low}); at SNR ≥ 10 by kind {by_kind}"
    )
    return {"hi": hi, "n_hi": n_hi, "mid": mid, "n_mid": n_mid, "point": point, "n_point": n_point}


def test_injected_transients_on_empty_sky_and_trailed_are_found(fakes) -> None:  # type: ignore[no-untyped-def]
    """Regression guard: held-out fakes away from galaxies (new point sources, asteroid trails) at SNR ≥ 10."""
    f = _fake_figures(fakes)
    assert f["n_point"] >= 200
    assert f["point"] >= 0.93  # measured 0.98 on empty sky, 0.95 trailed
    assert f["hi"] >= 0.85  # all kinds, galaxy cores included (measured 0.956)


def test_injected_transient_completeness(fakes) -> None:  # type: ignore[no-untyped-def]
    """Issue 5's completeness on held-out injected transients: ≥ 95 % at SNR ≥ 10, ≥ 50 % at 5–10.

    Measured on a fresh tiny run: 0.956 at SNR ≥ 10 (n=389; sky 0.98, galaxy cores 0.91, trailed
    0.95) and 0.64 at 5–10 (n=200). It read 0.987 (0.70 at 5–10) before the training fakes included
    sources next to bright neighbours (their operating point is stricter), and 0.90 (galaxy cores
    0.74) while fakes were piled several to a galaxy: their DIA sources blended and were scored
    ``offset``.
    """
    f = _fake_figures(fakes)
    assert f["n_hi"] >= 300 and f["n_mid"] >= 100
    assert f["hi"] >= 0.95
    assert f["mid"] >= 0.5
