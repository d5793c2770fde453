"""Rows from a DB-API cursor (the PostgreSQL path) to Arrow record batches.

DuckDB hands over Arrow batches directly; psycopg returns Python tuples. Converting them
column-wise into Arrow arrays of the declared type lets one set of writers serve both back
ends. Values arrive as Python objects: ``Decimal`` for NUMERIC, ``datetime`` for
timestamps, lists or tuples for arrays; each is converted to the declared type, with a
slower per-value fallback only when Arrow's direct conversion refuses the batch.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from pachon.core.catalog.model import ColumnInfo

from .types import ColumnSpec, column_specs, unique_names

__all__ = ["cursor_batches", "rows_to_batches"]


def _arrow_type(spec: ColumnSpec, sample: Any) -> pa.DataType:
    if spec.kind == "str" and spec.timestamp:
        if isinstance(sample, dt.datetime):
            return pa.timestamp("us", tz="UTC" if sample.tzinfo is not None else None)
        if isinstance(sample, dt.date):
            return pa.date32()
    return spec.arrow_type


def _convert(values: list[Any], spec: ColumnSpec, arrow_type: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        pass
    if spec.kind == "num":
        if pa.types.is_floating(arrow_type):
            return pa.array([None if v is None else float(v) for v in values], type=arrow_type)
        return pa.array([None if v is None else int(v) for v in values], type=arrow_type)
    if spec.kind == "array":
        cast = float if pa.types.is_floating(arrow_type.value_type) else int
        return pa.array(
            [None if v is None else [None if x is None else cast(x) for x in v] for v in values],
            type=arrow_type,
        )
    if spec.kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], type=arrow_type)
    return pa.array([None if v is None else _text(v) for v in values], type=pa.string())


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="auto").replace("+00:00", "")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def rows_to_batches(
    rows: Iterable[Sequence[Any]], columns: Sequence[ColumnInfo], batch_size: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Group ``rows`` (tuples in column order) into record batches of ``batch_size`` rows.

    Each column gets the Arrow type of its declared VOTable type (timestamps stay Arrow
    timestamps when the driver returns ``datetime``). For a cursor with ``fetchmany``::

        rows = itertools.chain.from_iterable(iter(lambda: cursor.fetchmany(10_000), []))
        for batch in rows_to_batches(rows, columns): ...
    """
    specs = column_specs(columns)
    names = unique_names([c.name for c in columns])
    width = len(specs)

    def build(chunk: list[Sequence[Any]]) -> pa.RecordBatch:
        # Transposing 65k tuples allocates only acyclic containers, yet it triggers full
        # collections that walk every live object: without the collector this is ~10x faster.
        enabled = gc.isenabled()
        gc.disable()
        try:
            arrays = []
            for spec, column in zip(specs, zip(*chunk, strict=True), strict=True):
                values = list(column)
                sample = next((v for v in values if v is not None), None)
                arrays.append(_convert(values, spec, _arrow_type(spec, sample)))
        finally:
            if enabled:
                gc.enable()
        return pa.RecordBatch.from_arrays(arrays, names=names)

    iterator = iter(rows)
    while True:
        chunk = list(itertools.islice(iterator, batch_size))
        if not chunk:
            return
        try:
            yield build(chunk)
        except ValueError as exc:
            if "zip()" not in str(exc):
                raise
            bad = next(row for row in chunk if len(row) != width)
            raise ValueError(
                f"a result row has {len(bad)} values but {width} columns were declared"
            ) from None


def cursor_batches(
    cursor: Any, columns: Sequence[ColumnInfo], batch_size: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Record batches from an executed DB-API cursor, fetched ``batch_size`` rows at a time.

    >>> import sqlite3
    >>> cur = sqlite3.connect(":memory:").execute("SELECT 1, 'a'")
    >>> [b.num_rows for b in cursor_batches(cur, [ColumnInfo("n", "long"), ColumnInfo("s", "char", arraysize="*")])]
    [1]
    """
    while True:
        rows = cursor.fetchmany(batch_size)
        if not rows:
            return
        yield from rows_to_batches(rows, columns, batch_size)
