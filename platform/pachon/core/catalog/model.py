"""Plain descriptions of catalog schemas, tables and columns, shared by the catalog layer,
the ADQL translator and the TAP service.

These are the TAP_SCHEMA view of a catalog (VOTable vocabulary for types), plus what the
translator needs to rewrite geometry into index-using SQL: which columns hold a table's
position and which hidden columns index it.

Spatial indexing contract (both back ends, written by ingest, read by the translator):

* DuckDB: a table with a position gets hidden columns ``pachon_hpx`` (BIGINT, the nested
  HEALPix index of (ra, dec) at depth :data:`HPX_DEPTH`) and ``pachon_x``, ``pachon_y``,
  ``pachon_z`` (DOUBLE, the unit vector). Rows are stored sorted by ``pachon_hpx`` so
  DuckDB's zone maps prune row groups for a range predicate on it; the exact test is a
  dot product against ``cos(radius)``.
* PostgreSQL: a q3c index on ``q3c_ang2ipix(ra, dec)`` (no extra columns); geometry other
  than points-in-circles uses pgsphere.

Hidden columns never appear in TAP_SCHEMA, ``SELECT *`` or VOSI tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "HIDDEN_COLUMNS",
    "HPX_COLUMN",
    "HPX_DEPTH",
    "UNIT_VECTOR_COLUMNS",
    "ColumnInfo",
    "ForeignKeyInfo",
    "PositionInfo",
    "SchemaInfo",
    "TableInfo",
]

HPX_DEPTH = 16
"""Depth of the stored HEALPix index (≈3.2″ cells); coarser ranges are shifted to it."""
HPX_COLUMN = "pachon_hpx"
UNIT_VECTOR_COLUMNS = ("pachon_x", "pachon_y", "pachon_z")
HIDDEN_COLUMNS = frozenset((HPX_COLUMN, *UNIT_VECTOR_COLUMNS))


@dataclass(frozen=True)
class ColumnInfo:
    """One column as TAP_SCHEMA.columns describes it.

    ``datatype``/``arraysize``/``xtype`` use the VOTable vocabulary (``char`` with
    ``arraysize='64*'`` for VARCHAR(64); ``double`` with ``xtype='point'`` and
    ``arraysize='2'`` for a DALI point). ``name`` is the column name as used in ADQL
    (for a delimited identifier, without the quotes; ``delimited`` says whether it needs
    them). ``db_name`` is the name in the database if it differs.
    """

    name: str
    datatype: str
    arraysize: str | None = None
    xtype: str | None = None
    unit: str | None = None
    ucd: str | None = None
    utype: str | None = None
    description: str | None = None
    indexed: bool = False
    principal: bool = False
    std: bool = False
    nullable: bool = True
    column_index: int | None = None
    delimited: bool = False
    db_name: str | None = None

    @property
    def sql_name(self) -> str:
        """The column's name in the database."""
        return self.db_name or self.name


@dataclass(frozen=True)
class PositionInfo:
    """Which columns hold a table's ICRS position (degrees) and how it is indexed."""

    ra: str
    dec: str
    hpx_column: str | None = HPX_COLUMN
    unit_vector: tuple[str, str, str] | None = UNIT_VECTOR_COLUMNS


@dataclass(frozen=True)
class ForeignKeyInfo:
    """A TAP_SCHEMA.keys row with its key_columns."""

    key_id: str
    from_table: str
    target_table: str
    from_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    description: str | None = None
    utype: str | None = None


@dataclass(frozen=True)
class TableInfo:
    """One table as TAP_SCHEMA.tables describes it, with its columns in order.

    ``schema`` and ``name`` are ADQL names; ``qualified`` is what TAP_SCHEMA.tables
    holds in ``table_name`` (``schema.table``). ``db_schema``/``db_name`` give the
    database location when they differ (e.g. a DuckDB catalog attached under another
    alias, or an upload's temporary table).
    """

    schema: str
    name: str
    columns: tuple[ColumnInfo, ...]
    description: str | None = None
    table_type: str = "table"
    utype: str | None = None
    table_index: int | None = None
    position: PositionInfo | None = None
    foreign_keys: tuple[ForeignKeyInfo, ...] = ()
    db_schema: str | None = None
    db_name: str | None = None
    row_count: int | None = None
    delimited: bool = False
    """True when ``name`` is not a regular ADQL identifier (written ``"name"``, matched exactly)."""

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> ColumnInfo | None:
        """Find a column by ADQL rules: case-insensitive unless the caller passes exact case."""
        for col in self.columns:
            if col.name == name:
                return col
        lowered = name.lower()
        for col in self.columns:
            if col.name.lower() == lowered and not col.delimited:
                return col
        return None


@dataclass(frozen=True)
class SchemaInfo:
    """One schema as TAP_SCHEMA.schemas describes it."""

    name: str
    description: str | None = None
    utype: str | None = None
    schema_index: int | None = None
    tables: tuple[TableInfo, ...] = field(default_factory=tuple)
