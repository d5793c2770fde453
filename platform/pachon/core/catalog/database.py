"""One catalog API over two back ends: DuckDB files (embedded default) and PostgreSQL + pgsphere + q3c.

``open_catalog(url, read_only=...)`` picks the back end from an SQLAlchemy-style URL:

``duckdb:///path/folder/`` (a folder: the embedded default ``REPO/catalog/``)
    Each schema (release) is its own file ``<schema>.duckdb``, attached under the schema's
    name (``dp1.duckdb`` → ``dp1``); its tables live in the file's ``main`` schema, so
    ``dp1.Object`` resolves as catalog.table.
``duckdb:///path/file.duckdb`` (one file holding several schemas, e.g. the benchmark's)
    Tables live in DuckDB schemas of the file; the reader attaches the file under a private
    alias and exposes each table through a view ``<schema>.<table>`` of its in-memory main
    database (views are inlined by the planner, so filters still prune on zone maps).
``postgresql://user@host:port/db``
    Schemas are PostgreSQL schemas; a real ``tap_schema`` schema holds the five TAP_SCHEMA
    tables; positioned tables get a q3c index on ``q3c_ang2ipix(ra, dec)`` and are
    CLUSTERed on it (or on their sort column) and ANALYZEd after a load.

Self-describing DuckDB files
    Every DuckDB file carries its own TAP_SCHEMA rows for its tables in a private schema
    ``pachon_meta`` (``schemas``, ``tables``, ``columns``, ``keys``, ``key_columns`` with
    TAP_SCHEMA's columns, plus ``positions``). The reader builds the combined, queryable
    ``TAP_SCHEMA`` (all five tables and TAP_SCHEMA's own description and keys) in an
    attached in-memory catalog named ``tap_schema`` at load and on every :meth:`refresh`,
    so ``SELECT * FROM TAP_SCHEMA.columns`` is an ordinary query.

Concurrency (why writers never touch the file a reader has open)
    While one process holds a DuckDB file read-write, no other process can open it, and a
    reader's read-only open blocks every writer. So:

    * The reader (the TAP service) opens the catalog with ``read_only=True``: an in-memory
      DuckDB connection that ATTACHes each file ``READ_ONLY``. It owns the files while it
      runs; queries use cursors of that one connection (:meth:`connection`), which are safe
      to use from worker threads.
    * A writer (``pachon catalog ingest``, the DRP, :meth:`create_schema`) never opens the
      served file. It takes an exclusive ``flock`` on ``<file>.lock`` (so two writers of
      the same schema serialise), copies the current file to a temporary name in the same
      folder, writes the new table and its TAP_SCHEMA rows into the copy, checkpoints,
      closes it and atomically ``rename``s it over the old name. Readers that still have
      the old file open keep reading the old inode undisturbed.
    * :meth:`refresh` (the TAP service calls it on reload, or periodically) stats every
      file; a new file is ATTACHed, a replaced one (new inode/size/mtime) is DETACHed and
      re-ATTACHed, a removed one DETACHed, and TAP_SCHEMA is rebuilt. Refresh takes the
      write side of a readers-writer lock, queries the read side, so no query ever sees a
      half-swapped catalog and no restart is needed. When nothing changed, refresh is a
      few ``stat`` calls (~0.1 ms) and takes no lock, so calling it before every request
      is fine; when something changed it waits for the queries already running (new ones
      wait behind it), then swaps in milliseconds.
    * The single-file form works the same way (copy, write, rename, refresh re-attaches the
      file). Its only limitation is that every write copies the whole file, so a large
      multi-schema file is better split into the folder form.

    * The lock file is ``.<file>.lock`` beside the catalog file; temporary files start with
      ``.`` too, so a reader never mistakes them (or a crashed writer's leftovers) for a
      schema.

    PostgreSQL needs none of this: MVCC lets writers and readers run concurrently. Every
    write bumps ``pachon_meta.version``; :meth:`refresh` reads that one row and re-reads
    ``tap_schema`` only when it changed.

API at a glance (the TAP service and the pipelines code against these names)::

    cat = open_catalog(url, read_only=True)          # DuckDBCatalog | PostgresCatalog
    cat.dialect                                      # "duckdb" | "postgresql"
    cat.create_schema("dp1", "dp2")                  # empty Felis tables + TAP_SCHEMA rows
    cat.ingest(path, "mine.stars", ra="ra", dec="dec")    # -> IngestReport
    cat.load_table(arrow_or_astropy, "dp2.Object")   # fills Felis tables, or creates one
    cat.schemas(); cat.resolve("dp2", "object")      # SchemaInfo list / TableInfo | None
    cat.refresh()                                    # pick up new/replaced tables
    with cat.connection() as conn: ...               # DuckDB cursor | pooled psycopg2 conn
    with cat.uploads({"pos": table}) as infos: ...   # TAP_UPLOAD tables for one query
    cat.add_connection_setup(fn)                     # install UDFs the translated SQL calls
    cat.close()

Hidden spatial columns (DuckDB): a positioned table gets ``pachon_hpx`` and ``pachon_x/y/z``
(see :mod:`pachon.core.catalog.model`) and its rows are stored sorted by ``pachon_hpx``;
a table without a position is sorted by its object id column when it has one (so a light
curve by ``objectid`` reads one row group), which the zone maps then prune.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from pachon.core.catalog.felis_schemas import SchemaKind, schema_info
from pachon.core.catalog.identifiers import is_regular_identifier, quote_identifier
from pachon.core.catalog.model import (
    HIDDEN_COLUMNS,
    HPX_COLUMN,
    UNIT_VECTOR_COLUMNS,
    ColumnInfo,
    PositionInfo,
    SchemaInfo,
    TableInfo,
)
from pachon.core.catalog.readers import IngestError, SourceTable, open_source
from pachon.core.catalog.spatial import PositionError, add_spatial_columns, check_positions
from pachon.core.catalog.tap_schema import (
    EXTRA_COLUMNS,
    TAP_SCHEMA_COLUMNS,
    TAP_SCHEMA_NAME,
    extra_row,
    qualified_name,
    rows_for_table,
    schemas_from_rows,
    tap_schema_info,
    tap_schema_rows,
)
from pachon.core.catalog.types import arrow_to_votable, column_sql_type

__all__ = [
    "CatalogDatabase",
    "CatalogError",
    "DuckDBCatalog",
    "IngestReport",
    "PostgresCatalog",
    "default_catalog_url",
    "open_catalog",
]

UPLOAD_SCHEMA = "TAP_UPLOAD"
UPLOAD_DB_SCHEMA = "tap_upload"
META_SCHEMA = "pachon_meta"
RESERVED_SCHEMAS = {
    "main",
    "memory",
    "system",
    "temp",
    "tap_schema",
    "tap_upload",
    META_SCHEMA,
    "information_schema",
    "pg_catalog",
}
DUCKDB_THREADS = 2
_SORT_CANDIDATES = ("objectid", "diaobjectid", "ssobjectid", "sourceid", "id")

Progress = Callable[[int], None]


class CatalogError(ValueError):
    """A catalog operation cannot be done; the message says what to change."""

    user_facing = True  # the CLI prints the message as one line (pachon.cli.main)


@dataclass(frozen=True)
class IngestReport:
    """What one ingest or load did."""

    table: TableInfo
    rows: int
    seconds: float
    source: str | None = None
    fmt: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        return (
            f"{self.table.qualified}: {self.rows:,} rows in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s)"
        )


def _split_table(name: str) -> tuple[str, str]:
    if name.count(".") != 1:
        raise CatalogError(f"table {name!r} must be given as SCHEMA.TABLE, e.g. bench.object")
    schema, table = name.split(".")
    if not schema or not table:
        raise CatalogError(f"table {name!r} must be given as SCHEMA.TABLE, e.g. bench.object")
    if schema.lower() in RESERVED_SCHEMAS:
        raise CatalogError(f"schema name {schema!r} is reserved; choose another (e.g. 'user_{schema}')")
    return schema, table


def _check_schema_name(name: str) -> None:
    if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
        raise CatalogError(
            f"schema name {name!r} must start with a letter and hold only letters, digits and '_'"
        )
    if name.lower() in RESERVED_SCHEMAS:
        raise CatalogError(f"schema name {name!r} is reserved; choose another")
    if not is_regular_identifier(name):
        raise CatalogError(
            f"schema name {name!r} is an ADQL reserved word and would need quotes in every query; "
            f"choose another (e.g. '{name}_cat')"
        )


def _match(items: Iterable[Any], name: str, key: Callable[[Any], str]) -> Any | None:
    """ADQL case rules: an exact match wins, else a unique case-insensitive match."""
    items = list(items)
    exact = [item for item in items if key(item) == name]
    if exact:
        return exact[0] if len(exact) == 1 else None
    lowered = [
        item for item in items if key(item).lower() == name.lower() and not getattr(item, "delimited", False)
    ]
    return lowered[0] if len(lowered) == 1 else None


def columns_from_arrow(
    schema: pa.Schema,
    meta: dict[str, dict[str, str]] | None = None,
    position: PositionInfo | None = None,
    source: str = "input",
) -> list[ColumnInfo]:
    """ColumnInfo for each field of an Arrow schema, with units/UCDs/descriptions from ``meta``."""
    meta = meta or {}
    seen: dict[str, str] = {}
    out = []
    for index, f in enumerate(schema, start=1):
        if f.name in HIDDEN_COLUMNS:
            raise CatalogError(f"{source}: column {f.name!r} is reserved for the spatial index; rename it")
        if f.name.lower() in seen:
            raise CatalogError(
                f"{source}: columns {seen[f.name.lower()]!r} and {f.name!r} differ only in case; "
                "rename one (ADQL names are case-insensitive)"
            )
        seen[f.name.lower()] = f.name
        try:
            datatype, arraysize, xtype = arrow_to_votable(f.type)
        except TypeError as exc:
            raise CatalogError(f"{source}: column {f.name!r}: {exc}") from None
        m = meta.get(f.name, {})
        ucd = m.get("ucd")
        is_pos = position is not None and f.name in (position.ra, position.dec)
        if is_pos and not ucd and position is not None:
            ucd = "pos.eq.ra;meta.main" if f.name == position.ra else "pos.eq.dec;meta.main"
        out.append(
            ColumnInfo(
                name=f.name,
                datatype=datatype,
                arraysize=arraysize,
                xtype=xtype,
                unit=m.get("unit") or ("deg" if is_pos else None),
                ucd=ucd,
                utype=m.get("utype"),
                description=m.get("description"),
                indexed=is_pos,
                principal=True,
                nullable=f.nullable,
                column_index=index,
                delimited=not is_regular_identifier(f.name),
            )
        )
    return out


def _id_column(columns: Iterable[ColumnInfo]) -> str | None:
    """The table's object-id column (objectId, diaObjectId, ..., id), if it has one."""
    names = {c.name.lower(): c.name for c in columns if c.datatype in ("long", "int")}
    for candidate in _SORT_CANDIDATES:
        if candidate in names:
            return names[candidate]
    return None


def _default_sort(columns: list[ColumnInfo], position: PositionInfo | None) -> str | None:
    """Positioned tables are sorted by HEALPix cell; others by their id column (light curves)."""
    return None if position is not None else _id_column(columns)


def _astropy_to_arrow(table: Any) -> tuple[pa.Table, dict[str, dict[str, str]]]:
    """An astropy Table as Arrow (masked values become NULLs) with its units/descriptions/UCDs."""
    import numpy as np

    from pachon.core.catalog.readers import _numpy_to_arrow

    arrays, meta = [], {}
    for name in table.colnames:
        col = table[name]
        values = np.asarray(col)
        mask: np.ndarray | None = np.asarray(np.ma.getmaskarray(col)) if hasattr(col, "mask") else None
        if mask is not None and values.ndim > 1:
            mask = np.asarray(mask.reshape(len(values), -1).all(axis=1))
        arrays.append(_numpy_to_arrow(values, mask if mask is not None and mask.any() else None))
        m: dict[str, str] = {}
        if getattr(col, "unit", None) is not None:
            m["unit"] = col.unit.to_string()
        if getattr(col, "description", None):
            m["description"] = str(col.description)
        for key in ("ucd", "utype"):
            if col.meta.get(key):
                m[key] = str(col.meta[key])
        meta[name] = m
    return pa.Table.from_arrays(arrays, names=list(table.colnames)), meta


def _as_batches(data: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch], dict[str, dict[str, str]]]:
    """Arrow table/batch/reader, astropy Table, pandas DataFrame or an iterable of batches."""
    meta: dict[str, dict[str, str]] = {}
    if type(data).__module__.startswith("astropy.table"):
        data, meta = _astropy_to_arrow(data)
    elif type(data).__module__.startswith("pandas"):
        data = pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches(max_chunksize=262_144)), meta
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data]), meta
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data), meta
    items = list(data)
    if not items:
        raise CatalogError("load_table got no record batches")
    return items[0].schema, iter(items), meta


class CatalogDatabase(ABC):
    """The catalog API shared by both back ends (see the module docstring)."""

    dialect: str

    def __init__(self, url: str, read_only: bool) -> None:
        self.url = url
        self.read_only = read_only
        self._schemas: list[SchemaInfo] = []
        self._uploads: dict[str, TableInfo] = {}

    # Reading -----------------------------------------------------------------------
    def schemas(self) -> list[SchemaInfo]:
        """Every schema (TAP_SCHEMA included) with its tables and columns."""
        return list(self._schemas)

    def _schema_for_write(self, name: str) -> SchemaInfo:
        """The schema a table is written into: the existing one (ADQL case rules) or a new record."""
        existing = next((s for s in self._schemas if s.name.lower() == name.lower()), None)
        return SchemaInfo(
            name=existing.name if existing else name,
            description=existing.description if existing else None,
            utype=existing.utype if existing else None,
            schema_index=existing.schema_index if existing else 100,
        )

    def tables(self) -> list[TableInfo]:
        return [t for s in self._schemas for t in s.tables]

    def resolve(self, schema: str | None, table: str) -> TableInfo | None:
        """Find a table by ADQL rules (exact name first, else unique case-insensitive match).

        ``schema=None`` searches all schemas and answers only when the name is unambiguous.
        ``TAP_UPLOAD`` finds tables registered with :meth:`register_upload`; with concurrent
        queries uploading the same name this is ambiguous (None), so a query should resolve
        its own uploads from the TableInfo that :meth:`uploads` yields.
        """
        if schema is not None and schema.upper() == UPLOAD_SCHEMA:
            return _match(self._uploads.values(), table, lambda t: t.name)
        if schema is None:
            return _match(self.tables(), table, lambda t: t.name)
        found = _match(self._schemas, schema, lambda s: s.name)
        if found is None:
            return None
        return _match(found.tables, table, lambda t: t.name)

    @abstractmethod
    def refresh(self) -> None:
        """Re-read the catalog so new or replaced tables become visible."""

    @abstractmethod
    def connection(self) -> contextlib.AbstractContextManager[Any]:
        """A DB-API connection (DuckDB cursor / pooled psycopg2 connection) for translated SQL."""

    @abstractmethod
    def add_connection_setup(self, setup: Callable[[Any], None]) -> None:
        """Run ``setup(connection)`` to install functions the translated SQL calls.

        DuckDB: called with the shared connection now and whenever it is re-created (UDFs
        must live on that connection, not on a cursor, whose close frees them). PostgreSQL:
        called once with a pooled connection, then committed (``CREATE FUNCTION`` persists
        in the database).
        """

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> CatalogDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Writing -----------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise CatalogError(
                f"catalog {self.url} was opened read-only; open it with read_only=False to write"
            )

    def create_schema(self, kind: SchemaKind, name: str | None = None, replace: bool = False) -> SchemaInfo:
        """Create the empty tables of a Felis schema (``dp1``, ``obscore``, ``ppdb``) and their TAP_SCHEMA rows.

        Re-creating a schema whose tables are still empty is harmless; when one of them holds
        rows, pass ``replace=True`` to empty them (other tables of the schema stay).
        """
        self._check_writable()
        info = schema_info(kind, name)
        _check_schema_name(info.name)
        filled = [
            t.qualified for t in info.tables if (found := self.resolve(info.name, t.name)) and found.row_count
        ]
        if filled and not replace:
            raise CatalogError(
                f"schema {info.name} already holds data in {', '.join(filled)}; pass replace=True to "
                "empty these tables, or give another name (e.g. the next release)"
            )
        index = {"dp1": 10, "obscore": 20, "ppdb": 30}.get(kind, 40)
        info = dataclass_replace(info, schema_index=index)
        self._create_schema(info)
        self.refresh()
        return info

    def ingest(
        self,
        path: str | Path | SourceTable,
        table: str,
        ra: str | None = None,
        dec: str | None = None,
        fmt: str | None = None,
        description: str | None = None,
        replace: bool = False,
        sort_by: str | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Load a Parquet, FITS, VOTable or CSV file as a new table ``schema.table``.

        Types come from the file; units, UCDs and descriptions too where the format carries
        them. With ``ra``/``dec`` the table is positioned (HEALPix + unit vectors on DuckDB,
        q3c on PostgreSQL). ``replace=True`` replaces an existing table of that name.
        ``progress`` is called with the number of rows loaded so far. ``path`` may also be a
        :class:`~pachon.core.catalog.readers.SourceTable` already opened with ``open_source``.
        """
        source = path if isinstance(path, SourceTable) else open_source(path, fmt)
        return self._load(
            source, table, ra, dec, description or source.description, replace, sort_by, progress
        )

    def load_table(
        self,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        table: str,
        ra: str | None = None,
        dec: str | None = None,
        columns_meta: dict[str, dict[str, str]] | None = None,
        description: str | None = None,
        replace: bool = True,
        sort_by: str | None = None,
    ) -> IngestReport:
        """Load Arrow data (what pipelines produce) as table ``schema.table``.

        When the table already exists as an empty Felis table (``create_schema``), the data
        fills the Felis columns it names (the rest stay NULL) and the Felis metadata stays;
        otherwise a table is created from the Arrow types and ``columns_meta``
        (``{column: {"unit":…, "ucd":…, "description":…}}``).
        """
        schema, batches, found_meta = _as_batches(data)
        meta = {**found_meta, **(columns_meta or {})}
        source = SourceTable(Path("<arrow>"), "arrow", schema, batches, None, description, meta)
        return self._load(source, table, ra, dec, description, replace, sort_by, None)

    def _load(
        self,
        source: SourceTable,
        table: str,
        ra: str | None,
        dec: str | None,
        description: str | None,
        replace_existing: bool,
        sort_by: str | None,
        progress: Progress | None,
    ) -> IngestReport:
        self._check_writable()
        schema_name, table_name = _split_table(table)
        _check_schema_name(schema_name)
        start = time.perf_counter()
        names = {f.name.lower(): f.name for f in source.schema}
        felis_table = self.resolve(schema_name, table_name)
        position: PositionInfo | None = None
        if (ra is None) != (dec is None):
            raise CatalogError("give both ra and dec columns (--ra and --dec), or neither")
        if ra is not None and dec is not None:
            for col in (ra, dec):
                if col.lower() not in names:
                    raise IngestError(
                        source.path,
                        f"no column {col!r} for the position; columns are {', '.join(names.values())}",
                    )
            position = PositionInfo(ra=names[ra.lower()], dec=names[dec.lower()])
            for col in (position.ra, position.dec):
                dtype = source.schema.field(col).type
                if not (
                    pa.types.is_floating(dtype) or pa.types.is_integer(dtype) or pa.types.is_decimal(dtype)
                ):
                    raise IngestError(
                        source.path,
                        f"holds {dtype} values; a position column must hold numbers (degrees)",
                        column=col,
                    )
        elif felis_table is not None and felis_table.position is not None and source.fmt == "arrow":
            pos = felis_table.position
            if pos.ra.lower() in names and pos.dec.lower() in names:
                position = PositionInfo(ra=pos.ra, dec=pos.dec)
        fits_existing = (
            felis_table is not None
            and source.fmt == "arrow"
            and felis_table.schema.lower() != TAP_SCHEMA_NAME
            and all(felis_table.column(f.name) is not None for f in source.schema)
        )
        if felis_table is not None and fits_existing and (replace_existing or not felis_table.row_count):
            # A pipeline filling (or re-filling) a Felis table: keep the schema's columns and metadata.
            if position is not None:
                ra_col, dec_col = felis_table.column(position.ra), felis_table.column(position.dec)
                if ra_col is not None and dec_col is not None:
                    position = PositionInfo(ra=ra_col.name, dec=dec_col.name)
            info = replace(felis_table, position=position or felis_table.position, row_count=None)
            source = self._renamed(source, felis_table)
        else:
            if felis_table is not None and not replace_existing:
                unknown = [f.name for f in source.schema if felis_table.column(f.name) is None]
                detail = (
                    f" and has no column(s) {', '.join(map(repr, unknown))}; a pipeline may only fill the "
                    "table's columns, or "
                    if unknown and source.fmt == "arrow"
                    else "; "
                )
                raise CatalogError(
                    f"table {felis_table.qualified} already exists{detail}pass replace=True "
                    "(CLI: --replace) to replace it"
                )
            columns = columns_from_arrow(source.schema, source.column_meta, position, str(source.path))
            info = TableInfo(
                schema=felis_table.schema if felis_table else schema_name,
                name=felis_table.name if felis_table else table_name,
                columns=tuple(columns),
                description=description,
                position=position,
                table_index=felis_table.table_index if felis_table else None,
                delimited=felis_table.delimited if felis_table else not is_regular_identifier(table_name),
            )
        sort_column = sort_by or _default_sort(list(info.columns), position)
        if sort_column is not None and info.column(sort_column) is None:
            raise CatalogError(f"sort column {sort_column!r} is not a column of {info.qualified}")
        if sort_column is not None:
            info = replace(
                info,
                columns=tuple(
                    replace(c, indexed=True) if c.name.lower() == sort_column.lower() else c
                    for c in info.columns
                ),
            )
        rows = self._write_table(info, source, position, sort_column, progress)
        self.refresh()
        final = self.resolve(info.schema, info.name) or replace(info, row_count=rows)
        return IngestReport(final, rows, time.perf_counter() - start, str(source.path), source.fmt)

    @staticmethod
    def _renamed(source: SourceTable, table: TableInfo) -> SourceTable:
        """Give Arrow columns the table's own spelling (``objectid`` → ``objectId``)."""
        names = [table.column(f.name).name for f in source.schema]  # type: ignore[union-attr]
        if names == source.schema.names:
            return source
        schema = pa.schema([pa.field(n, f.type) for n, f in zip(names, source.schema, strict=True)])
        batches = (pa.RecordBatch.from_arrays(b.columns, schema=schema) for b in source.batches)
        return replace(source, schema=schema, batches=batches)

    def _spatial_batches(
        self, source: SourceTable, position: PositionInfo | None, progress: Progress | None, with_hidden: bool
    ) -> Iterator[pa.RecordBatch]:
        row = 1
        for batch in source.batches:
            out = batch
            if position is not None:
                try:
                    if with_hidden:
                        out = add_spatial_columns(batch, position.ra, position.dec, first_row=row)
                    else:
                        check_positions(batch, position.ra, position.dec, first_row=row)
                except PositionError as exc:
                    raise IngestError(
                        source.path,
                        f"expected {exc.expected}, got {exc.value!r}",
                        row=exc.row,
                        column=exc.column,
                    ) from None
            row += batch.num_rows
            if progress is not None:
                progress(row - 1)
            yield out

    # Back-end specific -------------------------------------------------------------
    @abstractmethod
    def _create_schema(self, info: SchemaInfo) -> None: ...

    @abstractmethod
    def _write_table(
        self,
        info: TableInfo,
        source: SourceTable,
        position: PositionInfo | None,
        sort_column: str | None,
        progress: Progress | None,
    ) -> int: ...

    @abstractmethod
    def register_upload(
        self, name: str, table: pa.Table, ra: str | None = None, dec: str | None = None
    ) -> TableInfo:
        """Make ``table`` queryable as ``TAP_UPLOAD.name`` (drop it with :meth:`drop_upload`)."""

    @abstractmethod
    def drop_upload(self, info: TableInfo) -> None: ...

    @contextlib.contextmanager
    def uploads(self, tables: dict[str, pa.Table]) -> Iterator[dict[str, TableInfo]]:
        """Per-query scope for TAP_UPLOAD tables: registered on entry, dropped on exit."""
        done: dict[str, TableInfo] = {}
        try:
            for name, table in tables.items():
                done[name] = self.register_upload(name, table)
            yield done
        finally:
            for info in done.values():
                self.drop_upload(info)

    def _upload_info(self, name: str, table: pa.Table, ra: str | None, dec: str | None) -> TableInfo:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
            raise CatalogError(
                f"upload name {name!r} must be a regular ADQL identifier (letters, digits, '_')"
            )
        position = None
        if ra is None and dec is None:
            position = _guess_position(table.schema)
        elif ra is not None and dec is not None:
            position = PositionInfo(ra=ra, dec=dec)
        columns = columns_from_arrow(table.schema, None, position, f"upload {name}")
        db_name = f"{name.lower()}_{uuid.uuid4().hex[:12]}"
        return TableInfo(
            schema=UPLOAD_SCHEMA,
            name=name,
            columns=tuple(columns),
            position=position,
            db_schema=UPLOAD_DB_SCHEMA,
            db_name=db_name,
            row_count=table.num_rows,
        )


def _guess_position(schema: pa.Schema) -> PositionInfo | None:
    """Upload columns whose UCD (Arrow metadata) or name says ra/dec."""
    ra = dec = None
    for f in schema:
        ucd = (f.metadata or {}).get(b"ucd", b"").decode().lower()
        if ucd.startswith("pos.eq.ra") and ra is None:
            ra = f.name
        if ucd.startswith("pos.eq.dec") and dec is None:
            dec = f.name
    if ra and dec:
        return PositionInfo(ra=ra, dec=dec)
    names = {f.name.lower(): f.name for f in schema if pa.types.is_floating(f.type)}
    for r, d in (("ra", "dec"), ("s_ra", "s_dec"), ("coord_ra", "coord_dec"), ("raj2000", "dej2000")):
        if r in names and d in names:
            return PositionInfo(ra=names[r], dec=names[d])
    return None


# DuckDB ----------------------------------------------------------------------------------


class _RWLock:
    """Many readers or one writer; a waiting writer (refresh) goes before newly arriving readers.

    Writer preference keeps a steady stream of queries from postponing a refresh forever;
    the refresh itself only waits for the queries already running.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._local = threading.local()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Shared access; re-entrant in one thread (a query that registers an upload)."""
        held = getattr(self._local, "depth", 0)
        with self._cond:
            while self._writer or (self._waiting_writers and not held):
                self._cond.wait()
            self._readers += 1
        self._local.depth = held + 1
        try:
            yield
        finally:
            self._local.depth = held
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _q(name: str) -> str:
    return quote_identifier(name)


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


_ARROW_TYPES = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64()}


def _duck_insert(
    conn: Any, target: str, cols: list[tuple[str, str, str]], values: list[tuple[Any, ...]]
) -> None:
    """Insert many rows at once through Arrow (DuckDB's executemany runs one statement per row)."""
    if not values:
        return
    arrays = [
        pa.array([row[i] for row in values], type=_ARROW_TYPES[duck]) for i, (_, duck, _) in enumerate(cols)
    ]
    data = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(cols))])
    name = f"pachon_rows_{uuid.uuid4().hex[:8]}"
    conn.register(name, data)
    try:
        conn.execute(f"INSERT INTO {target} SELECT * FROM {name}")
    finally:
        conn.unregister(name)


class DuckDBCatalog(CatalogDatabase):
    """DuckDB back end: a folder of per-schema files or one multi-schema file (module docstring)."""

    dialect = "duckdb"

    def __init__(self, url: str, path: Path, read_only: bool) -> None:
        super().__init__(url, read_only)
        self.path = path
        self.folder_mode = url.endswith("/") or path.is_dir() or (not path.suffix and not path.exists())
        self._lock = _RWLock()
        self._conn: Any = None
        self._attached: dict[str, tuple[int, int, int]] = {}
        self._views: set[str] = set()
        self._refresh_mutex = threading.Lock()
        self._setups: list[Callable[[Any], None]] = []
        self.refresh()

    # Files ---------------------------------------------------------------------------
    def _file_for(self, schema: str) -> Path:
        if self.folder_mode:
            return self.path / f"{schema}.duckdb"
        return self.path

    def _files(self) -> dict[str, Path]:
        if self.folder_mode:
            if not self.path.is_dir():
                return {}
            return {
                p.stem: p
                for p in sorted(self.path.glob("*.duckdb"))
                if not p.name.startswith(".") and re.match(r"^[A-Za-z][A-Za-z0-9_]*$", p.stem)
            }
        return {"pachon_file": self.path} if self.path.exists() else {}

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _connect(self) -> Any:
        import duckdb

        conn = duckdb.connect(":memory:", config={"threads": DUCKDB_THREADS})
        conn.execute("SET enable_progress_bar = false")
        conn.execute(f"ATTACH ':memory:' AS {TAP_SCHEMA_NAME}")
        conn.execute(f"ATTACH ':memory:' AS {UPLOAD_DB_SCHEMA}")
        for setup in self._setups:
            setup(conn)
        return conn

    def add_connection_setup(self, setup: Callable[[Any], None]) -> None:
        self._setups.append(setup)
        with self._lock.write():
            if self._conn is None:
                self._conn = self._connect()
            else:
                setup(self._conn)

    # Reading -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Attach new files, re-attach replaced ones, detach removed ones; rebuild TAP_SCHEMA."""
        with self._refresh_mutex:
            files = self._files()
            stamps = {alias: self._stamp(p) for alias, p in files.items()}
            if self._conn is not None and stamps == self._attached and self._schemas:
                return
            with self._lock.write():
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                for alias in list(self._attached):
                    if alias not in stamps or stamps[alias] != self._attached[alias]:
                        conn.execute(f"DETACH {_q(alias)}")
                        del self._attached[alias]
                for alias, path in files.items():
                    if alias not in self._attached:
                        conn.execute(f"ATTACH {_sql_literal(str(path))} AS {_q(alias)} (READ_ONLY)")
                        self._attached[alias] = stamps[alias]
                self._rebuild_metadata(conn, files)

    def _read_meta(
        self, conn: Any, alias: str
    ) -> tuple[dict[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
        exists = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
            [alias, META_SCHEMA],
        ).fetchone()[0]
        rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TAP_SCHEMA_COLUMNS}
        if not exists:
            return rows, []
        for name, cols in TAP_SCHEMA_COLUMNS.items():
            select = ", ".join(c for c, _, _ in cols)
            rows[name] = conn.execute(f"SELECT {select} FROM {_q(alias)}.{META_SCHEMA}.{name}").fetchall()
        extra_cols = ", ".join(c for c, _, _ in EXTRA_COLUMNS)
        extras = conn.execute(f"SELECT {extra_cols} FROM {_q(alias)}.{META_SCHEMA}.positions").fetchall()
        return rows, extras

    def _rebuild_metadata(self, conn: Any, files: dict[str, Path]) -> None:
        combined: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TAP_SCHEMA_COLUMNS}
        extras: list[tuple[Any, ...]] = []
        for alias in files:
            rows, ex = self._read_meta(conn, alias)
            for name, values in rows.items():
                combined[name].extend(values)
            extras.extend(ex)
        schemas = schemas_from_rows(combined, extras)
        # Views of the single-file form: <schema>.<table> in the in-memory main database.
        if not self.folder_mode:
            for view in sorted(self._views):
                conn.execute(f"DROP VIEW IF EXISTS {view}")
            self._views.clear()
            if files:
                for schema in schemas:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS memory.{_q(schema.name)}")
                    for table in schema.tables:
                        view = f"memory.{_q(schema.name)}.{_q(table.name)}"
                        conn.execute(
                            f"CREATE VIEW {view} AS SELECT * FROM pachon_file.{_q(schema.name)}.{_q(table.name)}"
                        )
                        self._views.add(view)
        # The combined TAP_SCHEMA, with its own description.
        own = tap_schema_rows()
        for name, cols in TAP_SCHEMA_COLUMNS.items():
            target = f"{TAP_SCHEMA_NAME}.main.{name}"
            conn.execute(f"DROP TABLE IF EXISTS {target}")
            ddl = ", ".join(f"{c} {t}" for c, t, _ in cols)
            conn.execute(f"CREATE TABLE {target} ({ddl})")
            values = [*own[name], *combined[name]]
            _duck_insert(conn, target, cols, values)
        self._schemas = sorted(
            [tap_schema_info(), *schemas], key=lambda s: (s.schema_index is None, s.schema_index or 0, s.name)
        )

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A cursor of the shared read-only connection; safe to use from a worker thread."""
        with self._lock.read():
            cursor = self._conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def close(self) -> None:
        with self._lock.write():
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._attached.clear()

    # Writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _writer(self, schema: str) -> Iterator[tuple[Any, str]]:
        """Copy-on-write: lock, copy the schema's file to a temp name, yield a connection, rename."""
        import duckdb

        target = self._file_for(schema)
        target.parent.mkdir(parents=True, exist_ok=True)
        lock_path = target.with_name(f".{target.name}.lock")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if target.exists():
                    shutil.copyfile(target, tmp)
                conn = duckdb.connect(str(tmp), config={"threads": DUCKDB_THREADS})
                conn.execute("SET enable_progress_bar = false")
                try:
                    db_schema = "main" if self.folder_mode else schema
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(db_schema)}")
                    self._ensure_meta(conn)
                    yield conn, db_schema
                    conn.execute("CHECKPOINT")
                finally:
                    conn.close()
                os.replace(tmp, target)
            finally:
                for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def _ensure_meta(conn: Any) -> None:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
        for name, cols in [*TAP_SCHEMA_COLUMNS.items(), ("positions", EXTRA_COLUMNS)]:
            ddl = ", ".join(f"{c} {t}" for c, t, _ in cols)
            conn.execute(f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.{name} ({ddl})")

    @staticmethod
    def _write_meta(
        conn: Any, schema: SchemaInfo, tables: Iterable[TableInfo], sort: dict[str, str | None]
    ) -> None:
        """Replace the metadata rows of ``tables`` (and the schema row) in a file."""
        conn.execute(f"DELETE FROM {META_SCHEMA}.schemas WHERE schema_name = ?", [schema.name])
        conn.execute(
            f"INSERT INTO {META_SCHEMA}.schemas VALUES (?, ?, ?, ?)",
            [schema.name, schema.utype, schema.description, schema.schema_index],
        )
        for table in tables:
            qualified = qualified_name(table.schema, table.name)
            conn.execute(
                f"DELETE FROM {META_SCHEMA}.key_columns WHERE key_id IN (SELECT key_id FROM {META_SCHEMA}.keys WHERE from_table = ?)",
                [qualified],
            )
            for name, column in (
                ("tables", "table_name"),
                ("columns", "table_name"),
                ("keys", "from_table"),
                ("positions", "table_name"),
            ):
                conn.execute(f"DELETE FROM {META_SCHEMA}.{name} WHERE {column} = ?", [qualified])
            for name, values in rows_for_table(table).items():
                _duck_insert(conn, f"{META_SCHEMA}.{name}", TAP_SCHEMA_COLUMNS[name], values)
            conn.execute(
                f"INSERT INTO {META_SCHEMA}.positions VALUES (?, ?, ?, ?, ?)",
                list(extra_row(table, sort.get(table.name))),
            )

    @staticmethod
    def _table_ddl(table: TableInfo, target: str, hidden: bool) -> str:
        cols = [f"{_q(c.name)} {column_sql_type(c, 'duckdb')}" for c in table.columns]
        if hidden and table.position is not None:
            cols.append(f"{HPX_COLUMN} BIGINT")
            cols.extend(f"{name} DOUBLE" for name in UNIT_VECTOR_COLUMNS)
        return f"CREATE TABLE {target} ({', '.join(cols)})"

    def _create_schema(self, info: SchemaInfo) -> None:
        with self._writer(info.name) as (conn, db_schema):
            for table in info.tables:
                target = f"{_q(db_schema)}.{_q(table.name)}"
                conn.execute(f"DROP TABLE IF EXISTS {target}")
                conn.execute(self._table_ddl(table, target, hidden=True))
            self._write_meta(conn, info, [replace(t, row_count=0) for t in info.tables], {})

    def _write_table(
        self,
        info: TableInfo,
        source: SourceTable,
        position: PositionInfo | None,
        sort_column: str | None,
        progress: Progress | None,
    ) -> int:
        schema = self._schema_for_write(info.schema)
        info = replace(info, schema=schema.name)
        batches = self._spatial_batches(source, position, progress, with_hidden=True)
        first = next(batches, None)
        with self._writer(schema.name) as (conn, db_schema):
            target = f"{_q(db_schema)}.{_q(info.name)}"
            staging = f"{_q(db_schema)}.{_q('pachon_staging_' + uuid.uuid4().hex[:8])}"
            conn.execute(f"DROP TABLE IF EXISTS {target}")
            conn.execute(self._table_ddl(info, target, hidden=True))
            rows = 0
            if first is not None:
                stream_schema = first.schema

                failure: list[BaseException] = []

                def all_batches() -> Iterator[pa.RecordBatch]:
                    try:
                        yield first
                        yield from batches
                    except BaseException as exc:  # surfaced below instead of DuckDB's wrapper
                        failure.append(exc)
                        raise

                reader = pa.RecordBatchReader.from_batches(stream_schema, all_batches())
                conn.register("pachon_input", reader)
                try:
                    conn.execute(f"CREATE TABLE {staging} AS SELECT * FROM pachon_input")
                except Exception:
                    if failure:
                        raise failure[0] from None
                    raise
                conn.unregister("pachon_input")
                order = HPX_COLUMN if position is not None else (_q(sort_column) if sort_column else None)
                names = [_q(f.name) for f in stream_schema]
                select = ", ".join(names)
                order_sql = f" ORDER BY {order}" if order else ""
                conn.execute(f"INSERT INTO {target} ({select}) SELECT {select} FROM {staging}{order_sql}")
                conn.execute(f"DROP TABLE {staging}")
                rows = conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
            final = replace(info, row_count=rows, position=position or info.position)
            self._write_meta(conn, schema, [final], {info.name: sort_column})
        return int(rows)

    def register_upload(
        self, name: str, table: pa.Table, ra: str | None = None, dec: str | None = None
    ) -> TableInfo:
        info = self._upload_info(name, table, ra, dec)
        data = table
        if info.position is not None:
            batches = [
                add_spatial_columns(b, info.position.ra, info.position.dec) for b in table.to_batches()
            ]
            data = pa.Table.from_batches(batches) if batches else table
        with self._lock.read():
            cursor = self._conn.cursor()
            try:
                cursor.register("pachon_upload", data)
                order = f" ORDER BY {HPX_COLUMN}" if info.position is not None else ""
                cursor.execute(
                    f"CREATE TABLE {UPLOAD_DB_SCHEMA}.main.{_q(info.db_name or name)} AS "
                    f"SELECT * FROM pachon_upload{order}"
                )
                cursor.unregister("pachon_upload")
            finally:
                cursor.close()
        self._uploads[info.db_name or name] = info
        return info

    def drop_upload(self, info: TableInfo) -> None:
        self._uploads.pop(info.db_name or info.name, None)
        with self._lock.read():
            cursor = self._conn.cursor()
            try:
                cursor.execute(
                    f"DROP TABLE IF EXISTS {UPLOAD_DB_SCHEMA}.main.{_q(info.db_name or info.name)}"
                )
            finally:
                cursor.close()


# PostgreSQL ------------------------------------------------------------------------------


class PostgresCatalog(CatalogDatabase):
    """PostgreSQL + pgsphere + q3c back end (module docstring)."""

    dialect = "postgresql"

    def __init__(self, url: str, read_only: bool, pool_size: int = 8) -> None:
        super().__init__(url, read_only)
        from psycopg2.pool import ThreadedConnectionPool
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        params = {
            "host": parsed.host,
            "port": parsed.port,
            "user": parsed.username,
            "password": parsed.password,
            "dbname": parsed.database,
        }
        self._dsn = {k: v for k, v in params.items() if v is not None}
        self._pool = ThreadedConnectionPool(1, pool_size, **self._dsn)
        self._version = -1
        self._bootstrap()
        self.refresh()

    @contextlib.contextmanager
    def _raw(self) -> Iterator[Any]:
        conn = self._pool.getconn()
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._pool.putconn(conn)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled psycopg2 connection (rolled back and returned to the pool afterwards)."""
        conn = self._pool.getconn()
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            self._pool.putconn(conn)

    def _bootstrap(self) -> None:
        """Create tap_schema (with its self-description) and pachon_meta when missing."""
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (TAP_SCHEMA_NAME,)
            )
            if cur.fetchone()[0] < len(TAP_SCHEMA_COLUMNS):
                self._create_tap_schema(cur)
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.version (v bigint NOT NULL)")
            cur.execute(
                f"INSERT INTO {META_SCHEMA}.version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM {META_SCHEMA}.version)"
            )

    def _create_tap_schema(self, cur: Any) -> None:
        """The five TAP_SCHEMA tables with TAP_SCHEMA's own description, and pachon_meta."""
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {TAP_SCHEMA_NAME}")
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
        for name, cols in TAP_SCHEMA_COLUMNS.items():
            ddl = ", ".join(
                f"{c} {pg}{' NOT NULL' if c.strip(chr(34)) in _not_null(name) else ''}" for c, _, pg in cols
            )
            cur.execute(f"CREATE TABLE IF NOT EXISTS {TAP_SCHEMA_NAME}.{name} ({ddl})")
        ddl = ", ".join(f"{c} {pg}" for c, _, pg in EXTRA_COLUMNS)
        cur.execute(f"CREATE TABLE IF NOT EXISTS {META_SCHEMA}.positions ({ddl})")
        self._insert_rows(cur, tap_schema_rows())

    @staticmethod
    def _insert_rows(cur: Any, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        from psycopg2.extras import execute_values

        for name, values in rows.items():
            if values:
                execute_values(cur, f"INSERT INTO {TAP_SCHEMA_NAME}.{name} VALUES %s", values)

    def refresh(self) -> None:
        """Re-read tap_schema when a writer bumped ``pachon_meta.version`` (else one tiny query)."""
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT v FROM {META_SCHEMA}.version")
            version = cur.fetchone()[0]
            if version == self._version and self._schemas:
                return
            rows: dict[str, list[tuple[Any, ...]]] = {}
            for name, cols in TAP_SCHEMA_COLUMNS.items():
                cur.execute(f"SELECT {', '.join(c for c, _, _ in cols)} FROM {TAP_SCHEMA_NAME}.{name}")
                rows[name] = cur.fetchall()
            cur.execute(f"SELECT {', '.join(c for c, _, _ in EXTRA_COLUMNS)} FROM {META_SCHEMA}.positions")
            extras = cur.fetchall()
        schemas = schemas_from_rows(rows, extras)
        own = {s.name for s in schemas} & {TAP_SCHEMA_NAME}
        self._schemas = [
            replace(s, tables=tuple(replace(t, db_schema=TAP_SCHEMA_NAME) for t in s.tables))
            if s.name in own
            else s
            for s in schemas
        ]
        self._version = version

    def add_connection_setup(self, setup: Callable[[Any], None]) -> None:
        with self._raw() as conn:
            setup(conn)

    def close(self) -> None:
        self._pool.closeall()

    def _delete_meta(self, cur: Any, table: TableInfo) -> None:
        qualified = qualified_name(table.schema, table.name)
        cur.execute(
            f"DELETE FROM {TAP_SCHEMA_NAME}.key_columns WHERE key_id IN "
            f"(SELECT key_id FROM {TAP_SCHEMA_NAME}.keys WHERE from_table = %s)",
            (qualified,),
        )
        for name, column in (("tables", "table_name"), ("columns", "table_name"), ("keys", "from_table")):
            cur.execute(f"DELETE FROM {TAP_SCHEMA_NAME}.{name} WHERE {column} = %s", (qualified,))
        cur.execute(f"DELETE FROM {META_SCHEMA}.positions WHERE table_name = %s", (qualified,))

    def _write_meta(
        self, cur: Any, schema: SchemaInfo, tables: Iterable[TableInfo], sort: dict[str, str | None]
    ) -> None:
        cur.execute(f"UPDATE {META_SCHEMA}.version SET v = v + 1")
        cur.execute(f"DELETE FROM {TAP_SCHEMA_NAME}.schemas WHERE schema_name = %s", (schema.name,))
        self._insert_rows(
            cur, {"schemas": [(schema.name, schema.utype, schema.description, schema.schema_index)]}
        )
        for table in tables:
            self._delete_meta(cur, table)
            self._insert_rows(cur, rows_for_table(table))
            cur.execute(
                f"INSERT INTO {META_SCHEMA}.positions VALUES (%s, %s, %s, %s, %s)",
                extra_row(table, sort.get(table.name)),
            )

    @staticmethod
    def _table_ddl(table: TableInfo) -> str:
        cols = [f"{_q(c.name)} {column_sql_type(c, 'postgresql')}" for c in table.columns]
        return f"CREATE TABLE {_q(table.schema)}.{_q(table.name)} ({', '.join(cols)})"

    @staticmethod
    def _index(cur: Any, table: TableInfo, sort_column: str | None, cluster: bool) -> None:
        target = f"{_q(table.schema)}.{_q(table.name)}"
        base = re.sub(r"[^a-z0-9_]", "_", f"{table.schema}_{table.name}".lower())[:40]
        index = None
        if table.position is not None:
            index = f"{base}_q3c"
            cur.execute(
                f"CREATE INDEX {_q(index)} ON {target} (q3c_ang2ipix({_q(table.position.ra)}, {_q(table.position.dec)}))"
            )
        for column in dict.fromkeys(c for c in (sort_column, _id_column(table.columns)) if c):
            col_index = f"{base}_{re.sub(r'[^a-z0-9_]', '_', column.lower())}"[:60]
            cur.execute(f"CREATE INDEX {_q(col_index)} ON {target} ({_q(column)})")
            if column == sort_column:
                index = index or col_index
        if cluster and index is not None:
            cur.execute(f"CLUSTER {target} USING {_q(index)}")

    def _create_schema(self, info: SchemaInfo) -> None:
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(info.name)}")
            for table in info.tables:
                cur.execute(f"DROP TABLE IF EXISTS {_q(info.name)}.{_q(table.name)} CASCADE")
                cur.execute(self._table_ddl(table))
                self._index(cur, table, None, cluster=False)
            self._write_meta(cur, info, [replace(t, row_count=0) for t in info.tables], {})

    def _copy(self, cur: Any, target: str, columns: list[str], batch: pa.RecordBatch) -> None:
        import io

        import pyarrow.csv as pcsv

        buffer = io.BytesIO()
        pcsv.write_csv(batch, buffer, write_options=pcsv.WriteOptions(include_header=False))
        buffer.seek(0)
        cols = ", ".join(_q(c) for c in columns)
        cur.copy_expert(f"COPY {target} ({cols}) FROM STDIN WITH (FORMAT csv)", buffer)

    def _write_table(
        self,
        info: TableInfo,
        source: SourceTable,
        position: PositionInfo | None,
        sort_column: str | None,
        progress: Progress | None,
    ) -> int:
        schema = self._schema_for_write(info.schema)
        info = replace(info, schema=schema.name, position=position or info.position)
        target = f"{_q(info.schema)}.{_q(info.name)}"
        rows = 0
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(info.schema)}")
            cur.execute(f"DROP TABLE IF EXISTS {target} CASCADE")
            cur.execute(self._table_ddl(info))
            for batch in self._spatial_batches(source, position, progress, with_hidden=False):
                self._copy(cur, target, batch.schema.names, batch)
                rows += batch.num_rows
            self._index(cur, info, sort_column, cluster=True)
            self._write_meta(cur, schema, [replace(info, row_count=rows)], {info.name: sort_column})
        with self._raw() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"ANALYZE {target}")
            conn.autocommit = False
        return rows

    def register_upload(
        self, name: str, table: pa.Table, ra: str | None = None, dec: str | None = None
    ) -> TableInfo:
        info = self._upload_info(name, table, ra, dec)
        target = f"{UPLOAD_DB_SCHEMA}.{_q(info.db_name or name)}"
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {UPLOAD_DB_SCHEMA}")
            cols = [f"{_q(c.name)} {column_sql_type(c, 'postgresql')}" for c in info.columns]
            cur.execute(f"CREATE UNLOGGED TABLE {target} ({', '.join(cols)})")
            for batch in table.to_batches():
                self._copy(cur, target, batch.schema.names, batch)
            if info.position is not None:
                cur.execute(
                    f"CREATE INDEX ON {target} (q3c_ang2ipix({_q(info.position.ra)}, {_q(info.position.dec)}))"
                )
            cur.execute(f"ANALYZE {target}")
        self._uploads[info.db_name or name] = info
        return info

    def drop_upload(self, info: TableInfo) -> None:
        self._uploads.pop(info.db_name or info.name, None)
        with self._raw() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {UPLOAD_DB_SCHEMA}.{_q(info.db_name or info.name)}")


def _not_null(table: str) -> set[str]:
    from pachon.core.catalog.tap_schema import NOT_NULL

    return NOT_NULL[table]


def default_catalog_url(settings: Any = None) -> str:
    """The installation's catalog: ``Settings.catalog_url``, else the folder ``duckdb:///<repo>/catalog/``.

    Everyone (CLI, TAP service, ``pachon up``, pipelines) should take the default from here,
    so they all open the same catalog.
    """
    if settings is None:
        from pachon.core.settings import get_settings

        settings = get_settings()
    return settings.catalog_url or f"duckdb:///{Path(settings.catalog_dir).resolve()}/"


def open_catalog(url: str | None = None, read_only: bool = True) -> CatalogDatabase:
    """Open the catalog at an SQLAlchemy-style URL (default: the settings' catalog).

    DuckDB paths follow SQLAlchemy's rule (as for ``sqlite:``): ``duckdb:///cat.duckdb`` is
    ``cat.duckdb`` relative to the working folder and ``duckdb:////abs/path`` is the absolute
    path ``/abs/path``. A trailing ``/`` (or an existing folder, or a path without suffix)
    selects the folder form, anything else the single-file form.

    >>> cat = open_catalog("duckdb:////tmp/catalog/", read_only=False)  # doctest: +SKIP
    >>> cat.ingest("object.parquet", "bench.object", ra="ra", dec="dec").summary()  # doctest: +SKIP
    """
    if url is None:
        url = default_catalog_url()
    if url.startswith("duckdb://"):
        raw = url[len("duckdb://") :]
        if ":memory:" in raw:
            raise CatalogError("an in-memory DuckDB catalog cannot be shared; give a file or folder path")
        if not raw.startswith("/") or raw.strip("/.") == "":
            raise CatalogError(
                f"bad DuckDB URL {url!r}; expected duckdb:///path/file.duckdb or duckdb:///path/folder/"
            )
        path = Path(raw[1:]).resolve()  # "/rel" → rel (relative), "//abs" → /abs (absolute)
        return DuckDBCatalog(url, path, read_only)
    if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        url = url.replace("postgresql+psycopg2://", "postgresql://").replace("postgres://", "postgresql://")
        return PostgresCatalog(url, read_only)
    raise CatalogError(
        f"unsupported catalog URL {url!r}; expected duckdb:///path/folder/, duckdb:///path/file.duckdb "
        "or postgresql://user@host:port/db"
    )
