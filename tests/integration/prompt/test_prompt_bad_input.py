"""Bad input at visit level: a truncated raw, a failed WCS fit, a missing template.

The visit goes on with the other detectors, each failure is recorded with its step and reason
in ``prompt_visit_summary``, and nothing of a failed detector is written (no ``visit_image``,
``source``, ``difference_image``, ``dia_source``, APDB row or alert). The unit tests cover the
single steps (``test_corrupt_raw_is_rejected``, ``test_astrometry_fails_clearly_without_references``).
"""

from __future__ import annotations

from typing import Any

import pytest

from pachon.core.repo import INSTRUMENT, DataRepository
from pachon.pipelines.prompt.pipeline import SUMMARY_RUN

pytestmark = pytest.mark.slow

PRODUCTS = ("visit_image", "source", "difference_image", "dia_source")


def _products(repo: DataRepository, visit: int) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for name in PRODUCTS:
        for ref in repo.butler.registry.queryDatasets(
            name, collections="Pachon/prompt/*", instrument=INSTRUMENT
        ):
            if int(ref.dataId["visit"]) == visit:
                out.setdefault(int(ref.dataId["detector"]), set()).add(name)
    return out


def test_corrupt_raw_and_failed_wcs_leave_the_other_detectors_complete(live_prompt_run: Any) -> None:
    from pachon.core.alerts import AlertArchive
    from pachon.pipelines.prompt.ppdb import apdb_snapshot

    run = live_prompt_run
    visit = run.visits[1]
    repo = DataRepository.open(run.path)
    summary = repo.get("prompt_visit_summary", visit=visit, collections=SUMMARY_RUN)
    failures = {int(k): v for k, v in summary["failures"].items()}
    assert set(failures) == {run.bad_detector, run.wcs_detector}, failures
    assert failures[run.bad_detector].startswith("read and calibrate: ")
    assert "AstrometryError" in failures[run.wcs_detector], failures[run.wcs_detector]
    assert sorted(summary["detectors_ok"]) == [0, 3]
    # The failures are told to the operator too.
    assert f"detector {run.wcs_detector} failed: read and calibrate: AstrometryError" in run.output
    # Nothing half-written: the good detectors have all four products, the failed ones none.
    products = _products(repo, visit)
    assert products == {0: set(PRODUCTS), 3: set(PRODUCTS)}, products
    # The first visit, with good data, is complete.
    assert set(_products(repo, run.visits[0])) == {0, 1, 2, 3}
    # Neither the APDB nor the alert stream hold anything from the failed detectors.
    sources = apdb_snapshot(run.path)["DiaSource"]
    this = sources[sources["visit"] == visit]
    assert set(this["detector"]) <= {0, 3}
    forced = apdb_snapshot(run.path)["DiaForcedSource"]
    assert set(forced[forced["visit"] == visit]["detector"]) <= {0, 3}
    archive = AlertArchive.for_repo(run.path)
    alerts = [r for n in archive.nights() for r in archive.read(n) if r.visit == visit]
    assert {r.detector for r in alerts} <= {0, 3} and len(alerts) == len(this)


def test_missing_template_is_recorded_for_every_detector_and_nothing_is_written(pending_tiny: Any) -> None:
    from pachon.core.repo import COLLECTIONS
    from pachon.pipelines.prompt.pipeline import list_exposures, run_visit

    path, visits = pending_tiny(1)
    repo = DataRepository.open(path, writeable=True)
    exposure = next(e for e in list_exposures(repo) if e.id == visits[0])
    templates = [
        ref
        for ref in repo.butler.registry.queryDatasets("template_coadd", collections=COLLECTIONS["templates"])
        if ref.dataId["band"] == exposure.band
    ]
    assert templates
    repo.butler.pruneDatasets(templates, disassociate=True, unstore=True, purge=True)
    report = run_visit(path, exposure, map_fn=map, alerts=True)
    assert sorted(report.failures) == [0, 1, 2, 3] and not report.detectors_ok
    assert all(reason.startswith("template: MissingTemplateError") for reason in report.failures.values())
    assert "pachon prompt templates" in report.failures[0]  # the reason says how to fix it
    stored = DataRepository.open(path).get("prompt_visit_summary", visit=exposure.id, collections=SUMMARY_RUN)
    assert set(stored["failures"]) == {"0", "1", "2", "3"}
    assert _products(DataRepository.open(path), exposure.id) == {}
    assert not (path / "apdb").exists() and not (path / "alerts").exists()
