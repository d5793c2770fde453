"""Running one ADQL query: parse, translate, execute, encode; shared by /sync and /async.

Flow (all of it in a worker thread, never on the event loop):

1. uploads (``TAP_UPLOAD.name``) are read into Arrow tables (inline parts, stored files
   of async jobs, or SSRF-guarded http(s) URLs) and registered with the catalog;
2. the ADQL is parsed and translated for the catalog's dialect with
   ``limit = MAXREC + 1``: one row more than the client may get, so OVERFLOW is reported
   only when rows were really cut (pyvo#687, daiquiri#359); the translator combines it
   with TOP, which makes MAXREC override TOP;
3. the SQL runs on a pooled catalog connection attached to a :class:`~.cancel.QueryHandle`
   (time limits and ABORT interrupt it on the database);
4. Arrow record batches stream into the chosen writer; a trailing QUERY_STATUS INFO says
   OK, OVERFLOW or ERROR (DALI §5.5).

``MAXREC=0`` answers with the metadata only (the SQL still runs with ``LIMIT 0``, which
validates the query against the database). Every query lands in the history.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from pachon.core.catalog import CatalogDatabase
from pachon.core.catalog.model import ColumnInfo, TableInfo

from .. import adql, formats
from ..adql import nodes as adql_nodes
from ..config import TapConfig
from ..exceptions import ExecutionTimeoutError, JobAbortedError, QueryError, TapError, UploadError
from ..models.params import TapParams
from ..storage.util import utcnow
from .cancel import QueryHandle
from .history import HistoryWriter
from .watchdog import Watchdog

__all__ = ["FileOutcome", "QueryService", "SyncAnswer", "UploadData"]

_BATCH_ROWS = 65_536
_CLIENT_CURSOR_ROWS = 200_000
_PG_SESSION = "SET work_mem = '64MB'; SET jit = off; SET cursor_tuple_fraction = 1.0"


@dataclass
class UploadData:
    """Where one uploaded table's bytes are: in memory (sync), in a file (async) or at a URL."""

    data: bytes | None = None
    path: Path | None = None


@dataclass
class FileOutcome:
    """An async result written to disk."""

    path: Path
    mime: str
    rows: int
    size: int


@dataclass
class SyncAnswer:
    """A sync result: its MIME type and body (whole, or an iterator of chunks to stream)."""

    mime: str
    body: bytes | None = None
    chunks: Iterator[bytes] | None = None


@dataclass
class _Run:
    """Bookkeeping of one execution: rows sent, overflow, error, timing."""

    owner: str
    mode: str
    query: str
    job_id: str | None
    started_at: datetime = field(default_factory=utcnow)
    t0: float = field(default_factory=time.perf_counter)
    rows: int = 0
    overflow: bool = False
    error: str | None = None
    recorded: bool = False


class QueryService:
    """Executes TAP queries against the catalog database and records them in the history."""

    def __init__(
        self,
        *,
        config: TapConfig,
        catalog: CatalogDatabase,
        history: HistoryWriter,
        watchdog: Watchdog,
        logger: logging.Logger,
    ) -> None:
        self._config = config
        self._catalog = catalog
        self._history = history
        self._watchdog = watchdog
        self._logger = logger
        self._tuned: weakref.WeakSet[Any] = weakref.WeakSet()

    # Public API ----------------------------------------------------------------------
    def run_sync(self, *, owner: str, params: TapParams, uploads: dict[str, UploadData]) -> SyncAnswer:
        """Run a sync query; small results come back whole, large ones as a chunk iterator."""
        run = _Run(owner=owner, mode="sync", query=params.query, job_id=None)
        handle = QueryHandle()
        timer = self._watchdog.call_later(
            self._config.limits.sync_timeout_s, lambda: handle.cancel("timeout")
        )
        try:
            fmt = self._negotiate(params)
            chunks = self._execute(run, params, uploads, handle, fmt, self._config.limits.sync_timeout_s)
            first: list[bytes] = []
            size = 0
            for chunk in chunks:
                first.append(chunk)
                size += len(chunk)
                if size > self._config.sync_inline_bytes:
                    break
            else:
                timer.cancel()
                self._record(run)
                return SyncAnswer(mime=fmt.mime, body=b"".join(first))
        except TapError as exc:
            timer.cancel()
            run.error = exc.message
            self._record(run)
            raise
        except formats.ResultStreamError as exc:
            # a CSV/Parquet/FITS result failed before any byte was sent: answer a clean error
            timer.cancel()
            run.error = run.error or str(exc)
            self._record(run)
            raise QueryError(run.error) from None
        except BaseException:
            timer.cancel()
            raise

        def _rest() -> Iterator[bytes]:
            try:
                yield from first
                yield from chunks
            finally:
                timer.cancel()
                self._record(run)

        return SyncAnswer(mime=fmt.mime, chunks=_rest())

    def run_to_file(
        self,
        *,
        owner: str,
        job_id: str,
        params: TapParams,
        uploads: dict[str, UploadData],
        path_for: Callable[[str], Path],
        handle: QueryHandle,
        execution_duration: float,
    ) -> FileOutcome:
        """Run an async job's query and write its result file."""
        run = _Run(owner=owner, mode="async", query=params.query, job_id=job_id)
        try:
            fmt = self._negotiate(params)
            path = path_for(fmt.extension)
            size = 0
            with path.open("wb") as out:
                for chunk in self._execute(run, params, uploads, handle, fmt, execution_duration):
                    out.write(chunk)
                    size += len(chunk)
            if run.error is not None:
                raise QueryError(run.error)
            return FileOutcome(path=path, mime=fmt.mime, rows=run.rows, size=size)
        except TapError as exc:
            run.error = exc.message
            raise
        finally:
            self._record(run)

    # Steps ------------------------------------------------------------------------------
    def _negotiate(self, params: TapParams) -> formats.OutputFormat:
        try:
            return formats.negotiate(params.responseformat)
        except formats.FormatError as exc:
            raise QueryError(str(exc)) from None

    def _maxrec(self, params: TapParams) -> int:
        limits = self._config.limits
        maxrec = limits.maxrec_default if params.maxrec is None else params.maxrec
        return min(maxrec, limits.maxrec_hard)

    def _load_uploads(self, params: TapParams, uploads: dict[str, UploadData]) -> dict[str, pa.Table]:
        """Read every ``UPLOAD`` into an Arrow table (format errors name table, row and column)."""
        limits = self._config.limits
        tables: dict[str, pa.Table] = {}
        for spec in params.uploads:
            if spec.inline_part is None:
                fetched = formats.fetch_upload_url(
                    spec.uri,
                    allow_private_hosts=limits.upload_allow_private_hosts,
                    max_bytes=limits.upload_max_bytes,
                )
                upload = formats.read_upload(
                    fetched, spec.name, max_rows=limits.upload_max_rows, max_bytes=limits.upload_max_bytes
                )
            else:
                source = uploads.get(spec.name)
                if source is None:
                    raise UploadError(
                        f"UPLOAD={spec.name},{spec.uri}: the request has no multipart part "
                        f"{spec.inline_part!r}; send the table as multipart/form-data with that part name"
                    )
                data: bytes | Path = source.data if source.data is not None else source.path  # type: ignore[assignment]
                upload = formats.read_upload(
                    data, spec.name, max_rows=limits.upload_max_rows, max_bytes=limits.upload_max_bytes
                )
            tables[spec.name] = upload.table
        return tables

    def _execute(
        self,
        run: _Run,
        params: TapParams,
        uploads: dict[str, UploadData],
        handle: QueryHandle,
        fmt: formats.OutputFormat,
        time_limit: float,
    ) -> Iterator[bytes]:
        """Prepare eagerly (so errors surface before the first byte), then stream lazily.

        The uploads' scope and the catalog connection stay open until the returned
        iterator is exhausted or closed.
        """
        maxrec = self._maxrec(params)
        stack = contextlib.ExitStack()
        try:
            upload_tables = self._load_uploads(params, uploads)
            infos = stack.enter_context(self._catalog.uploads(upload_tables)) if upload_tables else {}
            resolver = _RequestResolver(self._catalog, infos)
            try:
                tree = adql.parse(params.query)
                translation = adql.translate(
                    tree, dialect=self._catalog.dialect, resolver=resolver, limit=maxrec + 1
                )
            except adql.AdqlError as exc:
                raise QueryError(str(exc)) from None
            columns = list(translation.columns)
            conn = stack.enter_context(self._catalog.connection())
            handle.attach(conn)
            stack.callback(handle.detach)
            try:
                row_bound = min(translation.top if translation.top is not None else maxrec + 1, maxrec + 1)
                if _aggregated(tree):
                    row_bound = min(row_bound, _CLIENT_CURSOR_ROWS)
                batches = self._fetch(
                    conn, translation.sql, columns, metadata_only=maxrec == 0, row_bound=row_bound
                )
                first = next(batches, None)
            except Exception as exc:
                raise self._db_error(exc, handle, time_limit) from None
        except BaseException:
            stack.close()
            raise

        def _limited() -> Iterator[pa.RecordBatch]:
            try:
                pending = first
                while pending is not None:
                    if maxrec == 0:
                        return
                    room = maxrec - run.rows
                    if pending.num_rows > room:
                        if room > 0:
                            run.rows += room
                            yield pending.slice(0, room)
                        run.overflow = True
                        return
                    run.rows += pending.num_rows
                    yield pending
                    pending = next(batches, None)
            except TapError as exc:
                run.error = exc.message
            except Exception as exc:
                run.error = self._db_error(exc, handle, time_limit).message
            finally:
                stack.close()

        def _status() -> tuple[str, str | None]:
            if run.error is not None:
                return "ERROR", run.error
            if run.overflow or maxrec == 0:
                return "OVERFLOW", f"the result was cut at MAXREC={maxrec} rows; ask for more with MAXREC"
            return "OK", None

        meta = formats.ResultMeta(query=params.query, params={"LANG": params.lang})
        return fmt.write(columns, _limited(), status=_status, meta=meta)

    def _fetch(
        self, conn: Any, sql: str, columns: list[ColumnInfo], *, metadata_only: bool, row_bound: int
    ) -> Iterator[pa.RecordBatch]:
        """Run the SQL and iterate over its result as Arrow record batches.

        On PostgreSQL a result that may be large streams through a server-side cursor; one
        bounded by ``_CLIENT_CURSOR_ROWS`` (the default MAXREC and every TOP/aggregate
        query) uses an ordinary cursor, because PostgreSQL never plans a ``DECLARE
        CURSOR`` query in parallel and plans it for the first rows, which made full-table
        aggregates 2-3x slower than DaCHS.
        """
        if metadata_only:
            sql = f"SELECT * FROM ({sql}) AS pachon_q LIMIT 0"
        if self._catalog.dialect == "duckdb":  # Arrow all the way
            return iter(conn.sql(sql).to_arrow_reader(_BATCH_ROWS))
        self._tune_postgres(conn)
        if row_bound <= _CLIENT_CURSOR_ROWS:
            cursor = conn.cursor()
        else:
            cursor = conn.cursor(name="pachon_tap")
            cursor.itersize = _BATCH_ROWS
        cursor.execute(sql)
        return formats.rows_to_batches(itertools.chain.from_iterable(_fetchmany(cursor)), columns)

    def _tune_postgres(self, conn: Any) -> None:
        """Session settings for analytic TAP queries, once per pooled connection.

        ``work_mem`` lets GROUP BY/ORDER BY over a catalog hash or sort in memory instead
        of spilling to disk; JIT compilation costs more than it saves on queries of tens
        of milliseconds; ``cursor_tuple_fraction = 1`` plans server-side cursors for the
        whole result (TAP reads all of it), not for the first 10 %.
        """
        if conn in self._tuned:
            return
        with conn.cursor() as cursor:
            cursor.execute(_PG_SESSION)
        conn.commit()
        self._tuned.add(conn)

    def _db_error(self, exc: Exception, handle: QueryHandle, time_limit: float) -> TapError:
        if handle.reason == "timeout":
            return ExecutionTimeoutError(
                f"the query ran longer than its time limit of {time_limit:g} s and was cancelled; "
                "restrict it (smaller region, TOP, fewer columns) or run it as an async job"
            )
        if handle.reason in ("abort", "shutdown"):
            return JobAbortedError("the job was aborted while it ran")
        if isinstance(exc, TapError):
            return exc
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return QueryError(f"the database rejected the query: {message}")

    def _record(self, run: _Run) -> None:
        if run.recorded:
            return
        run.recorded = True
        status = "ERROR" if run.error else ("OVERFLOW" if run.overflow else "OK")
        self._history.record(
            owner=run.owner,
            mode=run.mode,
            job_id=run.job_id,
            query=run.query,
            started_at=run.started_at,
            duration_s=time.perf_counter() - run.t0,
            row_count=None if run.error else run.rows,
            status=status,
            error_message=run.error,
        )


class _RequestResolver:
    """Tables as one query sees them: the catalog plus this request's own ``TAP_UPLOAD`` tables.

    Uploads are looked up here, not in the catalog's shared registry, so two concurrent
    requests that both upload a table named ``pos`` never see each other's data.
    """

    def __init__(self, catalog: CatalogDatabase, uploads: dict[str, TableInfo]) -> None:
        self._catalog = catalog
        self._uploads = {name.lower(): info for name, info in uploads.items()}

    def resolve(self, schema: str | None, table: str) -> TableInfo | None:
        if schema is not None and schema.upper() == "TAP_UPLOAD":
            return self._uploads.get(table.lower())
        return self._catalog.resolve(schema, table)


_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "ivo_string_agg"})


def _aggregated(tree: Any) -> bool:
    """Whether the query's top level aggregates (GROUP BY, or only aggregate functions).

    Its result then has one row per group, so it is read with an ordinary (parallel-capable)
    PostgreSQL cursor; still bounded by MAXREC.
    """
    body = getattr(tree, "body", None)
    if not isinstance(body, adql_nodes.Select):
        return False
    if body.group_by:
        return True
    return bool(body.items) and all(
        isinstance(item.expr, adql_nodes.FuncCall) and item.expr.name.lower() in _AGGREGATES
        for item in body.items
    )


def _fetchmany(cursor: Any) -> Iterator[list[tuple[Any, ...]]]:
    while True:
        rows = cursor.fetchmany(_BATCH_ROWS)
        if not rows:
            return
        yield rows
