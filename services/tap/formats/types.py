"""Column specifications in the VOTable type system and coercion of Arrow data to them.

Every writer starts from the same question: given a column's declared VOTable type
(``datatype``/``arraysize``/``xtype`` from TAP_SCHEMA or the translator) and whatever Arrow
type the database produced (DuckDB may hand back ``int64`` for a declared ``int``, a
decimal for a ``double``, a ``timestamp`` for a ``char`` with ``xtype="timestamp"``), what
values do we write? :class:`ColumnSpec` answers it once per column and :func:`coerce`
casts each batch's array to the declared type, *safely*: a value that does not fit (an
``int64`` of 2**40 in a column declared ``int``) is an error naming the column, never a
silently wrapped number.

Decisions (DALI 1.1, VOTable 1.4):

* ``char`` is 7-bit ASCII in VOTable 1.4. The metadata wins: a column declared ``char``
  keeps ``char`` in the FIELD (so results agree with TAP_SCHEMA, which taplint's MDQ stage
  checks). Non-ASCII text in a ``char`` column is written as-is in TABLEDATA/CSV (XML and
  CSV are UTF-8 text, as VOTable 1.5 allows) and replaced by ``?`` in BINARY2, where
  VOTable 1.4 readers (astropy among them) decode ``char`` bytes as ASCII. Columns that
  may hold other text are declared ``unicodeChar`` (uploads are, when they contain any
  non-ASCII value) and written as UTF-16BE in BINARY2.
* A ``char`` column without ``arraysize`` is written as ``arraysize="*"``: TAP 1.0-era
  TAP_SCHEMA rows often leave arraysize NULL for VARCHAR, and truncating every string to
  one character would lose data.
* Timestamps (``xtype="timestamp"``) are ISO 8601 strings ``YYYY-MM-DDThh:mm:ss[.fff]``
  in UTC without a zone letter (DALI §3.3.3), whatever Arrow type they arrive as.
* ``bit`` and the complex types are not produced by the translator and are refused with
  a clear error rather than written wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pachon.core.catalog.model import ColumnInfo

__all__ = [
    "NUMERIC_TYPES",
    "ColumnSpec",
    "ResultMeta",
    "Status",
    "StatusCallback",
    "coerce",
    "column_specs",
    "format_timestamps",
]

Status = tuple[str, str | None]
"""``(QUERY_STATUS value, message)``: ``("OK", None)``, ``("OVERFLOW", msg)`` or ``("ERROR", msg)``."""

StatusCallback = Callable[[], Status]
"""Called by a writer once, after the last batch, to learn how the result ended."""

NUMERIC_TYPES: Mapping[str, tuple[pa.DataType, str]] = {
    "unsignedByte": (pa.uint8(), ">u1"),
    "short": (pa.int16(), ">i2"),
    "int": (pa.int32(), ">i4"),
    "long": (pa.int64(), ">i8"),
    "float": (pa.float32(), ">f4"),
    "double": (pa.float64(), ">f8"),
}
"""VOTable numeric datatype → (Arrow type, big-endian numpy dtype of its BINARY2 encoding)."""

_STRING_TYPES = ("char", "unicodeChar")


@dataclass(frozen=True)
class ResultMeta:
    """What a result document says about itself besides the table (DALI §4.4, TAP §3).

    ``query`` is echoed as ``INFO name="QUERY"``; ``request_url`` as ``INFO name="request"``;
    ``params`` as one INFO each (the request echo, e.g. ``{"LANG": "ADQL", "MAXREC": "100"}``);
    ``citation`` as ``INFO name="citation" ucd="meta.bib"``; ``table_name`` names the TABLE.
    """

    query: str | None = None
    standard_id: str | None = "ivo://ivoa.net/std/TAP"
    request_url: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    citation: str | None = None
    table_name: str = "result"
    description: str | None = None


@dataclass(frozen=True)
class ColumnSpec:
    """How one declared column is written.

    ``kind`` is ``"bool"``, ``"num"`` (scalar number), ``"array"`` (numeric array, e.g.
    DALI geometry), ``"str"`` (char/unicodeChar, including timestamps). ``count`` is the
    fixed element count (``None`` when variable); ``bound`` the maximum of a bounded
    variable size (``"16*"``); ``arraysize`` the value for the FIELD attribute.
    """

    column: ColumnInfo
    kind: str
    arrow_type: pa.DataType
    np_dtype: str | None
    count: int | None
    bound: int | None
    arraysize: str | None
    unicode: bool
    timestamp: bool

    @property
    def name(self) -> str:
        return self.column.name

    @property
    def fixed_width(self) -> int | None:
        """Bytes per value in BINARY2 when fixed (``None`` for variable-length values)."""
        if self.kind == "bool":
            return 1
        if self.kind == "num":
            return int(np.dtype(self.np_dtype).itemsize)
        if self.count is None:
            return None
        if self.kind == "array":
            return int(np.dtype(self.np_dtype).itemsize) * self.count
        return self.count * (2 if self.unicode else 1)


def _parse_arraysize(arraysize: str | None) -> tuple[int | None, int | None, bool]:
    """``(fixed count, bound, is_array)`` of a VOTable arraysize such as ``2``, ``*``, ``16*``, ``2x3``."""
    if arraysize is None or arraysize.strip() in ("", "1"):
        return (1, None, False)
    dims = arraysize.strip().split("x")
    last = dims[-1]
    try:
        leading = math.prod(int(d) for d in dims[:-1]) if len(dims) > 1 else 1
        if last.endswith("*"):
            bound = int(last[:-1]) * leading if last[:-1] else None
            return (None, bound, True)
        return (int(last) * leading, None, True)
    except ValueError:
        raise ValueError(f"invalid VOTable arraysize {arraysize!r}") from None


def column_spec(column: ColumnInfo) -> ColumnSpec:
    """The :class:`ColumnSpec` of one declared column; ``ValueError`` for types we cannot write."""
    datatype = column.datatype
    xtype = (column.xtype or "").lower()
    if datatype in _STRING_TYPES:
        if column.arraysize is None or column.arraysize.strip() == "":
            count, bound, arraysize = None, None, "*"
        else:
            count, bound, _ = _parse_arraysize(column.arraysize)
            arraysize = column.arraysize
        return ColumnSpec(
            column=column,
            kind="str",
            arrow_type=pa.string(),
            np_dtype=None,
            count=count,
            bound=bound,
            arraysize=arraysize,
            unicode=datatype == "unicodeChar",
            timestamp=xtype == "timestamp",
        )
    if datatype == "boolean":
        return ColumnSpec(column, "bool", pa.bool_(), None, 1, None, column.arraysize, False, False)
    if datatype in NUMERIC_TYPES:
        arrow_type, np_dtype = NUMERIC_TYPES[datatype]
        count, bound, is_array = _parse_arraysize(column.arraysize)
        if not is_array:
            return ColumnSpec(column, "num", arrow_type, np_dtype, 1, None, column.arraysize, False, False)
        list_type = pa.list_(arrow_type, count) if count is not None else pa.list_(arrow_type)
        return ColumnSpec(column, "array", list_type, np_dtype, count, bound, column.arraysize, False, False)
    raise ValueError(
        f"column {column.name!r}: VOTable datatype {datatype!r} cannot be written; "
        "declare it as boolean, unsignedByte, short, int, long, float, double, char or unicodeChar"
    )


def column_specs(columns: Sequence[ColumnInfo]) -> list[ColumnSpec]:
    """Specs of all result columns, in order."""
    return [column_spec(c) for c in columns]


def format_timestamps(array: pa.Array) -> pa.Array:
    """ISO 8601 strings (UTC, no zone letter) of an Arrow timestamp/date array; trailing zero fractions dropped."""
    typ = array.type
    if pa.types.is_date(typ):
        return pc.cast(array, pa.string())
    if pa.types.is_timestamp(typ):
        if typ.tz is not None:  # the stored instants are UTC already; drop the zone without shifting
            array = pc.cast(pc.cast(array, pa.int64()), pa.timestamp(typ.unit))
        text = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
        if typ.unit != "s":
            text = pc.replace_substring_regex(text, pattern=r"\.?0+$", replacement="")
        return text
    return pc.cast(array, pa.string())


def _ascii_only(array: pa.Array) -> pa.Array:
    """Replace every non-ASCII character by ``?`` (VOTable 1.4 ``char`` in BINARY2)."""
    if pc.all(pc.string_is_ascii(array)).as_py() is not False:
        return array
    return pc.replace_substring_regex(array, pattern=r"[^\x00-\x7f]", replacement="?")


def coerce(array: pa.Array | pa.ChunkedArray, spec: ColumnSpec) -> pa.Array:
    """Cast one result array to the declared type of ``spec`` (safe casts; errors name the column)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    typ = array.type
    if pa.types.is_dictionary(typ):
        array = array.dictionary_decode()
        typ = array.type
    try:
        if spec.kind == "str":
            if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
                return format_timestamps(array)
            if pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
                return pc.cast(array, pa.string())
            if pa.types.is_string(typ):
                return array
            if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
                return pc.cast(array, pa.string())
            if pa.types.is_boolean(typ):
                return pc.if_else(array, "T", "F")
            return pc.cast(array, pa.string())
        if spec.kind == "array":
            if pa.types.is_fixed_size_list(typ) or pa.types.is_large_list(typ) or pa.types.is_list_view(typ):
                array = pc.cast(array, pa.list_(typ.value_type))
                typ = array.type
            if pa.types.is_null(typ):
                return pa.nulls(len(array), pa.list_(spec.arrow_type.value_type))
            if not pa.types.is_list(typ):
                raise TypeError(f"expected an array value, got Arrow type {typ}")
            if typ.value_type != spec.arrow_type.value_type:
                array = pc.cast(array, pa.list_(spec.arrow_type.value_type))
            return array
        if typ == spec.arrow_type:
            return array
        return pc.cast(array, spec.arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError) as exc:
        declared = spec.column.datatype + (f"[{spec.column.arraysize}]" if spec.column.arraysize else "")
        raise ValueError(
            f"column {spec.name!r}: cannot write {typ} values as VOTable {declared}: {exc}"
        ) from None


def ascii_for_binary(array: pa.Array, spec: ColumnSpec) -> pa.Array:
    """The text of a ``char`` column as BINARY2 may carry it (see the module docstring)."""
    return array if spec.unicode else _ascii_only(array)


def unique_names(names: Sequence[str]) -> list[str]:
    """Names made unique by suffixing ``_2``, ``_3`` … to later duplicates (exact spelling kept otherwise)."""
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate = name or "col"
        n = 1
        while candidate in seen:
            n += 1
            candidate = f"{name or 'col'}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out
