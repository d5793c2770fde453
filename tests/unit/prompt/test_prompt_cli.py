"""The ``pachon prompt`` commands: registered, self-documenting, and clear about a missing repo."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from pachon.cli.prompt import register


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test root."""

    register(app)
    return app


def test_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(_app(), ["prompt", "--help"])
    assert result.exit_code == 0
    assert "pachon prompt templates --repo" in result.output
    run_help = CliRunner().invoke(_app(), ["prompt", "run", "--help"])
    assert "--follow" in run_help.output and "--visits" in run_help.output


def test_missing_repo_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(_app(), ["prompt", "run", "--repo", str(tmp_path / "nope"), "--workers", "1"])
    assert result.exit_code != 0
    assert "pachon repo create" in str(result.exception)
