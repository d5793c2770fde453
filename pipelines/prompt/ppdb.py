"""Prompt products in the catalog: the APDB's DiaObject, DiaSource and DiaForcedSource as schema ``ppdb``.

Rubin serves its prompt products through TAP from the Prompt Products Database (PPDB), a copy of
the APDB that lags it. Ours is schema ``ppdb`` of the installation's catalog (the Felis ``ppdb``
schema of ``lsst-sdm-schemas``, with its units, UCDs and descriptions in TAP_SCHEMA), refreshed
after every processed visit by :func:`publish_ppdb`.

How rows flow
    :func:`publish_ppdb` reads the three tables from the APDB (``REPO/apdb``, SQLite or
    PostgreSQL: any SQLAlchemy URL the APDB config names) and replaces the catalog's tables with
    them through the catalog layer's ``load_table`` (DuckDB: a copy-on-write of ``ppdb.duckdb``
    renamed over the old file; PostgreSQL: one transaction per table). The catalog therefore
    always equals the APDB at publication time: re-running a visit (the APDB skips a visit it
    already holds, IDs are deterministic) republishes the same rows and never duplicates one,
    and a publication interrupted by a crash leaves the previous complete tables in place.

    Why a snapshot and not an incremental upsert: in the embedded default every catalog write
    copies the schema's DuckDB file anyway (a running TAP service keeps reading the old inode),
    so a write costs O(size of ppdb) whatever it changes, and reading the APDB is cheaper than
    that copy (measured on ``tiny``: see :class:`PpdbReport`). DiaObject rows also change in
    place (their summary columns are recomputed by each visit that touches them), which an
    append-only path would have to handle as an upsert. The snapshot stays correct if a
    publication is skipped (a crash between the APDB write and the publication is repaired by
    the next one).

DiaObject versions
    The APDB keeps every version of a DiaObject (``validityStartMjdTai``/``validityEndMjdTai``);
    the PPDB table serves the current one (``validityEndMjdTai IS NULL``), one row per
    ``diaObjectId``, equal to the ``diaObject`` record of the object's latest alert.

A running TAP service sees the new tables without a restart, exactly as it sees a new data
release (``pachon.pipelines.drp.load``): its periodic catalog refresh (every 30 s) re-attaches
the replaced file, or at once after ``POST /tap/admin/reload``.

Example::

    from pachon.pipelines.prompt.ppdb import publish_ppdb

    report = publish_ppdb("demo/repo")   # after `pachon prompt run`, which calls it per visit
    print(report)                        # ppdb: 265 DiaObject, 304 DiaSource, 2735 DiaForcedSource ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from pachon.core.catalog import TableInfo, open_catalog
from pachon.core.catalog.types import votable_to_arrow

__all__ = ["PPDB_SCHEMA", "PPDB_TABLES", "PpdbReport", "apdb_snapshot", "publish_ppdb"]

PPDB_SCHEMA = "ppdb"
"""The catalog schema (and TAP schema) of the prompt products."""

PPDB_TABLES = ("DiaObject", "DiaSource", "DiaForcedSource")
"""The APDB tables published, in the order they are loaded."""


@dataclass
class PpdbReport:
    """What one :func:`publish_ppdb` did: rows per table, where, how long (read and write)."""

    catalog_url: str
    rows: dict[str, int] = field(default_factory=dict)
    read_seconds: float = 0.0
    write_seconds: float = 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {t}" for t, n in self.rows.items())
        return (
            f"ppdb: {counts} published to {self.catalog_url} "
            f"(APDB read {self.read_seconds:.2f} s, catalog write {self.write_seconds:.2f} s)"
        )


def _apdb_engine_and_names(repo_path: str | Path) -> tuple[Any, dict[str, str]]:
    """An SQLAlchemy engine on the repo's APDB and the quoted SQL names of its three tables."""
    import sqlalchemy
    from lsst.dax.apdb.sql import ApdbSqlConfig

    cfg_path = Path(repo_path) / "apdb" / "apdb-config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(
            f"{repo_path}: no APDB ({cfg_path} is missing); run `pachon prompt run --repo {repo_path}` first"
        )
    config = ApdbSqlConfig.model_validate_json(cfg_path.read_text())
    engine = sqlalchemy.create_engine(config.db_url)
    preparer = engine.dialect.identifier_preparer
    schema = f"{preparer.quote(config.namespace)}." if config.namespace else ""
    names = {t: f"{schema}{preparer.quote(f'{config.prefix}{t}')}" for t in PPDB_TABLES}
    return engine, names


def apdb_snapshot(repo_path: str | Path) -> dict[str, pd.DataFrame]:
    """The APDB's current DiaObjects, all DiaSources and all DiaForcedSources, as DataFrames.

    Read in one transaction, so the three tables are mutually consistent even while prompt
    processing stores another visit.
    """
    import sqlalchemy

    engine, names = _apdb_engine_and_names(repo_path)
    queries = {
        "DiaObject": f'SELECT * FROM {names["DiaObject"]} WHERE "validityEndMjdTai" IS NULL',
        "DiaSource": f"SELECT * FROM {names['DiaSource']}",
        "DiaForcedSource": f"SELECT * FROM {names['DiaForcedSource']}",
    }
    try:
        with engine.connect() as conn, conn.begin():
            return {t: pd.read_sql_query(sqlalchemy.text(q), conn) for t, q in queries.items()}
    finally:
        engine.dispose()


def _to_arrow(frame: pd.DataFrame, table: TableInfo) -> pa.Table:
    """The frame's Felis columns with the Felis types (APDB-only columns such as ``pixelId`` dropped).

    SQLite returns booleans as integers and NULLs as NaN or None; the catalog wants the
    schema's types with real NULLs (NaN floats become NULL: "not measured", as in DP1).
    """
    arrays: dict[str, pa.Array] = {}
    for column in table.columns:
        if column.name not in frame.columns:
            continue
        values = frame[column.name]
        target = pa.timestamp("us") if column.xtype == "timestamp" else votable_to_arrow(column.datatype)
        if target is None:
            raise ValueError(
                f"ppdb.{table.name}.{column.name}: VOTable type {column.datatype!r} has no Arrow mapping"
            )
        if pa.types.is_boolean(target):
            mask = values.isna().to_numpy()
            data = np.where(mask, False, values.fillna(0).to_numpy()).astype(bool)
            arrays[column.name] = pa.array(data, pa.bool_(), mask=mask)
        elif pa.types.is_integer(target):
            mask = values.isna().to_numpy()
            data = values.fillna(0).to_numpy().astype(target.to_pandas_dtype())
            arrays[column.name] = pa.array(data, target, mask=mask)
        elif pa.types.is_floating(target):
            data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            arrays[column.name] = pa.array(data, from_pandas=True).cast(target)
        else:
            arrays[column.name] = pa.array(values.astype(object).where(values.notna(), None), target)
    return pa.table(arrays)


def publish_ppdb(repo_path: str | Path, *, catalog_url: str | None = None, create: bool = True) -> PpdbReport:
    """Replace the catalog's ``ppdb`` DiaObject/DiaSource/DiaForcedSource with the APDB's rows.

    Parameters
    ----------
    repo_path
        The data repository whose APDB (``REPO/apdb``) is read.
    catalog_url
        The catalog written; default as a data release's (settings ``catalog_url``, else
        ``duckdb:///REPO/catalog/``), so the TAP service serving releases serves ``ppdb`` too.
    create
        Create the (empty) Felis ``ppdb`` schema when the catalog does not have it yet.

    Returns
    -------
    PpdbReport
        Rows per table and timings.
    """
    from pachon.pipelines.drp.load import catalog_url_for

    url = catalog_url_for(repo_path, catalog_url)
    report = PpdbReport(catalog_url=url)
    t0 = time.perf_counter()
    try:
        frames = apdb_snapshot(repo_path)
    except FileNotFoundError:  # nothing associated yet (no visit got that far): empty tables
        frames = {name: pd.DataFrame() for name in PPDB_TABLES}
    report.read_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    catalog = open_catalog(url, read_only=False)
    try:
        if any(catalog.resolve(PPDB_SCHEMA, t) is None for t in PPDB_TABLES):
            if not create:
                raise FileNotFoundError(f"catalog {url} has no schema {PPDB_SCHEMA}")
            catalog.create_schema("ppdb", PPDB_SCHEMA)
        for name in PPDB_TABLES:
            info = catalog.resolve(PPDB_SCHEMA, name)
            assert info is not None
            data = _to_arrow(frames[name], info)
            catalog.load_table(data, f"{PPDB_SCHEMA}.{name}", replace=True)
            report.rows[name] = data.num_rows
    finally:
        catalog.close()
    report.write_seconds = time.perf_counter() - t0
    return report
