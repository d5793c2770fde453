"""The `pachon` command as a user meets it: help that teaches, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pachon.cli.main import main


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pachon.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_top_level_help_lists_every_group() -> None:
    out = run_cli("--help")
    assert out.returncode == 0
    for group in ("repo", "simulate", "prompt", "mops", "drp", "catalog", "serve", "up", "version"):
        assert group in out.stdout, f"{group} missing from pachon --help"
    assert "pachon repo create demo/repo" in out.stdout


@pytest.mark.parametrize("command", [["repo", "create"], ["repo", "info"]])
def test_subcommand_help_has_an_example(command: list[str]) -> None:
    out = run_cli(*command, "--help")
    assert out.returncode == 0
    assert "Example: pachon" in out.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("pachon ")


def test_missing_repo_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["repo", "info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "no such folder" in err[0] and "pachon repo create" in err[0]


def test_usage_error_exits_2() -> None:
    out = run_cli("repo", "info")
    assert out.returncode == 2
    assert "Missing argument" in out.stderr


def test_invalid_setting_stops_every_command(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PACHON_TAP__MAXREC_HARD": "-5"}
    out = run_cli("version", env=env, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "tap.maxrec_hard" in lines[0] and "-5" in lines[0] and "greater than or equal to 1" in lines[0]


def test_later_groups_say_they_are_not_available_yet(capsys: pytest.CaptureFixture[str]) -> None:
    import pachon.cli.main as cli

    later = [name for name in cli._LATER if name not in {g.name for g in cli.app.registered_groups if g.name}]
    for name in later:
        assert main([name]) == 2
        assert "not available" in capsys.readouterr().err
