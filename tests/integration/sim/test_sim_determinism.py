"""Same seed → byte-identical files (whatever the worker count); interrupted runs resume without duplicates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pachon.core.repo import DataRepository
from pachon.pipelines.sim import CameraConfig, SimConfig, simulate


def _micro() -> SimConfig:
    """Two 256² detectors, 4 visits: the whole machinery at a fraction of the cost."""
    return SimConfig(
        name="micro",
        camera=CameraConfig(nx=256, ny=256, n_col=2, n_row=1, pitch_x_px=270.0, pitch_y_px=270.0),
        n_visits=4,
        n_asteroids=3,
        n_neos=1,
    )


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file of the repo except the registry database (it holds UUIDs and timestamps)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("gen3.sqlite3")
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("det") / "a"
    summary = simulate(root, config=_micro(), seed=5, workers=2, show_progress=False)
    assert summary.rendered == 8
    return root


def test_resumed_run_is_byte_identical_to_a_straight_run(reference: Path, tmp_path: Path) -> None:
    root = tmp_path / "b"
    first = simulate(root, config=_micro(), seed=5, workers=1, show_progress=False, limit=3)
    assert first.rendered == 3
    second = simulate(root, config=_micro(), seed=5, workers=2, show_progress=False)
    assert (second.rendered, second.skipped) == (5, 3)
    assert "refcat" not in second.written and "truth_stars" not in second.written  # not written twice
    a, b = _digest(reference), _digest(root)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []
    repo = DataRepository.open(root)
    raws = repo.butler.query_datasets("raw", collections="Pachon/raw/all")
    assert len(raws) == 8 and len({(r.dataId["exposure"], r.dataId["detector"]) for r in raws}) == 8


def test_rerun_is_a_no_op(reference: Path) -> None:
    before = _digest(reference)
    again = simulate(reference, config=_micro(), seed=5, workers=2, show_progress=False)
    assert again.rendered == 0 and again.written == {}
    assert _digest(reference) == before


def test_another_seed_gives_other_pixels(reference: Path, tmp_path: Path) -> None:
    simulate(tmp_path / "c", config=_micro(), seed=6, workers=1, show_progress=False)
    a = DataRepository.open(reference)
    c = DataRepository.open(tmp_path / "c")
    exp_a = min(r.id for r in a.butler.registry.queryDimensionRecords("exposure"))
    exp_c = min(r.id for r in c.butler.registry.queryDimensionRecords("exposure"))
    img_a = a.get("raw", exposure=exp_a, detector=0).data
    img_c = c.get("raw", exposure=exp_c, detector=0).data
    assert not np.array_equal(img_a, img_c)
