"""TAP_SCHEMA: its five tables, the rows that describe our schemas, and the way back to SchemaInfo.

The rows follow TAP 1.1 §4 as ``felis load-tap-schema`` writes them: ``table_name`` is
``schema.table`` (with quotes around a delimited part), ``column_name`` carries quotes when
delimited, ``"size"`` is the integer of ``arraysize`` ignoring ``*``, and ``indexed``,
``principal``, ``std`` are 0/1 integers. TAP_SCHEMA describes itself (schema ``tap_schema``,
the five tables, their columns and the seven foreign keys between them) from the CSV files
Felis ships in ``felis/config/tap_schema``, so our self-description is Rubin's.

Each catalog also keeps a sixth, private table ``pachon_meta.positions`` (not in TAP_SCHEMA):
which columns hold a table's position, its row count, and the column its rows are sorted by.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib.resources import files
from typing import Any

from pachon.core.catalog.identifiers import tap_name, untap_name
from pachon.core.catalog.model import ColumnInfo, ForeignKeyInfo, PositionInfo, SchemaInfo, TableInfo
from pachon.core.catalog.types import size_of

__all__ = [
    "EXTRA_COLUMNS",
    "TAP_SCHEMA_COLUMNS",
    "TAP_SCHEMA_NAME",
    "rows_for_schema",
    "rows_for_table",
    "schemas_from_rows",
    "tap_schema_info",
    "tap_schema_rows",
]

TAP_SCHEMA_NAME = "tap_schema"

# (column, duckdb type, postgresql type) per TAP_SCHEMA table, in the standard order.
TAP_SCHEMA_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    "schemas": [
        ("schema_name", "VARCHAR", "varchar(64)"),
        ("utype", "VARCHAR", "varchar(512)"),
        ("description", "VARCHAR", "varchar(512)"),
        ("schema_index", "INTEGER", "integer"),
    ],
    "tables": [
        ("schema_name", "VARCHAR", "varchar(64)"),
        ("table_name", "VARCHAR", "varchar(128)"),
        ("table_type", "VARCHAR", "varchar(8)"),
        ("utype", "VARCHAR", "varchar(512)"),
        ("description", "VARCHAR", "varchar(512)"),
        ("table_index", "INTEGER", "integer"),
    ],
    "columns": [
        ("table_name", "VARCHAR", "varchar(128)"),
        ("column_name", "VARCHAR", "varchar(64)"),
        ("datatype", "VARCHAR", "varchar(64)"),
        ("arraysize", "VARCHAR", "varchar(16)"),
        ("xtype", "VARCHAR", "varchar(64)"),
        ('"size"', "INTEGER", "integer"),
        ("description", "VARCHAR", "varchar(512)"),
        ("utype", "VARCHAR", "varchar(512)"),
        ("unit", "VARCHAR", "varchar(64)"),
        ("ucd", "VARCHAR", "varchar(64)"),
        ("indexed", "INTEGER", "integer"),
        ("principal", "INTEGER", "integer"),
        ("std", "INTEGER", "integer"),
        ("column_index", "INTEGER", "integer"),
    ],
    "keys": [
        ("key_id", "VARCHAR", "varchar(64)"),
        ("from_table", "VARCHAR", "varchar(128)"),
        ("target_table", "VARCHAR", "varchar(128)"),
        ("description", "VARCHAR", "varchar(512)"),
        ("utype", "VARCHAR", "varchar(512)"),
    ],
    "key_columns": [
        ("key_id", "VARCHAR", "varchar(64)"),
        ("from_column", "VARCHAR", "varchar(64)"),
        ("target_column", "VARCHAR", "varchar(64)"),
    ],
}
NOT_NULL = {
    "schemas": {"schema_name"},
    "tables": {"schema_name", "table_name", "table_type"},
    "columns": {"table_name", "column_name", "datatype", "indexed", "principal", "std"},
    "keys": {"key_id", "from_table", "target_table"},
    "key_columns": {"key_id", "from_column", "target_column"},
}
# pachon_meta.positions: what TAP_SCHEMA cannot say but the translator and `catalog list` need.
EXTRA_COLUMNS: list[tuple[str, str, str]] = [
    ("table_name", "VARCHAR", "varchar(128)"),
    ("ra_column", "VARCHAR", "varchar(64)"),
    ("dec_column", "VARCHAR", "varchar(64)"),
    ("row_count", "BIGINT", "bigint"),
    ("sort_column", "VARCHAR", "varchar(64)"),
]


def qualified_name(schema: str, table: str) -> str:
    """``table_name`` as TAP_SCHEMA holds it: ``schema.table`` with quotes where needed."""
    return f"{tap_name(schema)}.{tap_name(table)}"


def rows_for_table(table: TableInfo) -> dict[str, list[tuple[Any, ...]]]:
    """TAP_SCHEMA rows (tables, columns, keys, key_columns) and the private extra row of one table."""
    qualified = qualified_name(table.schema, table.name)
    rows: dict[str, list[tuple[Any, ...]]] = {"tables": [], "columns": [], "keys": [], "key_columns": []}
    rows["tables"].append(
        (table.schema, qualified, table.table_type, table.utype, table.description, table.table_index)
    )
    for col in table.columns:
        rows["columns"].append(
            (
                qualified,
                tap_name(col.name) if col.delimited else col.name,
                col.datatype,
                col.arraysize,
                col.xtype,
                size_of(col.arraysize),
                col.description,
                col.utype,
                col.unit,
                col.ucd,
                int(col.indexed),
                int(col.principal),
                int(col.std),
                col.column_index,
            )
        )
    for key in table.foreign_keys:
        rows["keys"].append((key.key_id, key.from_table, key.target_table, key.description, key.utype))
        for src, dst in zip(key.from_columns, key.target_columns, strict=True):
            rows["key_columns"].append((key.key_id, src, dst))
    return rows


def extra_row(table: TableInfo, sort_column: str | None = None) -> tuple[Any, ...]:
    position = table.position
    return (
        qualified_name(table.schema, table.name),
        position.ra if position else None,
        position.dec if position else None,
        table.row_count,
        sort_column,
    )


def rows_for_schema(schema: SchemaInfo) -> dict[str, list[tuple[Any, ...]]]:
    """All TAP_SCHEMA rows of a schema and its tables."""
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TAP_SCHEMA_COLUMNS}
    rows["schemas"].append((schema.name, schema.utype, schema.description, schema.schema_index))
    for table in schema.tables:
        for key, values in rows_for_table(table).items():
            rows[key].extend(values)
    return rows


@lru_cache(maxsize=1)
def tap_schema_rows() -> dict[str, list[tuple[Any, ...]]]:
    """TAP_SCHEMA's self-description, from Felis' ``config/tap_schema/*.csv``."""
    base = files("felis") / "config" / "tap_schema"
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table, columns in TAP_SCHEMA_COLUMNS.items():
        reader = csv.DictReader(io.StringIO((base / f"{table}.csv").read_text(encoding="utf-8")))
        out = []
        for record in reader:
            values: list[Any] = []
            for name, duck_type, _ in columns:
                raw = record.get(name.strip('"'), record.get(name))
                if raw is None or raw == "\\N":
                    values.append(None)
                elif duck_type == "INTEGER":
                    values.append(int(raw))
                else:
                    values.append(raw)
            out.append(tuple(values))
        rows[table] = out
    # Felis numbers xtype and datatype both 7; give xtype its own place (14).
    rows["columns"] = [
        (*r[:13], 14 if r[0] == "tap_schema.columns" and r[1] == "xtype" else r[13]) for r in rows["columns"]
    ]
    return rows


def schemas_from_rows(
    rows: Mapping[str, Sequence[Sequence[Any]]],
    extras: Iterable[Sequence[Any]] = (),
    *,
    db_schema: dict[str, str | None] | None = None,
) -> list[SchemaInfo]:
    """Rebuild SchemaInfo/TableInfo/ColumnInfo from TAP_SCHEMA rows (and the private extras)."""
    extra = {r[0]: r for r in extras}
    columns: dict[str, list[ColumnInfo]] = {}
    for r in rows.get("columns", []):
        name, delimited = untap_name(r[1])
        columns.setdefault(r[0], []).append(
            ColumnInfo(
                name=name,
                datatype=r[2],
                arraysize=r[3],
                xtype=r[4],
                description=r[6],
                utype=r[7],
                unit=r[8],
                ucd=r[9],
                indexed=bool(r[10]),
                principal=bool(r[11]),
                std=bool(r[12]),
                column_index=r[13],
                delimited=delimited,
            )
        )
    key_cols: dict[str, list[tuple[str, str]]] = {}
    for r in rows.get("key_columns", []):
        key_cols.setdefault(r[0], []).append((r[1], r[2]))
    keys: dict[str, list[ForeignKeyInfo]] = {}
    for r in rows.get("keys", []):
        pairs = key_cols.get(r[0], [])
        keys.setdefault(r[1], []).append(
            ForeignKeyInfo(
                key_id=r[0],
                from_table=r[1],
                target_table=r[2],
                from_columns=tuple(p[0] for p in pairs),
                target_columns=tuple(p[1] for p in pairs),
                description=r[3],
                utype=r[4],
            )
        )
    tables: dict[str, list[TableInfo]] = {}
    for r in rows.get("tables", []):
        schema_name, qualified = r[0], r[1]
        table_part = qualified[len(tap_name(schema_name)) + 1 :] if "." in qualified else qualified
        table_name, table_delimited = untap_name(table_part)
        cols = sorted(columns.get(qualified, []), key=lambda c: (c.column_index is None, c.column_index or 0))
        ex = extra.get(qualified)
        position = PositionInfo(ra=ex[1], dec=ex[2]) if ex is not None and ex[1] and ex[2] else None
        tables.setdefault(schema_name, []).append(
            TableInfo(
                schema=schema_name,
                name=table_name,
                columns=tuple(cols),
                description=r[4],
                table_type=r[2],
                utype=r[3],
                table_index=r[5],
                position=position,
                foreign_keys=tuple(keys.get(qualified, [])),
                db_schema=(db_schema or {}).get(schema_name),
                row_count=ex[3] if ex is not None else None,
                delimited=table_delimited,
            )
        )
    out = []
    for r in rows.get("schemas", []):
        members = sorted(
            tables.get(r[0], []), key=lambda t: (t.table_index is None, t.table_index or 0, t.name)
        )
        out.append(
            SchemaInfo(name=r[0], utype=r[1], description=r[2], schema_index=r[3], tables=tuple(members))
        )
    return sorted(out, key=lambda s: (s.schema_index is None, s.schema_index or 0, s.name))


def tap_schema_info() -> SchemaInfo:
    """TAP_SCHEMA described as a SchemaInfo (the database tables live in schema ``tap_schema``)."""
    (info,) = schemas_from_rows(tap_schema_rows(), db_schema={TAP_SCHEMA_NAME: TAP_SCHEMA_NAME})
    return info
