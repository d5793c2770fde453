"""Type mapping between Arrow (what ingest reads), VOTable (what TAP_SCHEMA publishes) and SQL.

One table of rules so an ingested column and a Felis column of the same meaning get the
same database type and the same TAP_SCHEMA ``datatype``/``arraysize``/``xtype``:

=================  ======================  ==================  ======================
Arrow              VOTable (arraysize)     DuckDB              PostgreSQL
=================  ======================  ==================  ======================
bool               boolean                 BOOLEAN             boolean
uint8              unsignedByte            SMALLINT            smallint
int8, int16        short                   SMALLINT            smallint
int32, uint16      int                     INTEGER             integer
int64, uint32/64   long                    BIGINT              bigint
float16/32         float                   REAL                real
float64            double                  DOUBLE              double precision
string             char (``*``)            VARCHAR             text
timestamp, date    char (``*``), timestamp TIMESTAMP           timestamp
binary             unsignedByte (``*``)    BLOB                bytea
list<T>[n]         T (``n`` or ``*``)      T[]                 T[]
=================  ======================  ==================  ======================
"""

from __future__ import annotations

import pyarrow as pa

from pachon.core.catalog.model import ColumnInfo

__all__ = ["arrow_to_votable", "column_sql_type", "size_of", "votable_to_arrow"]

_SCALAR_SQL = {
    "boolean": ("BOOLEAN", "boolean"),
    "unsignedByte": ("SMALLINT", "smallint"),
    "short": ("SMALLINT", "smallint"),
    "int": ("INTEGER", "integer"),
    "long": ("BIGINT", "bigint"),
    "float": ("REAL", "real"),
    "double": ("DOUBLE", "double precision"),
    "char": ("VARCHAR", "text"),
    "unicodeChar": ("VARCHAR", "text"),
}

_SCALAR_ARROW = {
    "boolean": pa.bool_(),
    "unsignedByte": pa.uint8(),
    "short": pa.int16(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "char": pa.string(),
    "unicodeChar": pa.string(),
}


def votable_to_arrow(datatype: str) -> pa.DataType | None:
    """The Arrow type of one value of a VOTable ``datatype`` (``char`` → string); None when it has none."""
    return _SCALAR_ARROW.get(datatype)


def arrow_to_votable(dtype: pa.DataType) -> tuple[str, str | None, str | None]:
    """``(datatype, arraysize, xtype)`` for an Arrow type; raise TypeError when unsupported."""
    if pa.types.is_boolean(dtype):
        return "boolean", None, None
    if pa.types.is_uint8(dtype):
        return "unsignedByte", None, None
    if pa.types.is_int8(dtype) or pa.types.is_int16(dtype):
        return "short", None, None
    if pa.types.is_int32(dtype) or pa.types.is_uint16(dtype):
        return "int", None, None
    if pa.types.is_int64(dtype) or pa.types.is_uint32(dtype) or pa.types.is_uint64(dtype):
        return "long", None, None
    if pa.types.is_float16(dtype) or pa.types.is_float32(dtype):
        return "float", None, None
    if pa.types.is_float64(dtype):
        return "double", None, None
    if pa.types.is_decimal(dtype):
        return "double", None, None
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "char", "*", None
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return "char", "*", "timestamp"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "unsignedByte", "*", None
    if pa.types.is_fixed_size_binary(dtype):
        return "unsignedByte", str(dtype.byte_width), None
    if pa.types.is_fixed_size_list(dtype):
        inner, _, _ = arrow_to_votable(dtype.value_type)
        return inner, str(dtype.list_size), None
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        inner, _, _ = arrow_to_votable(dtype.value_type)
        return inner, "*", None
    if pa.types.is_dictionary(dtype):
        return arrow_to_votable(dtype.value_type)
    raise TypeError(f"unsupported column type {dtype}")


def column_sql_type(column: ColumnInfo, dialect: str) -> str:
    """The SQL type of a column for ``dialect`` (``duckdb`` or ``postgresql``)."""
    index = 0 if dialect == "duckdb" else 1
    if column.xtype == "timestamp":
        return "TIMESTAMP" if index == 0 else "timestamp"
    if column.datatype in ("char", "unicodeChar"):
        return _SCALAR_SQL["char"][index]
    if column.datatype == "unsignedByte" and column.arraysize:
        return "BLOB" if index == 0 else "bytea"
    try:
        scalar = _SCALAR_SQL[column.datatype][index]
    except KeyError:
        raise ValueError(
            f"column {column.name!r}: unknown VOTable datatype {column.datatype!r} "
            f"(expected one of {sorted(_SCALAR_SQL)})"
        ) from None
    if column.arraysize and column.arraysize != "1":
        return f"{scalar}[]"
    return scalar


def size_of(arraysize: str | None) -> int | None:
    """TAP_SCHEMA's deprecated ``"size"``: the integer of arraysize ignoring ``*``, else NULL."""
    if not arraysize:
        return None
    text = arraysize.rstrip("*")
    if text.isdigit() and "x" not in arraysize:
        return int(text)
    return None
