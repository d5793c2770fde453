"""TAP parameter parsing: case-insensitive names, unknown ones ignored, LANG/MAXREC/UPLOAD checks."""

from __future__ import annotations

import pytest

from pachon.services.tap.exceptions import ParameterError
from pachon.services.tap.models.params import TapParams, normalise


def parse(*pairs: tuple[str, str]) -> TapParams:
    return TapParams.from_mapping(normalise(pairs))


def test_names_are_case_insensitive_and_unknown_ignored() -> None:
    p = parse(
        ("REQUEST", "doQuery"),
        ("lang", "ADQL"),
        ("Query", "SELECT 1"),
        ("tapclient", "aq"),
        ("FORMAT", "votable_plain"),
        ("MaxRec", "10"),
        ("RUNID", "x" * 100),
    )
    assert p.lang == "ADQL" and p.query == "SELECT 1"
    assert p.responseformat == "votable_plain"
    assert p.maxrec == 10
    assert p.runid == "x" * 64


def test_responseformat_wins_over_format() -> None:
    p = parse(("LANG", "ADQL"), ("QUERY", "q"), ("FORMAT", "csv"), ("RESPONSEFORMAT", "tsv"))
    assert p.responseformat == "tsv"


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        ((("QUERY", "q"),), "missing parameter LANG"),
        ((("LANG", "SQL"), ("QUERY", "q")), "unknown query language"),
        ((("LANG", "ADQL"),), "missing parameter QUERY"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("MAXREC", "many")), "not an integer"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("MAXREC", "-1")), "negative"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("UPLOAD", "1bad,param:x")), "must start with a letter"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("UPLOAD", "t,ftp://x")), "supported are"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("UPLOAD", "t")), "is not 'name,uri'"),
        ((("LANG", "ADQL"), ("QUERY", "q"), ("UPLOAD", "t,param:a;T,param:b")), "given twice"),
    ],
)
def test_bad_parameters_are_explained(pairs: tuple[tuple[str, str], ...], fragment: str) -> None:
    with pytest.raises(ParameterError, match=fragment):
        parse(*pairs)


def test_uploads_accumulate() -> None:
    p = parse(
        ("LANG", "ADQL-2.1"),
        ("QUERY", "q"),
        ("UPLOAD", "a,param:a;b,https://example.org/t.xml"),
        ("upload", "c,param:part"),
    )
    assert [(u.name, u.uri) for u in p.uploads] == [
        ("a", "param:a"),
        ("b", "https://example.org/t.xml"),
        ("c", "param:part"),
    ]
    assert p.uploads[2].inline_part == "part"
    assert p.uploads[1].inline_part is None
