"""Reading TAP uploads (``UPLOAD=name,param:x`` or a URL): VOTable, CSV/TSV, Parquet and FITS.

:func:`read_upload` sniffs the format from the bytes (``<?xml``/``<VOTABLE`` → VOTable,
``PAR1`` → Parquet, ``SIMPLE  =`` → FITS, otherwise CSV, or TSV when the header line has
tabs and no commas) and returns an :class:`UploadTable`: an Arrow table plus its columns
in the VOTable vocabulary, ready to be registered as ``TAP_UPLOAD.name``.

Column names keep their exact spelling. A name that is not a regular ADQL identifier
(``my col``, ``2mass``) or is an ADQL/SQL reserved word (``size``, ``point``) is flagged
``delimited=True``: queries must quote it (``"my col"``). Regular names such as ``RA`` stay
case-insensitive in queries, as ADQL says, so two columns whose regular names differ only
in case are refused.

CSV has no types: each column's type is inferred from all its values (long, double,
boolean, ISO timestamp, else text). A column whose values are numbers except for a few
(at most 10 % of its non-empty cells) is taken to be numeric with typos, and the first
offending cell is reported by row and column instead of turning the whole column into
text, which would only fail later, confusingly, in the query.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pachon.core.catalog.identifiers import ADQL_RESERVED
from pachon.core.catalog.model import ColumnInfo
from pachon.core.catalog.types import arrow_to_votable, votable_to_arrow

from .errors import UploadError

__all__ = ["ADQL_RESERVED_WORDS", "UploadTable", "read_upload", "validate_table_name"]

_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_REGULAR = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# One list of ADQL reserved words for the whole project (the catalog layer owns it): a column
# named like one is a delimited identifier.
ADQL_RESERVED_WORDS = ADQL_RESERVED
"""Words that cannot be used as regular identifiers in ADQL 2.1 (upper case)."""


@dataclass(frozen=True)
class UploadTable:
    """An uploaded table: its validated name, the data and the columns in VOTable terms."""

    name: str
    table: pa.Table
    columns: list[ColumnInfo]
    format: str

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def validate_table_name(name: str) -> str:
    """Check an upload name (TAP 1.1 §2.5.1: ``[A-Za-z][A-Za-z0-9_]*``) and return it."""
    if not _TABLE_NAME.match(name or ""):
        raise UploadError(
            f"{name!r} is not a valid upload table name; use a letter followed by letters, digits or "
            "underscores (e.g. UPLOAD=mytable,param:mytable) and query it as TAP_UPLOAD.mytable"
        )
    return name


def is_delimited(name: str) -> bool:
    """True when ``name`` must be written as a delimited identifier in ADQL."""
    return not _REGULAR.match(name) or name.upper() in ADQL_RESERVED_WORDS


def _check_names(table: str, names: list[str]) -> None:
    seen: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        if not name or not name.strip():
            raise UploadError(f"column {i} has no name; give every column a name", table=table)
        key = name if is_delimited(name) else name.lower()
        if key in seen:
            raise UploadError(
                f"the column names {seen[key]!r} and {name!r} are the same in ADQL "
                "(regular identifiers are case-insensitive); rename one of them",
                table=table,
            )
        seen[key] = name


def _fail_size(table: str, what: str, value: int, limit: int) -> UploadError:
    return UploadError(
        f"the upload has {value:,} {what}, more than this service's limit of {limit:,}; "
        "upload fewer rows or columns",
        table=table,
    )


def read_upload(
    data: bytes | Path | str,
    name: str,
    *,
    max_rows: int,
    max_bytes: int,
) -> UploadTable:
    """Read an upload (bytes or a file path) named ``name``.

    Raises :class:`~.errors.UploadError` with the table name, and the row and column
    where relevant, for a bad name, a file over ``max_bytes`` or ``max_rows``, an
    unreadable file or a bad value.

    >>> up = read_upload(b"id,ra\\n1,10.5\\n", "mine", max_rows=10, max_bytes=1000)
    >>> [(c.name, c.datatype) for c in up.columns]
    [('id', 'long'), ('ra', 'double')]
    """
    validate_table_name(name)
    if isinstance(data, str | Path):
        path = Path(data)
        size = path.stat().st_size
        if size > max_bytes:
            raise _fail_size(name, "bytes", size, max_bytes)
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise _fail_size(name, "bytes", len(data), max_bytes)
    if not data.strip():
        raise UploadError("the uploaded file is empty", table=name)
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"PAR1"):
        fmt, (table, columns) = "parquet", _read_parquet(data, name, max_rows)
    elif head.startswith(b"SIMPLE  ="):
        fmt, (table, columns) = "fits", _read_fits(data, name, max_rows)
    elif head.startswith(b"<"):
        fmt, (table, columns) = "votable", _read_votable(data, name, max_rows)
    else:
        fmt, (table, columns) = "csv", _read_csv(data, name, max_rows)
    _check_names(name, [c.name for c in columns])
    return UploadTable(name=name, table=_with_metadata(table, columns), columns=columns, format=fmt)


def _with_metadata(table: pa.Table, columns: list[ColumnInfo]) -> pa.Table:
    """The table with each column's VOTable metadata in its Arrow field metadata.

    Keys as the Parquet writer uses (``votable.datatype``, ``votable.arraysize``, ``unit``,
    ``ucd``, ``utype``, ``xtype``, ``description``) plus ``adql.delimited``, so a caller that
    keeps only the Arrow table still knows units, UCDs and which names need quoting.
    """
    fields = []
    for field, col in zip(table.schema, columns, strict=True):
        meta = {
            "votable.datatype": col.datatype,
            "votable.arraysize": col.arraysize,
            "unit": col.unit,
            "ucd": col.ucd,
            "utype": col.utype,
            "xtype": col.xtype,
            "description": col.description,
            "adql.delimited": "true" if col.delimited else None,
        }
        fields.append(field.with_metadata({k: v for k, v in meta.items() if v}))
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


# VOTable ------------------------------------------------------------------------------------
def _read_votable(data: bytes, name: str, max_rows: int) -> tuple[pa.Table, list[ColumnInfo]]:
    import warnings

    from astropy.io.votable import parse

    widened: set[int] = set()
    if b"<TABLEDATA" in data:
        data, widened = _widen_single_chars(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            document = parse(io.BytesIO(data), verify="ignore")
    except Exception as exc:
        raise UploadError(
            f"the file is not a readable VOTable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
            table=name,
        ) from None
    tables = list(document.iter_tables())
    if not tables:
        raise UploadError("the VOTable holds no TABLE", table=name)
    vot = tables[0]
    rows = vot.array
    if rows is None:
        raise UploadError("the VOTable's TABLE has no data", table=name)
    if len(rows) > max_rows:
        raise _fail_size(name, "rows", len(rows), max_rows)
    arrays: list[pa.Array] = []
    columns: list[ColumnInfo] = []
    for index, fld in enumerate(vot.fields):
        values = rows[rows.dtype.names[index]]
        array, arraysize = _votable_array(values, fld, single=index in widened)
        arrays.append(array)
        datatype = fld.datatype
        if datatype == "char" and _has_non_ascii(array):
            datatype = "unicodeChar"
        if datatype == "bit":
            datatype = "boolean"
        columns.append(
            ColumnInfo(
                name=fld.name,
                datatype=datatype,
                arraysize=arraysize,
                xtype=fld.xtype,
                unit=str(fld.unit) if fld.unit is not None else None,
                ucd=fld.ucd,
                utype=fld.utype,
                description=fld.description,
                column_index=index,
                delimited=is_delimited(fld.name),
            )
        )
    table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
    return table.rename_columns([c.name for c in columns]), columns


_FIELD_TAG = re.compile(rb"<FIELD\b[^>]*>")
_CHAR_TYPE = re.compile(rb"""\bdatatype\s*=\s*["'](char|unicodeChar)["']""")
_ARRAYSIZE = re.compile(rb"""\barraysize\s*=\s*["']\s*1\s*["']""")


def _widen_single_chars(data: bytes) -> tuple[bytes, set[int]]:
    """Read TABLEDATA ``char`` FIELDs declared with ``arraysize="1"`` (or none) as variable-length.

    Many writers declare one-character text columns but put longer strings in them; the
    parser would cut them to one character. We read the full text and decide the
    arraysize from the values (see :func:`_votable_array`). Returns the new bytes and the
    positions (in document order) of the widened FIELDs.
    """
    widened: set[int] = set()
    counter = iter(range(1 << 30))

    def widen(match: re.Match[bytes]) -> bytes:
        index = next(counter)
        tag = match.group(0)
        if not _CHAR_TYPE.search(tag):
            return tag
        if _ARRAYSIZE.search(tag):
            widened.add(index)
            return _ARRAYSIZE.sub(b'arraysize="*"', tag, count=1)
        if b"arraysize" not in tag:
            widened.add(index)
            return tag[:6] + b' arraysize="*"' + tag[6:]
        return tag

    return _FIELD_TAG.sub(widen, data), widened


def _has_non_ascii(array: pa.Array) -> bool:
    if not (pa.types.is_string(array.type) and len(array)):
        return False
    return pc.all(pc.string_is_ascii(array)).as_py() is False


def _votable_array(values: Any, fld: Any, *, single: bool = False) -> tuple[pa.Array, str | None]:
    mask = np.ma.getmaskarray(values)
    raw = _native(np.ma.getdata(values))
    datatype = fld.datatype
    arraysize = fld.arraysize
    if datatype in ("char", "unicodeChar"):
        strings = [
            None if m else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for v, m in zip(raw.tolist(), mask.tolist(), strict=False)
        ]
        array = pa.array(strings, type=pa.string())
        if (fld.xtype or "").lower() == "timestamp":
            array = _maybe_timestamps(array)
        if single or arraysize in (None, "1"):
            longest = (pc.max(pc.utf8_length(array)).as_py() or 0) if len(array) else 0
            arraysize = "*" if longest > 1 else "1"  # longer values than declared: keep them
        return array, arraysize
    if raw.dtype == object:  # variable-length arrays
        items = []
        for v, m in zip(raw, mask.tolist(), strict=False):
            items.append(None if m or v is None else np.ma.filled(np.ma.asarray(v), np.nan).tolist())
        value_type = votable_to_arrow(datatype) or pa.float64()
        return pa.array(items, type=pa.list_(value_type)), arraysize or "*"
    if raw.ndim > 1:  # fixed-size arrays, e.g. a point's double[2]
        width = int(np.prod(raw.shape[1:]))
        flat = pa.array(
            np.ascontiguousarray(raw).reshape(-1), type=votable_to_arrow(datatype) or pa.float64()
        )
        row_mask = mask.reshape(len(raw), -1).all(axis=1) if mask.ndim > 1 else mask
        array = pa.FixedSizeListArray.from_arrays(
            flat, width, mask=pa.array(row_mask) if row_mask.any() else None
        )
        return array, arraysize
    arrow_type = votable_to_arrow(datatype)
    if datatype in ("floatComplex", "doubleComplex"):
        raise UploadError(f"complex values ({datatype}) cannot be uploaded", column=fld.name)
    array = pa.array(raw, mask=mask if mask.any() else None, type=arrow_type)
    return array, arraysize


def _native(values: np.ndarray) -> np.ndarray:
    """Native byte order (FITS data are big-endian; Arrow takes native arrays only)."""
    if values.dtype.kind in "biuf" and not values.dtype.isnative:
        return values.astype(values.dtype.newbyteorder("="))
    return values


def _maybe_timestamps(array: pa.Array) -> pa.Array:
    """Parse ISO 8601 strings to timestamps when all of them parse (else keep the text)."""
    text = pc.replace_substring_regex(array, pattern=r"Z$", replacement="")
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return array


# Parquet and FITS -------------------------------------------------------------------------------
def _arrow_column(field: pa.Field, array: pa.ChunkedArray, index: int) -> tuple[pa.ChunkedArray, ColumnInfo]:
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    typ = field.type
    arraysize = meta.get("votable.arraysize")
    xtype = meta.get("xtype")
    datatype = meta.get("votable.datatype")
    if pa.types.is_dictionary(typ):
        array = pc.cast(array, typ.value_type)
        typ = typ.value_type
    if pa.types.is_decimal(typ) or pa.types.is_float16(typ):
        array = pc.cast(array, pa.float64() if pa.types.is_decimal(typ) else pa.float32())
        typ = array.type
    if pa.types.is_int8(typ):
        array = pc.cast(array, pa.int16())
        typ = array.type
    if pa.types.is_uint64(typ) or pa.types.is_uint32(typ) or pa.types.is_uint16(typ):
        array = pc.cast(array, pa.int64() if not pa.types.is_uint16(typ) else pa.int32())
        typ = array.type
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        datatype, arraysize, xtype = "char", arraysize or "*", "timestamp"
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
        array = pc.cast(array, pa.string())
        plain = pc.all(pc.string_is_ascii(array)).as_py() is not False if len(array) else True
        datatype = (
            datatype
            if datatype in ("char", "unicodeChar") and plain
            else ("char" if plain else "unicodeChar")
        )
        arraysize = arraysize or "*"
    elif pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        inner = _votable_type(typ.value_type, field.name)
        datatype = inner
        arraysize = arraysize or (str(typ.list_size) if pa.types.is_fixed_size_list(typ) else "*")
    else:
        datatype = _votable_type(typ, field.name)
        arraysize = None
    column = ColumnInfo(
        name=field.name,
        datatype=datatype or "char",
        arraysize=arraysize,
        xtype=xtype,
        unit=meta.get("unit"),
        ucd=meta.get("ucd"),
        utype=meta.get("utype"),
        description=meta.get("description"),
        column_index=index,
        delimited=is_delimited(field.name),
    )
    return array, column


def _votable_type(typ: pa.DataType, name: str) -> str:
    """The VOTable datatype of a scalar Arrow type (numbers and booleans; the catalog layer's one mapping)."""
    scalar = pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ)
    if scalar or pa.types.is_decimal(typ):
        return arrow_to_votable(typ)[0]
    raise UploadError(
        f"values of Arrow type {typ} cannot be uploaded; use numbers, text, booleans or times", column=name
    )


def _from_arrow(table: pa.Table, name: str) -> tuple[pa.Table, list[ColumnInfo]]:
    arrays = []
    columns = []
    for index, field in enumerate(table.schema):
        try:
            array, column = _arrow_column(field, table.column(index), index)
        except UploadError as exc:
            raise UploadError(str(exc), table=name) from None
        arrays.append(array)
        columns.append(column)
    return pa.Table.from_arrays(arrays, names=[c.name for c in columns]), columns


def _read_parquet(data: bytes, name: str, max_rows: int) -> tuple[pa.Table, list[ColumnInfo]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        if parquet.metadata.num_rows > max_rows:
            raise _fail_size(name, "rows", parquet.metadata.num_rows, max_rows)
        table = parquet.read()
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError(f"the file is not a readable Parquet file: {exc}", table=name) from None
    return _from_arrow(table, name)


def _read_fits(data: bytes, name: str, max_rows: int) -> tuple[pa.Table, list[ColumnInfo]]:
    from astropy.table import Table

    try:
        table = Table.read(io.BytesIO(data), format="fits")
    except Exception as exc:
        raise UploadError(f"the file is not a readable FITS table: {exc}", table=name) from None
    if len(table) > max_rows:
        raise _fail_size(name, "rows", len(table), max_rows)
    arrays = []
    fields = []
    for col in table.itercols():
        values = _native(np.ma.getdata(col))
        mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
        if values.dtype.kind in "SU":
            strings = [
                v.decode("ascii", "replace") if isinstance(v, bytes) else str(v) for v in values.tolist()
            ]
            array = pa.array(strings, type=pa.string(), mask=mask)
        elif values.ndim > 1:
            width = int(np.prod(values.shape[1:]))
            array = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
        else:
            array = pa.array(values, mask=mask if mask is not None and mask.any() else None)
        meta = {"unit": str(col.unit)} if col.unit is not None else {}
        arrays.append(array)
        fields.append(pa.field(col.name, array.type, metadata=meta))
    return _from_arrow(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), name)


# CSV ----------------------------------------------------------------------------------------
_NUMBER = r"^\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|[Nn]a[Nn]|[Ii]nf(inity)?)\s*$"
_INTEGER = r"^\s*[+-]?\d+\s*$"
_BOOLEAN = r"(?i)^\s*(true|false|t|f)\s*$"
_NULLS = ["", "null", "NULL", "None"]


def _read_csv(data: bytes, name: str, max_rows: int) -> tuple[pa.Table, list[ColumnInfo]]:
    import pyarrow.csv as pcsv

    first_line = data.split(b"\n", 1)[0]
    delimiter = "\t" if b"\t" in first_line and b"," not in first_line else ","
    bad_rows: list[tuple[int | None, str]] = []

    def invalid(row: Any) -> str:
        bad_rows.append(
            (row.number, f"it has {row.actual_columns} fields, the header has {row.expected_columns}")
        )
        return "error"

    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=1 << 22),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=invalid),
            convert_options=pcsv.ConvertOptions(
                column_types=_all_strings(data, delimiter),
                strings_can_be_null=True,
                null_values=_NULLS,
                quoted_strings_can_be_null=False,
            ),
        )
    except Exception as exc:
        if bad_rows:
            number, what = bad_rows[0]
            where = f"line {number}" if number is not None else "a line"
            raise UploadError(f"{where} cannot be read as CSV: {what}", table=name) from None
        raise UploadError(f"the file is not readable as CSV with a header line: {exc}", table=name) from None
    if table.num_rows > max_rows:
        raise _fail_size(name, "rows", table.num_rows, max_rows)
    arrays = []
    columns = []
    for index, column_name in enumerate(table.column_names):
        text = table.column(index).combine_chunks()
        array, datatype, xtype = _infer(text, name, column_name)
        arrays.append(array)
        columns.append(
            ColumnInfo(
                name=column_name,
                datatype=datatype,
                arraysize="*" if datatype in ("char", "unicodeChar") else None,
                xtype=xtype,
                column_index=index,
                delimited=is_delimited(column_name),
            )
        )
    return pa.Table.from_arrays(arrays, names=table.column_names), columns


def _all_strings(data: bytes, delimiter: str) -> dict[str, pa.DataType]:
    import pyarrow.csv as pcsv

    first_line = data.split(b"\n", 1)[0]
    names = pcsv.read_csv(
        io.BytesIO(first_line + b"\n"),
        parse_options=pcsv.ParseOptions(delimiter=delimiter),
        read_options=pcsv.ReadOptions(use_threads=False),
    ).schema.names
    return {n: pa.string() for n in names}


def _infer(text: pa.Array, table: str, column: str) -> tuple[pa.Array, str, str | None]:
    """The column's typed array, VOTable datatype and xtype (see the module docstring)."""
    present = pc.drop_null(text)
    if len(present) == 0:
        return pc.cast(text, pa.float64()), "double", None
    is_number = pc.match_substring_regex(text, pattern=_NUMBER)
    numbers = int(pc.sum(pc.cast(pc.fill_null(is_number, False), pa.int64())).as_py() or 0)
    if numbers == len(present):
        if pc.all(pc.match_substring_regex(present, pattern=_INTEGER)).as_py():
            try:
                return pc.cast(pc.utf8_trim_whitespace(text), pa.int64()), "long", None
            except pa.ArrowInvalid:
                pass  # beyond 64 bits: fall through to double
        return pc.cast(pc.utf8_trim_whitespace(text), pa.float64()), "double", None
    if numbers and (len(present) - numbers) * 10 <= len(present):
        bad = np.nonzero(~pc.fill_null(is_number, True).to_numpy(zero_copy_only=False))[0][0]
        raise UploadError(
            f"{text[int(bad)].as_py()!r} is not a number (the column's other values are numbers); "
            "correct it, or leave the cell empty for NULL",
            table=table,
            row=int(bad) + 1,
            column=column,
        )
    if pc.all(pc.match_substring_regex(present, pattern=_BOOLEAN)).as_py():
        truth = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(text)), value_set=pa.array(["true", "t"]))
        return pc.if_else(pc.is_null(text), pa.scalar(None, pa.bool_()), truth), "boolean", None
    if pc.all(
        pc.match_substring_regex(present, pattern=r"^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d*)?)?)?Z?$")
    ).as_py():
        stamps = _maybe_timestamps(pc.replace_substring(text, pattern=" ", replacement="T"))
        if pa.types.is_timestamp(stamps.type):
            return stamps, "char", "timestamp"
    datatype = "char" if pc.all(pc.string_is_ascii(present)).as_py() else "unicodeChar"
    return text, datatype, None
