"""TAP request parameters (TAP 1.1 §2.7, DALI §3), parsed once from any request shape.

Parameter names are case-insensitive and unknown ones are ignored (clients still send
TAP 1.0's ``REQUEST=doQuery``, astroquery adds ``tapclient``, ``jobname`` and
``FORMAT=votable_plain``); values keep their case. ``FORMAT`` is the legacy synonym of
``RESPONSEFORMAT``. ``UPLOAD`` accumulates over repeated parameters and over the TAP 1.0
``a,uri;b,uri`` form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel

from ..exceptions import ParameterError

__all__ = ["LANGUAGES", "TapParams", "UploadSpec", "normalise"]

LANGUAGES = ("ADQL", "ADQL-2.0", "ADQL-2.1")
_UPLOAD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class UploadSpec(BaseModel, frozen=True):
    """One ``UPLOAD=name,uri`` entry: a table name and where its data come from."""

    name: str
    uri: str

    @property
    def inline_part(self) -> str | None:
        """The multipart part name for ``param:x``, else None."""
        return self.uri[len("param:") :] if self.uri.startswith("param:") else None


class TapParams(BaseModel):
    """The parameters of one TAP query, validated."""

    lang: str
    query: str
    responseformat: str | None = None
    maxrec: int | None = None
    runid: str | None = None
    uploads: list[UploadSpec] = []

    @classmethod
    def from_mapping(cls, params: dict[str, list[str]]) -> TapParams:
        """Validate parameters given as lower-cased name → values (see :func:`normalise`)."""

        def one(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        lang = one("lang")
        query = one("query")
        if lang is None or not lang.strip():
            raise ParameterError("missing parameter LANG: send LANG=ADQL together with QUERY")
        if lang.strip().upper() not in LANGUAGES:
            raise ParameterError(
                f"unknown query language LANG={lang!r}; this service supports {', '.join(LANGUAGES)}"
            )
        if query is None or not query.strip():
            raise ParameterError("missing parameter QUERY: send the ADQL query text as QUERY=…")
        fmt = one("responseformat") or one("format")
        maxrec_text = one("maxrec")
        maxrec: int | None = None
        if maxrec_text is not None and maxrec_text.strip():
            try:
                maxrec = int(maxrec_text.strip())
            except ValueError:
                raise ParameterError(
                    f"MAXREC={maxrec_text!r} is not an integer; give the most rows to return, e.g. MAXREC=1000"
                ) from None
            if maxrec < 0:
                raise ParameterError(f"MAXREC={maxrec} is negative; give 0 (metadata only) or more")
        runid = one("runid")
        if runid is not None:
            runid = runid[:64]
        return cls(
            lang=lang.strip(),
            query=query,
            responseformat=fmt.strip() if fmt and fmt.strip() else None,
            maxrec=maxrec,
            runid=runid,
            uploads=parse_uploads(params.get("upload", [])),
        )


def parse_uploads(values: Iterable[str]) -> list[UploadSpec]:
    """Parse ``UPLOAD`` values (each ``name,uri``, or several joined by ``;``)."""
    specs: list[UploadSpec] = []
    seen: set[str] = set()
    for value in values:
        for item in value.split(";"):
            item = item.strip()
            if not item:
                continue
            name, sep, uri = item.partition(",")
            name, uri = name.strip(), uri.strip()
            if not sep or not uri:
                raise ParameterError(
                    f"UPLOAD={item!r} is not 'name,uri'; use e.g. UPLOAD=mytable,param:mytable with a "
                    "multipart part named mytable, or UPLOAD=mytable,https://host/table.xml"
                )
            if not _UPLOAD_NAME.match(name):
                raise ParameterError(
                    f"upload table name {name!r} is not allowed: it must start with a letter and hold only "
                    "letters, digits and underscores"
                )
            if not (uri.startswith(("param:", "http://", "https://"))):
                raise ParameterError(
                    f"upload {name!r} has URI {uri!r}; supported are param:PART (inline multipart) and "
                    "http(s):// URLs"
                )
            if name.lower() in seen:
                raise ParameterError(f"upload table name {name!r} is given twice")
            seen.add(name.lower())
            specs.append(UploadSpec(name=name, uri=uri))
    return specs


def normalise(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Group (name, value) pairs by lower-cased name, keeping order of values."""
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name.lower(), []).append(value)
    return out
