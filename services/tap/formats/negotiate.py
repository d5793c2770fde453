"""RESPONSEFORMAT negotiation and the list of output formats for TAPRegExt capabilities.

Accepted values (case-insensitive; DALI §3.3 short forms, MIME types with parameters, and
the spellings real clients send):

============================  ============================================  =====================
value                         writes                                        Content-Type
============================  ============================================  =====================
(none), ``votable``           VOTable BINARY2 (TABLEDATA with polygons*)  ``application/x-votable+xml``
``binary2``, ``votable/b2``   VOTable BINARY2                               ``…+xml;serialization=BINARY2``
``application/x-votable+xml`` as ``votable`` (or ``;serialization=…``)      as asked
``text/xml``                  as ``votable``                                ``text/xml`` (as asked)
``votable/td``, ``votabletd``, VOTable TABLEDATA                            ``application/x-votable+xml;serialization=TABLEDATA``
``votable_plain``, ``tabledata``
``csv``, ``text/csv``         CSV with header                               ``text/csv;header=present``
``tsv``, ``text/tab-separated-values``  TSV                                 ``text/tab-separated-values``
``parquet``, ``application/vnd.apache.parquet``  Parquet                    ``application/vnd.apache.parquet``
``fits``, ``application/fits``, ``image/fits``  FITS binary table           ``application/fits``
``html``, ``text/html``       HTML table                                    ``text/html;charset=utf-8``
============================  ============================================  =====================

(*) STILTS 3.4.7's votlint, which taplint runs on every result, misreads variable-length
``xtype="polygon"`` arrays in BINARY2 (see :func:`.votable.write_votable`); a plain
``votable`` request is free to use TABLEDATA then, an explicit BINARY2 request is not.

When a client asks by MIME type, the Content-Type echoes exactly what it asked (TAP 1.1
§2.7.1: a client asking for ``text/xml`` gets ``text/xml``). VOTable BINARY (without null
flags) is not offered: BINARY2 supersedes it, every current client reads BINARY2, and
BINARY cannot represent a null integer without inventing sentinel values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from pachon.core.catalog.model import ColumnInfo

from . import tables, text, votable
from .errors import FormatError
from .types import ResultMeta, StatusCallback

__all__ = [
    "DEFAULT_FORMAT",
    "OUTPUT_FORMATS",
    "FormatCapability",
    "OutputFormat",
    "Writer",
    "capability_formats",
    "negotiate",
]

Writer = Callable[..., Iterator[bytes]]
"""``writer(columns, batches, *, status=None, meta=None) -> Iterator[bytes]``."""

_VOTABLE_MIME = "application/x-votable+xml"


@dataclass(frozen=True)
class OutputFormat:
    """A negotiated output format: the Content-Type to send, a file suffix and the writer.

    ``name`` is the canonical short form (``votable``, ``votable/td``, ``csv``, …);
    ``is_votable`` tells the caller that errors and overflow travel inside the document.
    """

    name: str
    mime: str
    extension: str
    writer: Writer
    is_votable: bool = False

    def write(
        self,
        columns: Sequence[ColumnInfo],
        batches: Iterable[pa.RecordBatch],
        *,
        status: StatusCallback | None = None,
        meta: ResultMeta | None = None,
    ) -> Iterator[bytes]:
        """Stream the result in this format (see the writer's docstring for status and errors)."""
        return self.writer(columns, batches, status=status, meta=meta)


@dataclass(frozen=True)
class FormatCapability:
    """One ``<outputFormat>`` of TAPRegExt: MIME type, aliases, and the standard ivo-id if any."""

    mime: str
    aliases: tuple[str, ...]
    ivo_id: str | None = None


VOTABLE = OutputFormat("votable", _VOTABLE_MIME, "xml", votable.write_votable, True)
BINARY2 = OutputFormat(
    "votable/b2", _VOTABLE_MIME + ";serialization=BINARY2", "xml", votable.write_binary2, True
)
TABLEDATA = OutputFormat(
    "votable/td", _VOTABLE_MIME + ";serialization=TABLEDATA", "xml", votable.write_tabledata, True
)
CSV = OutputFormat("csv", "text/csv;header=present", "csv", text.write_csv)
TSV = OutputFormat("tsv", "text/tab-separated-values", "tsv", text.write_tsv)
PARQUET = OutputFormat("parquet", "application/vnd.apache.parquet", "parquet", tables.write_parquet)
FITS = OutputFormat("fits", "application/fits", "fits", tables.write_fits)
HTML = OutputFormat("html", "text/html;charset=utf-8", "html", text.write_html)

DEFAULT_FORMAT = VOTABLE
OUTPUT_FORMATS: tuple[OutputFormat, ...] = (VOTABLE, BINARY2, TABLEDATA, CSV, TSV, PARQUET, FITS, HTML)

_SHORT: dict[str, OutputFormat] = {
    "votable": VOTABLE,
    "binary2": BINARY2,
    "votable/b2": BINARY2,
    "votable/binary2": BINARY2,
    "votable2": BINARY2,
    "votable/td": TABLEDATA,
    "votabletd": TABLEDATA,
    "votable_td": TABLEDATA,
    "votable_plain": TABLEDATA,
    "tabledata": TABLEDATA,
    "csv": CSV,
    "tsv": TSV,
    "parquet": PARQUET,
    "fits": FITS,
    "html": HTML,
}
_MIME: dict[str, OutputFormat] = {
    _VOTABLE_MIME: VOTABLE,
    "application/x-votable": VOTABLE,
    "application/votable+xml": VOTABLE,
    "text/xml": VOTABLE,
    "application/xml": VOTABLE,
    "text/csv": CSV,
    "text/tab-separated-values": TSV,
    "application/vnd.apache.parquet": PARQUET,
    "application/x-parquet": PARQUET,
    "application/fits": FITS,
    "image/fits": FITS,
    "text/html": HTML,
}
_SERIALIZATIONS = {"binary2": BINARY2, "tabledata": TABLEDATA}
_HEADER_SAFE = re.compile(r"^[\x20-\x7e]+$")

_CAPABILITIES = (
    FormatCapability(
        _VOTABLE_MIME,
        ("votable", "binary2", "votable/b2"),
        "ivo://ivoa.net/std/TAPRegExt#output-votable-binary2",
    ),
    FormatCapability(
        _VOTABLE_MIME + ";serialization=TABLEDATA",
        ("votable/td", "votabletd", "votable_plain"),
        "ivo://ivoa.net/std/TAPRegExt#output-votable-td",
    ),
    FormatCapability("text/csv;header=present", ("csv",)),
    FormatCapability("text/tab-separated-values", ("tsv",)),
    FormatCapability("application/vnd.apache.parquet", ("parquet",)),
    FormatCapability("application/fits", ("fits",)),
    FormatCapability("text/html", ("html",)),
)


def capability_formats() -> list[FormatCapability]:
    """The ``<outputFormat>`` entries of the TAP capability, default (BINARY2) first."""
    return list(_CAPABILITIES)


def _known() -> str:
    return ", ".join(sorted(_SHORT)) + ", or a MIME type such as " + ", ".join(sorted(_MIME))


def negotiate(responseformat: str | None) -> OutputFormat:
    """The output format for a RESPONSEFORMAT (or legacy FORMAT) value; ``None``/empty → VOTable BINARY2.

    >>> negotiate("text/xml").mime
    'text/xml'
    >>> negotiate("votable_plain").name
    'votable/td'

    Raises :class:`~.errors.FormatError` naming the accepted values for anything else.
    """
    if responseformat is None or not responseformat.strip():
        return DEFAULT_FORMAT
    asked = responseformat.strip()
    key = asked.lower()
    if key in _SHORT:
        return _SHORT[key]
    base, _, params = key.partition(";")
    base = base.strip()
    fmt = _MIME.get(base)
    if fmt is None:
        raise FormatError(f"RESPONSEFORMAT={asked!r} is not offered by this service; use one of {_known()}")
    if fmt.is_votable:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip() == "serialization":
                chosen = _SERIALIZATIONS.get(value.strip().strip('"'))
                if chosen is None:
                    raise FormatError(
                        f"RESPONSEFORMAT={asked!r}: VOTable serialization {value.strip()!r} is not offered; "
                        "use serialization=BINARY2 or serialization=TABLEDATA"
                    )
                fmt = chosen
    mime = asked if _HEADER_SAFE.match(asked) else fmt.mime
    return replace(fmt, mime=mime)
