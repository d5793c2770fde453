"""Where the TAP service looks by default: the repo's catalog folder and state database."""

from __future__ import annotations

from pathlib import Path

from pachon.core.settings import load_settings
from pachon.services.tap.config import TapConfig


def test_defaults_follow_the_repo(isolated_settings: Path) -> None:
    config = TapConfig.from_settings(settings=load_settings(repo=isolated_settings / "repo"))
    assert config.catalog_url == f"duckdb:///{(isolated_settings / 'repo' / 'catalog').resolve()}/"
    assert config.state_url.endswith("/repo/state/pachon.sqlite3")
    assert config.results_dir == (isolated_settings / "repo" / "state" / "tap-results").resolve()
    assert not config.anonymous


def test_explicit_catalog_and_postgres_state(isolated_settings: Path) -> None:
    settings = load_settings(repo=isolated_settings / "r", state_db_url="postgresql://u@h/state")
    config = TapConfig.from_settings(catalog_url="postgresql://u@h/cat", anonymous=True, settings=settings)
    assert config.catalog_url == "postgresql://u@h/cat" and config.anonymous
    assert config.results_dir == (isolated_settings / "r" / "state" / "tap-results").resolve()
