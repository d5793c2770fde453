"""Wiring: build the per-process singletons once, and hand handlers one request context.

:class:`ProcessContext` owns what lives as long as the process (catalog database, state
engine, the job runner with its threads). :class:`RequestContext` is the one dependency a
handler takes: who is asking, the public base URL as the client sees it, and the services.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request

from pachon.core.catalog import CatalogDatabase, open_catalog
from pachon.core.logging import get_logger
from pachon.core.state import state_engine, upgrade_state

from .config import TapConfig
from .models.user import User
from .services.history import HistoryService, HistoryWriter
from .services.jobs import JobService
from .services.metadata import MetadataService
from .services.query import QueryService
from .services.watchdog import Watchdog
from .storage.files import ResultFiles
from .storage.history import HistoryStore
from .storage.jobs import JobStore
from .storage.util import utcnow

__all__ = ["ProcessContext", "RequestContext", "public_base_url"]


@dataclass
class ProcessContext:
    """The singletons of one TAP service process."""

    config: TapConfig
    catalog: CatalogDatabase
    queries: QueryService
    jobs: JobService
    history: HistoryService
    metadata: MetadataService
    logger: logging.Logger
    started_at: datetime
    history_writer: HistoryWriter
    watchdog: Watchdog

    @classmethod
    def create(cls, config: TapConfig) -> ProcessContext:
        """Open the catalog, migrate the state database, recover jobs of a dead process."""
        logger = get_logger("pachon.services.tap")
        upgrade_state(config.state_url)
        engine = state_engine(config.state_url)
        config.results_dir.mkdir(parents=True, exist_ok=True)
        catalog = open_catalog(config.catalog_url, read_only=True)
        install_functions(catalog, logger)
        history_store = HistoryStore(engine=engine)
        history_writer = HistoryWriter(store=history_store, logger=logger)
        watchdog = Watchdog()
        queries = QueryService(
            config=config, catalog=catalog, history=history_writer, watchdog=watchdog, logger=logger
        )
        jobs = JobService(
            config=config,
            store=JobStore(engine=engine),
            files=ResultFiles(root=config.results_dir),
            queries=queries,
            watchdog=watchdog,
            logger=logger,
        )
        jobs.recover()
        started = utcnow()
        return cls(
            config=config,
            catalog=catalog,
            queries=queries,
            jobs=jobs,
            history=HistoryService(store=history_store, writer=history_writer),
            history_writer=history_writer,
            watchdog=watchdog,
            metadata=MetadataService(config=config, catalog=catalog, started_at=started),
            logger=logger,
            started_at=started,
        )

    def close(self) -> None:
        self.jobs.close()
        self.history_writer.close()
        self.watchdog.close()
        self.catalog.close()


@dataclass
class RequestContext:
    """What a handler needs for one request."""

    request: Request
    user: User
    base_url: str
    process: ProcessContext

    @property
    def queries(self) -> QueryService:
        return self.process.queries

    @property
    def jobs(self) -> JobService:
        return self.process.jobs

    @property
    def metadata(self) -> MetadataService:
        return self.process.metadata

    @property
    def history(self) -> HistoryService:
        return self.process.history

    @property
    def async_url(self) -> str:
        return self.base_url + "/async"

    def job_url(self, job_id: str) -> str:
        return f"{self.base_url}/async/{job_id}"


def install_functions(catalog: CatalogDatabase, logger: logging.Logger) -> None:
    """Make the functions translated SQL calls (geometry, HEALPix, ``ivo_*``, ``scisql_*``) exist.

    DuckDB: Python UDFs are registered on the catalog's one shared connection, whose cursors
    all see them. They must not be registered on a cursor: DuckDB frees the Python callable
    when that cursor closes, and the next call crashes the process. The catalog layer keeps
    that connection private, hence the attribute access (see the report: ``_connect()`` in
    the catalog layer is the better home). PostgreSQL: the SQL helper
    functions are created (``CREATE OR REPLACE``) if the role may; otherwise the catalog's
    owner must have run them (``pachon catalog create`` does).
    """
    if catalog.dialect == "duckdb":
        from .adql import duckdb_functions

        connection = getattr(catalog, "_conn", None)
        if connection is None:
            raise RuntimeError("the DuckDB catalog has no open connection to install the ADQL functions on")
        duckdb_functions.install(connection)
        return
    from .adql import postgres_functions

    try:
        with catalog.connection() as conn:
            with conn.cursor() as cursor:
                cursor.execute(postgres_functions.install_sql())
            conn.commit()
    except Exception as exc:  # a read-only role: the functions must already be there
        logger.warning("could not install the SQL helper functions in the catalog database: %s", exc)


def public_base_url(request: Request, config: TapConfig) -> str:
    """The TAP base URL as the client sees it.

    ``public_base_url`` from settings wins (behind the hub's proxy at ``/services/tap``);
    otherwise ``X-Forwarded-Proto``/``X-Forwarded-Host``/``X-Forwarded-Prefix`` (or the ASGI
    ``root_path``) are honoured, then the request's own scheme and host.
    """
    if config.limits.public_base_url:
        return config.limits.public_base_url.rstrip("/")
    headers = request.headers
    scheme = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = (
        headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host") or request.url.netloc
    )
    prefix = headers.get("x-forwarded-prefix", "").rstrip("/") or request.scope.get("root_path", "").rstrip(
        "/"
    )
    return f"{scheme}://{host}{prefix}/tap"
