"""CSV (``text/csv;header=present``), TSV (``text/tab-separated-values``) and a small HTML table.

These formats have no in-band status: an OVERFLOW cannot be signalled (DALI says so; the
client asked for it), and an error after the first byte raises
:class:`~.errors.ResultStreamError` at the end of the stream so the HTTP transfer is
aborted instead of ending like a complete, shorter table. Before the first byte, errors
propagate as they are (the service then answers with a VOTable error document).

CSV follows RFC 4180 (CRLF line ends, quoting only where needed, header line of column
names); nulls are empty cells, booleans ``true``/``false``, geometry arrays
space-separated numbers (DALI), timestamps ISO 8601.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Iterator, Sequence

import pyarrow as pa

from pachon.core.catalog.model import ColumnInfo

from .cells import cell_text, concat_strings, csv_quote, join_rows, tsv_clean, xml_escape
from .errors import ResultStreamError
from .types import ColumnSpec, ResultMeta, StatusCallback, coerce, column_specs, unique_names
from .votable import closing_source

__all__ = ["write_csv", "write_html", "write_tsv"]


def _arrays(batch: pa.RecordBatch, specs: Sequence[ColumnSpec]) -> list[pa.Array]:
    if batch.num_columns != len(specs):
        raise ValueError(f"the result batch has {batch.num_columns} columns but {len(specs)} were declared")
    return [coerce(batch.column(i), spec) for i, spec in enumerate(specs)]


def _stream_rows(
    batches: Iterable[pa.RecordBatch],
    specs: Sequence[ColumnSpec],
    status: StatusCallback | None,
    encode: Callable[[list[pa.Array]], bytes],
    head: bytes,
    tail: Callable[[], bytes] | None = None,
) -> Iterator[bytes]:
    """Yield ``head`` with the first rows, then rows, then ``tail()``.

    The head waits for the first batch, so a failure before any row propagates unchanged
    (the service can still answer with a VOTable error document); once bytes are out, a
    failure becomes :class:`ResultStreamError`.
    """
    return closing_source(batches, lambda iterator: _rows(iterator, specs, status, encode, head, tail))


def _rows(
    iterator: Iterator[pa.RecordBatch],
    specs: Sequence[ColumnSpec],
    status: StatusCallback | None,
    encode: Callable[[list[pa.Array]], bytes],
    head: bytes,
    tail: Callable[[], bytes] | None,
) -> Iterator[bytes]:
    started = False
    while True:
        try:
            batch = next(iterator, None)
            if batch is None:
                break
            if not batch.num_rows:
                continue
            chunk = encode(_arrays(batch, specs))
        except Exception as exc:
            if not started:
                raise
            raise ResultStreamError(f"the result failed after output had started: {exc}") from exc
        if not started:
            chunk = head + chunk
            started = True
        yield chunk
    final = status() if status is not None else ("OK", None)
    if final[0] == "ERROR":
        raise ResultStreamError(final[1] or "the query failed after output had started")
    end = tail() if tail is not None else b""
    if not started:
        yield head + end
    elif end:
        yield end


class _RowEncoder:
    def __init__(self, specs: Sequence[ColumnSpec], delimiter: str) -> None:
        self.specs = specs
        self.delimiter = delimiter

    def __call__(self, arrays: list[pa.Array]) -> bytes:
        cells = []
        for array, spec in zip(arrays, self.specs, strict=True):
            text = cell_text(array, spec, true="true", false="false")
            if spec.kind == "str":
                text = tsv_clean(text) if self.delimiter == "\t" else csv_quote(text, self.delimiter)
            cells.append(text)
        end = "\n" if self.delimiter == "\t" else "\r\n"
        return concat_strings(join_rows(cells, start="", sep=self.delimiter, end=end))


def _header(names: Sequence[str], delimiter: str) -> bytes:
    if delimiter == "\t":
        text = "\t".join(n.replace("\t", " ").replace("\n", " ").replace("\r", " ") for n in names) + "\n"
    else:
        quoted = []
        for name in names:
            if any(c in name for c in ',"\r\n'):
                name = '"' + name.replace('"', '""') + '"'
            quoted.append(name)
        text = ",".join(quoted) + "\r\n"
    return text.encode("utf-8")


def _delimited(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    delimiter: str,
    status: StatusCallback | None,
) -> Iterator[bytes]:
    specs = column_specs(columns)
    head = _header(unique_names([s.name for s in specs]), delimiter)
    yield from _stream_rows(batches, specs, status, _RowEncoder(specs, delimiter), head)


def write_csv(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    *,
    status: StatusCallback | None = None,
    meta: ResultMeta | None = None,
) -> Iterator[bytes]:
    """Stream RFC 4180 CSV with a header line (``text/csv;header=present``)."""
    return _delimited(columns, batches, ",", status)


def write_tsv(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    *,
    status: StatusCallback | None = None,
    meta: ResultMeta | None = None,
) -> Iterator[bytes]:
    """Stream tab-separated values with a header line (tabs/newlines inside values become spaces)."""
    return _delimited(columns, batches, "\t", status)


class _HtmlEncoder:
    def __init__(self, specs: Sequence[ColumnSpec]) -> None:
        self.specs = specs

    def __call__(self, arrays: list[pa.Array]) -> bytes:
        cells = [
            xml_escape(cell_text(a, s, true="true", false="false"))
            for a, s in zip(arrays, self.specs, strict=False)
        ]
        return concat_strings(join_rows(cells, start="<tr><td>", sep="</td><td>", end="</td></tr>\n"))


def write_html(
    columns: Sequence[ColumnInfo],
    batches: Iterable[pa.RecordBatch],
    *,
    status: StatusCallback | None = None,
    meta: ResultMeta | None = None,
) -> Iterator[bytes]:
    """Stream a minimal HTML page holding the result as a table (units in the header)."""
    specs = column_specs(columns)
    heads = []
    for name, spec in zip(unique_names([s.name for s in specs]), specs, strict=True):
        unit = f" [{html.escape(spec.column.unit)}]" if spec.column.unit else ""
        title = f' title="{html.escape(spec.column.description)}"' if spec.column.description else ""
        heads.append(f"<th{title}>{html.escape(name)}{unit}</th>")
    query = meta.query if meta is not None else None
    caption = f"<caption><code>{html.escape(query)}</code></caption>\n" if query else ""
    head = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>TAP result</title></head><body>\n'
        f"<table>\n{caption}<thead><tr>{''.join(heads)}</tr></thead>\n<tbody>\n"
    ).encode()

    def tail() -> bytes:
        final = status() if status is not None else ("OK", None)
        note = ""
        if final[0] == "OVERFLOW":
            note = f"<p>{html.escape(final[1] or 'The result was truncated (OVERFLOW).')}</p>\n"
        return f"</tbody>\n</table>\n{note}</body></html>\n".encode()

    yield from _stream_rows(batches, specs, status, _HtmlEncoder(specs), head, tail)
