"""A release of a subset of the visits (``run_release(visits=…)``, used by the scaling benchmark).

Six of the ``tiny`` survey's 20 visits, in-process (1 worker), without metrics: ≈20–40 s. Checks
that only those visits are processed and released, and that the per-step memory peaks the
benchmark reads are recorded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.drp import catalog_rows

pytestmark = pytest.mark.slow


def test_partial_release_processes_only_the_chosen_visits(
    tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from pachon.core.repo import DataRepository
    from pachon.pipelines.drp import run_release
    from pachon.pipelines.prompt.pipeline import list_exposures

    repo = tmp_path_factory.mktemp("drp_part") / "repo"
    shutil.copytree(tiny_repo, repo, ignore=shutil.ignore_patterns("catalog", "state"))
    ids = [e.id for e in list_exposures(DataRepository.open(str(repo)))]
    chosen = ids[:: max(len(ids) // 6, 1)][:6]
    report = run_release(repo, "part", workers=1, show_progress=False, compute_metrics=False, visits=chosen)

    n_det = report.quanta // len(chosen)
    assert report.quanta == len(chosen) * n_det and n_det >= 1
    assert report.n_visits == len(chosen)
    assert report.n_objects > 0 and report.n_forced > 0
    visits = catalog_rows(report.catalog_url, "SELECT visit FROM part.Visit")
    assert sorted(v for (v,) in visits) == sorted(chosen)
    forced = catalog_rows(report.catalog_url, "SELECT DISTINCT visit FROM part.ForcedSource")
    assert {v for (v,) in forced} <= set(chosen)
    # per-step memory: the driver (1 worker: in-process) holds at least the images it processed
    peaks = report.step_peak_rss_mib
    assert {"single_visit", "coadd", "forced", "catalog", "total"} <= set(peaks)
    assert peaks["single_visit"] > 100, peaks
    assert peaks["total"] == max(v for k, v in peaks.items() if k != "total")

    with pytest.raises(FileNotFoundError, match="no raws for visits"):
        run_release(repo, "part", workers=1, show_progress=False, visits=[123])
