"""Streaming readers that turn Parquet, FITS binary tables, VOTable and CSV files into Arrow batches.

Every reader yields :class:`pyarrow.RecordBatch` objects of one schema, so ingest can load
millions of rows with bounded memory, and reports the per-column metadata it found in the
file (unit, UCD, utype, description) so TAP_SCHEMA can publish it:

* Parquet: Arrow field metadata ``unit``/``ucd``/``utype``/``description`` and astropy's
  ``table_meta_yaml`` header (what ``astropy.table.Table.write(..., format='parquet')`` writes).
* FITS: ``TUNITn``, and the widely used (non-standard) ``TUCDn``, ``TUTYPn`` and ``TCOMMn``
  keywords; ``TNULLn`` integers become NULLs.
* VOTable: each FIELD's ``unit``, ``ucd``, ``utype`` and ``DESCRIPTION``; masked values are NULLs.
* CSV: a header line of column names; types inferred by pyarrow; no metadata.

Errors are :class:`IngestError` with the file, the 1-based row (data row; for CSV also the
file line) and the column, saying what was expected, e.g.::

    catalog.csv: line 12 (row 11), column 'r_mag': expected a number (double) like the rows above, got 'abc'
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["FORMATS", "IngestError", "SourceTable", "detect_format", "open_source"]

FORMATS = ("parquet", "fits", "votable", "csv")
_SUFFIXES = {
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
    ".csv": "csv",
    ".txt": "csv",
}
BATCH_ROWS = 262_144
CSV_BLOCK_BYTES = 32 << 20
"""Bytes per CSV block; column types are inferred from the first block (as pyarrow does)."""


class IngestError(ValueError):
    """Bad input: says which file, row and column, and what was expected."""

    user_facing = True  # the CLI prints the message as one line (pachon.cli.main)

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        where = [str(path)]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(": ".join([", ".join(where), message]))
        self.path = str(path)
        self.row = row
        self.column = column


@dataclass
class SourceTable:
    """An opened input file: its Arrow schema, per-column metadata and a batch iterator."""

    path: Path
    fmt: str
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    num_rows: int | None = None
    description: str | None = None
    column_meta: dict[str, dict[str, str]] = field(default_factory=dict)


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The file format from ``fmt`` or the file's suffix (``.fits.gz`` counts as FITS)."""
    if fmt:
        fmt = fmt.lower()
        aliases = {"vot": "votable", "xml": "votable", "fit": "fits", "pq": "parquet"}
        fmt = aliases.get(fmt, fmt)
        if fmt not in FORMATS:
            raise IngestError(path, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise IngestError(
        path,
        f"cannot tell the format from the suffix {path.suffix!r}; pass fmt= (CLI: --format) "
        f"with one of {', '.join(FORMATS)}",
    )


def open_source(path: str | Path, fmt: str | None = None) -> SourceTable:
    """Open ``path`` for streaming; raise :class:`IngestError` when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise IngestError(path, "no such file")
    kind = detect_format(path, fmt)
    opener = {"parquet": _open_parquet, "fits": _open_fits, "votable": _open_votable, "csv": _open_csv}[kind]
    try:
        return opener(path)
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(path, f"cannot read as {kind}: {exc}") from exc


# Parquet ---------------------------------------------------------------------------------


def _astropy_yaml_meta(raw: bytes) -> dict[str, dict[str, str]]:
    """Units/descriptions/UCDs from astropy's ``table_meta_yaml`` Parquet header."""
    from astropy.table.meta import get_header_from_yaml

    try:
        header = get_header_from_yaml(raw.decode("utf-8").splitlines())
    except Exception:
        return {}
    out: dict[str, dict[str, str]] = {}
    for col in header.get("datatype", []):
        meta: dict[str, str] = {}
        if col.get("unit") is not None:
            meta["unit"] = str(col["unit"])
        if col.get("description"):
            meta["description"] = str(col["description"])
        extra = col.get("meta") or {}
        for key in ("ucd", "utype"):
            if extra.get(key):
                meta[key] = str(extra[key])
        out[col["name"]] = meta
    return out


def _open_parquet(path: Path) -> SourceTable:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    meta: dict[str, dict[str, str]] = {}
    if schema.metadata and b"table_meta_yaml" in schema.metadata:
        meta.update(_astropy_yaml_meta(schema.metadata[b"table_meta_yaml"]))
    for f in schema:
        if f.metadata:
            for key in ("unit", "ucd", "utype", "description"):
                value = f.metadata.get(key.encode())
                if value:
                    meta.setdefault(f.name, {})[key] = value.decode("utf-8")
    clean = pa.schema([pa.field(f.name, f.type) for f in schema])
    batches = (pa.RecordBatch.from_arrays(b.columns, schema=clean) for b in pf.iter_batches(BATCH_ROWS))
    return SourceTable(path, "parquet", clean, batches, pf.metadata.num_rows, None, meta)


# FITS ------------------------------------------------------------------------------------


def _numpy_to_arrow(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    if values.dtype.kind in "SU":
        texts = values.astype(str)
        return pa.array(np.char.rstrip(texts), type=pa.string(), mask=mask)
    if values.dtype.kind == "O":
        return pa.array(list(values), mask=mask)
    if values.dtype.byteorder == ">" or (values.dtype.byteorder == "=" and not np.little_endian):
        values = values.astype(values.dtype.newbyteorder("<"))
    if values.ndim > 1:
        flat = np.ascontiguousarray(values).reshape(len(values), -1)
        inner = pa.array(flat.ravel())
        return pa.FixedSizeListArray.from_arrays(
            inner, flat.shape[1], mask=None if mask is None else pa.array(mask)
        )
    return pa.array(values, mask=mask)


def _open_fits(path: Path) -> SourceTable:
    from astropy.io import fits

    hdul = fits.open(path, memmap=True)
    hdu = next((h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)
    if hdu is None:
        hdul.close()
        raise IngestError(path, "no binary table extension (BINTABLE) in this FITS file")
    header = hdu.header
    data = hdu.data
    cols = hdu.columns
    meta: dict[str, dict[str, str]] = {}
    nulls: dict[str, Any] = {}
    for i, col in enumerate(cols, start=1):
        m: dict[str, str] = {}
        if col.unit:
            m["unit"] = str(col.unit)
        for key, name in (("TUCD", "ucd"), ("TUTYP", "utype"), ("TCOMM", "description")):
            if f"{key}{i}" in header:
                m[name] = str(header[f"{key}{i}"])
        meta[col.name] = m
        if col.null is not None and not isinstance(col.null, str):
            nulls[col.name] = col.null
    n = 0 if data is None else len(data)
    names = [c.name for c in cols]

    def convert(start: int, stop: int) -> pa.RecordBatch:
        arrays = []
        for name in names:
            values = np.asarray(data.field(name)[start:stop])
            mask = None
            if name in nulls and values.dtype.kind in "iu":
                mask = values == nulls[name]
                mask = mask if mask.any() else None
            arrays.append(_numpy_to_arrow(values, mask))
        return pa.RecordBatch.from_arrays(arrays, names=names)

    first = convert(0, min(n, 1))
    schema = first.schema

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for start in range(0, n, BATCH_ROWS):
                batch = convert(start, min(n, start + BATCH_ROWS))
                yield batch.cast(schema) if batch.schema != schema else batch
        finally:
            hdul.close()

    description = str(header["EXTNAME"]) if "EXTNAME" in header else None
    return SourceTable(path, "fits", schema, batches(), n, description, meta)


# VOTable ---------------------------------------------------------------------------------


def _open_votable(path: Path) -> SourceTable:
    from astropy.io.votable import parse_single_table

    vot = parse_single_table(str(path))
    meta: dict[str, dict[str, str]] = {}
    names = []
    for f in vot.fields:
        name = f.name or f.ID
        names.append(name)
        m = {}
        if f.unit is not None:
            m["unit"] = str(f.unit)
        for key in ("ucd", "utype"):
            if getattr(f, key, None):
                m[key] = str(getattr(f, key))
        if f.description:
            m["description"] = str(f.description)
        meta[name] = m
    array = vot.array
    arrays = []
    for i in range(len(names)):
        col = array[array.dtype.names[i]]
        values = np.asarray(col.data if hasattr(col, "data") else col)
        mask: np.ndarray = np.asarray(np.ma.getmaskarray(col))
        if values.ndim > 1:
            mask = np.asarray(mask.reshape(len(values), -1).all(axis=1))
        if values.dtype.kind == "O":
            items = [None if m else v for v, m in zip(values, mask, strict=True)]
            if items and all(isinstance(v, bytes | type(None)) for v in items):
                items = [None if v is None else v.decode("utf-8") for v in items]
            arrays.append(pa.array(items))
            continue
        arrays.append(_numpy_to_arrow(values, mask if mask.any() else None))
    batch = pa.RecordBatch.from_arrays(arrays, names=names)
    description = str(vot.description) if vot.description else None
    return SourceTable(path, "votable", batch.schema, iter([batch]), batch.num_rows, description, meta)


# CSV -------------------------------------------------------------------------------------

_CSV_COLUMN = re.compile(r"column #(\d+)")


def _open_csv(path: Path) -> SourceTable:
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    convert = pcsv.ConvertOptions(strings_can_be_null=True)
    try:
        reader = pcsv.open_csv(path, read_options=read, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _locate_csv_error(path, None, exc) from exc
    schema = reader.schema

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except pa.ArrowInvalid as exc:
            raise _locate_csv_error(path, schema, exc) from exc

    return SourceTable(path, "csv", schema, batches(), None, None, {})


def _check_value(text: str, dtype: pa.DataType) -> str | None:
    """None when ``text`` converts to ``dtype`` as pyarrow would, else what was expected."""
    if text == "" or text.lower() in ("null", "nan", "n/a", "na", "-nan", "#n/a"):
        return None
    try:
        if pa.types.is_integer(dtype):
            int(text)
        elif pa.types.is_floating(dtype):
            float(text)
        elif pa.types.is_boolean(dtype) and text.lower() not in ("true", "false", "1", "0"):
            raise ValueError
        return None
    except ValueError:
        kind = (
            "an integer"
            if pa.types.is_integer(dtype)
            else "a number"
            if pa.types.is_floating(dtype)
            else "true/false"
        )
        return f"{kind} ({dtype}) like the rows above"


def _locate_csv_error(path: Path, schema: pa.Schema | None, exc: Exception) -> IngestError:
    """Re-scan the file with the csv module to name the exact line, row and column."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            return IngestError(path, "empty file; expected a header line with column names")
        for index, values in enumerate(rows, start=1):
            line = index + 1
            if len(values) != len(header):
                return IngestError(
                    path,
                    f"line {line} has {len(values)} fields, expected {len(header)} like the header "
                    f"({', '.join(header)})",
                    row=index,
                )
            if schema is None:
                continue
            for name, text in zip(header, values, strict=True):
                idx = schema.get_field_index(name)
                if idx < 0:
                    continue
                expected = _check_value(text, schema.field(idx).type)
                if expected:
                    return IngestError(
                        path, f"(line {line}) expected {expected}, got {text!r}", row=index, column=name
                    )
    return IngestError(path, f"cannot parse as CSV: {exc}")
