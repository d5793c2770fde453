"""``pachon simulate`` as a user meets it: help with examples, the plot, errors that say how to fix them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from pachon.core.repo import DataRepository
from pachon.pipelines.sim import plot_visit


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pachon.cli", "simulate", *args], capture_output=True, text=True, check=False
    )


def test_help_teaches_with_examples() -> None:
    out = _cli("--help")
    assert out.returncode == 0
    assert "pachon simulate --repo demo/repo --preset tiny" in out.stdout
    assert "--plot" in out.stdout and "--release-pace" in out.stdout


def test_unknown_preset_is_a_usage_error(tmp_path: Path) -> None:
    out = _cli("--repo", str(tmp_path / "r"), "--preset", "huge")
    assert out.returncode == 2
    assert "tiny, small, medium" in out.stderr
    assert not (tmp_path / "r").exists()


def test_plot_writes_a_png_with_truth_overlaid(tiny_repo: Path, tmp_path: Path) -> None:
    repo = DataRepository.open(tiny_repo)
    exposure = min(r.id for r in repo.butler.registry.queryDimensionRecords("exposure"))
    out = tmp_path / "visit.png"
    result = _cli("--repo", str(tiny_repo), "--plot", f"{exposure},1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    img = imread(out)
    assert img.shape[0] > 500 and img.shape[1] > 500
    # the overlay colours are there (cyan star circles)
    rgb = img[..., :3]
    cyan = (rgb[..., 0] < 0.2) & (rgb[..., 1] > 0.8) & (rgb[..., 2] > 0.9)
    assert cyan.sum() > 100
    fig = plot_visit(repo, exposure, 1)
    assert len(fig.axes[0].collections) >= 2  # stars and galaxies at least
    assert np.isfinite(fig.axes[0].images[0].get_array()).all()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_plot_of_a_missing_exposure_says_so(tiny_repo: Path, tmp_path: Path) -> None:
    result = _cli("--repo", str(tiny_repo), "--plot", "123,0", "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert "no raw for exposure 123" in result.stderr
