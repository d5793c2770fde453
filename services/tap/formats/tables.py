"""Binary table files: Parquet (streamed by row groups) and FITS binary tables (buffered).

Parquet (``application/vnd.apache.parquet``, DALI 1.2) keeps Arrow's own types (timestamps
stay timestamps) cast to the declared VOTable types, and carries the column metadata in
each field's Arrow metadata (``unit``, ``ucd``, ``description``, ``utype``, ``xtype``,
``votable.datatype``, ``votable.arraysize``) so that :func:`~.uploads.read_upload` and
other tools get units and UCDs back.

FITS needs the row count (``NAXIS2``) in the header before the data, so a FITS result is
assembled in memory and yielded at the end; output limits bound its size. Integer nulls
get a ``TNULLn``; float nulls are NaN; strings are ASCII (``?`` for other characters, as
FITS allows nothing else). ``TUNITn`` carries units; ``TUCDn``, ``TCOMMn`` (description)
and ``TUTYPn`` follow the conventions STIL and TOPCAT read.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pachon.core.catalog.model import ColumnInfo

from .errors import ResultStreamError
from .types import ColumnSpec, ResultMeta, StatusCallback, coerce, column_specs, unique_names
from .votable import closing_source

__all__ = ["arrow_field", "write_fits", "write_parquet"]

_ROW_GROUP_ROWS = 131_072


def arrow_field(spec: ColumnSpec, name: str, arrow_type: pa.DataType) -> pa.Field:
    """An Arrow field with the column's VOTable metadata attached."""
    col = spec.column
    meta = {
        "votable.datatype": col.datatype,
        "votable.arraysize": spec.arraysize,
        "unit": col.unit,
        "ucd": col.ucd,
        "utype": col.utype,
        "xtype": col.xtype,
        "description": col.description,
    }
    return pa.field(name, arrow_type, metadata={k: v for k, v in meta.items() if v})


def _parquet_array(array: pa.Array | pa.ChunkedArray, spec: ColumnSpec) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if spec.kind == "str" and (pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)):
        return array  # Parquet has real timestamps; keep them
    return coerce(array, spec)


class _Sink(io.RawIOBase):
    """A write-only file whose written bytes are drained after every row group."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def write_parquet(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    *,
    status: StatusCallback | None = None,
    meta: ResultMeta | None = None,
) -> Iterator[bytes]:
    """Stream a Parquet file, one row group per ~128k rows, with units/UCDs in the schema."""
    return closing_source(batches, lambda iterator: _parquet_document(columns, iterator, status, meta))


def _parquet_document(
    columns: Sequence[ColumnInfo],
    batches: Iterator[pa.RecordBatch],
    status: StatusCallback | None,
    meta: ResultMeta | None,
) -> Iterator[bytes]:
    specs = column_specs(columns)
    names = unique_names([s.name for s in specs])
    sink = _Sink()
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    started = False

    def flush() -> None:
        nonlocal writer, pending_rows
        assert schema is not None
        if writer is None:
            writer = pq.ParquetWriter(sink, schema, compression="zstd")
        if pending:
            writer.write_table(pa.Table.from_batches(pending, schema=schema))
        pending.clear()
        pending_rows = 0

    try:
        for batch in batches:
            if batch.num_columns != len(specs):
                raise ValueError(
                    f"the result batch has {batch.num_columns} columns but {len(specs)} were declared"
                )
            arrays = [_parquet_array(batch.column(i), spec) for i, spec in enumerate(specs)]
            if schema is None:
                fields = [arrow_field(s, n, a.type) for s, n, a in zip(specs, names, arrays, strict=True)]
                schema = pa.schema(fields, metadata=_schema_metadata(meta))
            else:
                arrays = [
                    a if a.type == f.type else pc.cast(a, f.type)
                    for a, f in zip(arrays, schema, strict=False)
                ]
            pending.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            pending_rows += batch.num_rows
            if pending_rows >= _ROW_GROUP_ROWS:
                flush()
                chunk = sink.drain()
                if chunk:
                    started = True
                    yield chunk
        if schema is None:
            empty = [
                coerce(pa.nulls(0), s) if s.kind != "array" else pa.array([], s.arrow_type) for s in specs
            ]
            fields = [arrow_field(s, n, a.type) for s, n, a in zip(specs, names, empty, strict=True)]
            schema = pa.schema(fields, metadata=_schema_metadata(meta))
        flush()
        assert writer is not None
        writer.close()
    except Exception as exc:
        if not started:
            raise
        raise ResultStreamError(f"the result failed after output had started: {exc}") from exc
    final = status() if status is not None else ("OK", None)
    if final[0] == "ERROR":
        raise ResultStreamError(final[1] or "the query failed")
    yield sink.drain()


def _schema_metadata(meta: ResultMeta | None) -> dict[str, str]:
    out = {"pachon.format": "TAP result"}
    if meta is not None and meta.query:
        out["pachon.query"] = meta.query
    return out


# FITS ---------------------------------------------------------------------------------------
_FITS_INT = {
    "unsignedByte": ("B", 255),
    "short": ("I", -32768),
    "int": ("J", -(2**31)),
    "long": ("K", -(2**63)),
}
_FITS_FLOAT = {"float": "E", "double": "D"}


def _fits_column(array: pa.Array, spec: ColumnSpec, name: str) -> tuple[Any, dict[str, Any]]:
    from astropy.io import fits

    col = spec.column
    extra: dict[str, Any] = {}
    if spec.kind == "bool":
        values = pc.fill_null(array, False).to_numpy(zero_copy_only=False)
        column = fits.Column(name=name, format="L", array=values)
    elif spec.kind == "num":
        values = array.to_numpy(zero_copy_only=False)
        if col.datatype in _FITS_INT:
            code, null = _FITS_INT[col.datatype]
            if array.null_count:
                values = pc.fill_null(array, null).to_numpy(zero_copy_only=False)
                extra["null"] = null
            column = fits.Column(name=name, format=code, array=values, **extra)
        else:
            values = pc.fill_null(array, float("nan")).to_numpy(zero_copy_only=False)
            column = fits.Column(name=name, format=_FITS_FLOAT[col.datatype], array=values)
    elif spec.kind == "array":
        code = _FITS_FLOAT.get(col.datatype) or _FITS_INT[col.datatype][0]
        assert spec.np_dtype is not None
        lists = [
            np.asarray(v if v is not None else [], dtype=spec.np_dtype.replace(">", "="))
            for v in array.to_pylist()
        ]
        if spec.count is not None:
            fixed = np.full((len(lists), spec.count), np.nan if code in "ED" else 0)
            for i, v in enumerate(lists):
                if len(v) == spec.count:
                    fixed[i] = v
            column = fits.Column(name=name, format=f"{spec.count}{code}", array=fixed)
        else:
            column = fits.Column(
                name=name, format=f"P{code}()", array=np.array([*lists, None], dtype=object)[:-1]
            )
    else:
        text = pc.replace_substring_regex(pc.fill_null(array, ""), pattern=r"[^\x00-\x7f]", replacement="?")
        values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        width = max(1, int(pc.max(pc.utf8_length(text)).as_py() or 1)) if len(text) else 1
        column = fits.Column(name=name, format=f"{width}A", array=values.astype(f"S{width}"))
    if col.unit:
        column.unit = col.unit
    return column, {"TUCD": col.ucd, "TCOMM": col.description, "TUTYP": col.utype, "TXTYP": col.xtype}


def write_fits(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    *,
    status: StatusCallback | None = None,
    meta: ResultMeta | None = None,
) -> Iterator[bytes]:
    """Yield a FITS file (empty primary HDU + one BINTABLE) once all batches are in."""
    return closing_source(batches, lambda iterator: _fits_document(columns, iterator, status, meta))


def _fits_document(
    columns: Sequence[ColumnInfo],
    batches: Iterator[pa.RecordBatch],
    status: StatusCallback | None,
    meta: ResultMeta | None,
) -> Iterator[bytes]:
    from astropy.io import fits

    specs = column_specs(columns)
    names = unique_names([s.name for s in specs])
    collected: list[list[pa.Array]] = [[] for _ in specs]
    for batch in batches:
        if batch.num_columns != len(specs):
            raise ValueError(
                f"the result batch has {batch.num_columns} columns but {len(specs)} were declared"
            )
        for i, spec in enumerate(specs):
            collected[i].append(coerce(batch.column(i), spec))
    final = status() if status is not None else ("OK", None)
    if final[0] == "ERROR":
        raise ResultStreamError(final[1] or "the query failed")
    fits_columns = []
    keywords = []
    for spec, name, parts in zip(specs, names, collected, strict=True):
        array = (
            pa.concat_arrays(parts)
            if parts
            else coerce(pa.nulls(0), spec)
            if spec.kind != "array"
            else pa.array([], spec.arrow_type)
        )
        column, keys = _fits_column(array, spec, name)
        fits_columns.append(column)
        keywords.append(keys)
    hdu = fits.BinTableHDU.from_columns(fits_columns, name="RESULT")
    for i, keys in enumerate(keywords, start=1):
        for prefix, value in keys.items():
            if value:
                clean = value.encode("ascii", "replace").decode("ascii").replace("\n", " ")[:68]
                hdu.header[f"{prefix}{i}"] = clean
    if meta is not None and meta.query:
        hdu.header.add_comment(
            "ADQL: " + meta.query.encode("ascii", "replace").decode("ascii").replace("\n", " ")
        )
    if final[0] == "OVERFLOW":
        hdu.header["QSTATUS"] = ("OVERFLOW", "rows were cut at MAXREC")
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(out)
    yield out.getvalue()
