"""``pachon drp`` and ``pachon metrics`` command-line errors and help (no data needed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pachon.cli.main import app


def test_drp_run_refuses_a_folder_that_is_not_a_repo(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["drp", "run", "--repo", str(tmp_path)])
    assert out.exit_code == 2
    assert "not a data repository" in out.output and "pachon simulate" in out.output


def test_drp_help_teaches_with_examples() -> None:
    out = CliRunner().invoke(app, ["drp", "run", "--help"])
    assert out.exit_code == 0
    assert "--release" in out.output and "pachon drp run --repo" in out.output


def test_metrics_show_without_runs_says_what_to_do(isolated_settings: Path) -> None:
    tmp_path = isolated_settings
    out = CliRunner().invoke(app, ["metrics", "show", "--repo", str(tmp_path)])
    assert out.exit_code == 1
    assert "pachon drp run" in out.output
