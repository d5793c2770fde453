"""The platform state database: jobs, query history, user tables, filters, metrics.

SQLite inside the repo by default (``<repo>/state/pachon.sqlite3``), PostgreSQL when
``state_db_url`` is set; the schema is versioned with Alembic from the first table on, so
an upgrade of Pachón migrates an existing installation instead of losing its jobs.
Every component that writes state calls :func:`upgrade_state` once at start (cheap when
already at head) and then uses :func:`state_engine`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["MIGRATIONS_DIR", "current_revision", "head_revision", "state_engine", "upgrade_state"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", _driver_url(url).replace("%", "%%"))
    return cfg


def _driver_url(url: str) -> str:
    """Name the installed PostgreSQL driver explicitly (SQLAlchemy 2.1 defaults to psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def state_engine(url: str) -> Engine:
    """The (cached) SQLAlchemy engine of a state database; SQLite gets WAL and a busy timeout."""
    url = _driver_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.close()
        else:
            engine = create_engine(url, pool_pre_ping=True)
        _engines[url] = engine
        return engine


def head_revision() -> str:
    """The newest migration this version of Pachón knows."""
    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """The migration the database is at (None for an empty database)."""
    with state_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_state(url: str) -> str:
    """Migrate the state database to the newest schema (idempotent); return the revision."""
    engine = state_engine(url)
    if current_revision(url) == head_revision():
        return head_revision()
    cfg = _alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head_revision()
