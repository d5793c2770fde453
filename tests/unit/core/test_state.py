"""The platform state database is migrated by Alembic from the first table on."""

from __future__ import annotations

from sqlalchemy import inspect, text

from pachon.core.state import current_revision, head_revision, state_engine, upgrade_state


def test_upgrade_from_empty_and_again(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'pachon.sqlite3'}"
    assert current_revision(url) is None
    assert upgrade_state(url) == head_revision()
    assert current_revision(url) == head_revision()
    tables = set(inspect(state_engine(url)).get_table_names())
    assert {"alembic_version", "platform_info", "metric_run", "metric_value"} <= tables
    assert upgrade_state(url) == head_revision()  # idempotent


def test_state_survives_reopen(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    upgrade_state(url)
    with state_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO platform_info (key, value) VALUES ('created_by', 'test')"))
    state_engine(url).dispose()
    with state_engine(url).connect() as conn:
        assert conn.execute(text("SELECT value FROM platform_info WHERE key='created_by'")).scalar() == "test"


def test_postgres_state_database(postgres_url: str) -> None:
    assert upgrade_state(postgres_url) == head_revision()
    assert "metric_run" in inspect(state_engine(postgres_url)).get_table_names()
