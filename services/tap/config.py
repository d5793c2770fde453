"""Configuration of one TAP service process.

Built from :mod:`pachon.core.settings` (limits, public URL, state database) plus what the
command line says (catalog URL, anonymous mode). One frozen object, created before the app,
so a test builds an app with exactly the configuration it wants without environment games.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from pachon.core.settings import Settings, TapSettings, get_settings

__all__ = ["TapConfig"]


@dataclass(frozen=True)
class TapConfig:
    """Everything the TAP service needs to start.

    Parameters
    ----------
    catalog_url
        SQLAlchemy URL of the catalog database (``duckdb:///cat.duckdb``, ``postgresql://…``).
    state_url
        SQLAlchemy URL of the platform state database (jobs and query history).
    results_dir
        Folder for async job results and stored uploads; by default ``tap-results`` beside a
        SQLite state database, else ``<repo>/state/tap-results``.
    anonymous
        Serve everybody as the user ``anonymous`` (local use and benchmarks).
    async_create_grace_s
        How long a ``POST /async`` with ``PHASE=RUN`` waits for the job to finish before
        answering 303, so short jobs are COMPLETED when the client first looks.
    sync_inline_bytes
        Sync answers up to this size are sent in one piece; larger ones stream chunk by
        chunk while the database still produces rows.
    limits
        The ``tap`` section of the settings (MAXREC, timeouts, upload limits, public URL).
    """

    catalog_url: str
    state_url: str
    results_dir: Path
    anonymous: bool = False
    limits: TapSettings = field(default_factory=TapSettings)
    reload_interval_s: float = 30.0
    reaper_interval_s: float = 60.0
    async_workers: int = 2
    max_wait_s: float = 600.0
    async_create_grace_s: float = 0.25
    sync_inline_bytes: int = 4 << 20

    @classmethod
    def from_settings(
        cls,
        *,
        catalog_url: str | None = None,
        anonymous: bool = False,
        settings: Settings | None = None,
        **overrides: object,
    ) -> TapConfig:
        """Build the configuration from the installation's settings and CLI choices."""
        settings = settings or get_settings()
        url = catalog_url or settings.catalog_url
        if url is None:  # the repo's embedded catalog: one DuckDB file per release in REPO/catalog/
            url = f"duckdb:///{settings.catalog_dir.resolve()}/"
        state_url = settings.state_url
        return cls(
            catalog_url=url,
            state_url=state_url,
            results_dir=default_results_dir(state_url, settings),
            anonymous=anonymous,
            limits=settings.tap,
            **overrides,  # type: ignore[arg-type]
        )


def default_results_dir(state_url: str, settings: Settings) -> Path:
    """``tap-results`` beside the SQLite state file, else inside the repo's state folder."""
    parsed = make_url(state_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return Path(parsed.database).resolve().parent / "tap-results"
    return (settings.repo / "state" / "tap-results").resolve()
