"""Vectorised text of result cells, shared by TABLEDATA, CSV, TSV and HTML.

Each function maps a whole Arrow array to an Arrow string array in C++ (``pyarrow.compute``),
so a batch of 100k rows turns into text without a Python loop; the writers then glue the
columns into rows with one ``binary_join_element_wise`` call and take the string buffer
as the output bytes.

Numbers use Arrow's shortest round-trip representation (``0.1`` stays ``0.1``, a float32
``0.1`` is ``0.1`` rather than ``0.10000000149011612``), so values read back exactly.
Not-a-number and infinities are spelled as VOTable's TABLEDATA does (``NaN``, ``+Inf``,
``-Inf``), which astropy, pandas and STIL all read in CSV too. Arrays (DALI geometry) are
space-separated numbers (DALI §3.3).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .types import ColumnSpec

__all__ = ["cell_text", "concat_strings", "csv_quote", "join_rows", "tsv_clean", "xml_escape"]

_XML_SPECIAL = r"[&<>\x00-\x08\x0b\x0c\x0d\x0e-\x1f]"
_XML_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def number_text(array: pa.Array) -> pa.Array:
    """Shortest round-trip text of numbers; NaN/inf as ``NaN``/``+Inf``/``-Inf``; nulls stay null."""
    text = pc.cast(array, pa.string())
    if pa.types.is_floating(array.type) and len(array):
        specials = pc.fill_null(pc.is_nan(array), False)
        infinite = pc.fill_null(pc.is_inf(array), False)
        if pc.any(specials).as_py() or pc.any(infinite).as_py():
            text = pc.replace_substring(text, pattern="nan", replacement="NaN")
            text = pc.replace_substring(text, pattern="inf", replacement="Inf")
            text = pc.if_else(pc.equal(text, "Inf"), "+Inf", text)
    return text


def _array_text(array: pa.Array) -> pa.Array:
    """Space-separated numbers of a list array (null lists stay null)."""
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(array)
    flat_text = pc.fill_null(number_text(flat), "NaN")
    offsets = np.zeros(len(array) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    mask = array.is_null() if array.null_count else None
    lists = pa.ListArray.from_arrays(pa.array(offsets), flat_text, mask=mask)
    return pc.binary_join(lists, " ")


def cell_text(array: pa.Array, spec: ColumnSpec, *, true: str = "T", false: str = "F") -> pa.Array:
    """Text of one coerced column (see :func:`~.types.coerce`); nulls stay null."""
    if spec.kind == "bool":
        return pc.if_else(array, true, false)
    if spec.kind == "num":
        return number_text(array)
    if spec.kind == "array":
        text = _array_text(array)
        if spec.count is not None and array.null_count:
            # A fixed-size null (a point, a circle) is all-NaN in DALI terms; an empty cell
            # would not have the declared number of elements (votlint E08).
            filler = " ".join(["NaN" if spec.column.datatype in ("float", "double") else "0"] * spec.count)
            text = pc.fill_null(text, filler)
        return text
    return array


def _needs(array: pa.Array, pattern: str) -> bool:
    return bool(len(array)) and bool(pc.any(pc.match_substring_regex(array, pattern=pattern)).as_py())


def xml_escape(array: pa.Array) -> pa.Array:
    """Escape ``& < >`` and drop characters XML 1.0 forbids (they are replaced by ``?``); CR kept as ``&#13;``."""
    if not _needs(array, _XML_SPECIAL):
        return array
    array = pc.replace_substring(array, pattern="&", replacement="&amp;")
    array = pc.replace_substring(array, pattern="<", replacement="&lt;")
    array = pc.replace_substring(array, pattern=">", replacement="&gt;")
    array = pc.replace_substring(array, pattern="\r", replacement="&#13;")
    return pc.replace_substring_regex(array, pattern=_XML_CONTROL, replacement="?")


def csv_quote(array: pa.Array, delimiter: str = ",") -> pa.Array:
    """RFC 4180 quoting: values holding the delimiter, a quote or a line break are quoted, quotes doubled."""
    pattern = '["\r\n' + ("\\t" if delimiter == "\t" else delimiter) + "]"
    if not _needs(array, pattern):
        return array
    quoted = pc.binary_join_element_wise(
        '"', pc.replace_substring(array, pattern='"', replacement='""'), '"', ""
    )
    return pc.if_else(pc.match_substring_regex(array, pattern=pattern), quoted, array)


def tsv_clean(array: pa.Array) -> pa.Array:
    """IANA text/tab-separated-values has no quoting: tabs and line breaks become spaces."""
    if not _needs(array, r"[\t\r\n]"):
        return array
    return pc.replace_substring_regex(array, pattern=r"[\t\r\n]", replacement=" ")


def join_rows(cells: list[pa.Array], *, start: str, sep: str, end: str) -> pa.Array:
    """One string per row: ``start + c1 + sep + c2 … + end``, nulls written as empty cells."""
    parts: list[pa.Array | str] = [start]
    for i, cell in enumerate(cells):
        if i:
            parts.append(sep)
        parts.append(cell)
    parts.append(end)
    return pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")


def concat_strings(array: pa.Array) -> bytes:
    """All values of a string array back to back, straight from its data buffer."""
    if len(array) == 0:
        return b""
    if pa.types.is_large_string(array.type):
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)
    else:
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)
    start = int(offsets[array.offset])
    stop = int(offsets[array.offset + len(array)])
    data = array.buffers()[2]
    if data is None or stop == start:
        return b""
    return data.to_pybytes()[start:stop] if start or stop != data.size else data.to_pybytes()
