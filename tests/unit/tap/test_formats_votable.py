"""VOTable result writers: exact round-trips through astropy and pyvo, status INFOs, votlint."""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import re
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from astropy.io.votable import parse

from pachon.core.catalog.model import ColumnInfo
from pachon.services.tap.formats import (
    ResultMeta,
    error_votable,
    metadata_votable,
    negotiate,
    write_binary2,
    write_tabledata,
)
from pachon.services.tap.formats.votable import write_votable

COLUMNS = [
    ColumnInfo("objectId", "long", ucd="meta.id;meta.main", description="Unique id & <key>"),
    ColumnInfo("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main"),
    ColumnInfo("g_mag", "float", unit="mag"),
    ColumnInfo("flag", "boolean"),
    ColumnInfo("band", "char", arraysize="*"),
    ColumnInfo("pos", "double", arraysize="2", xtype="point", unit="deg"),
    ColumnInfo("circ", "double", arraysize="3", xtype="circle", unit="deg"),
    ColumnInfo("obs_time", "char", arraysize="*", xtype="timestamp"),
    ColumnInfo("label", "unicodeChar", arraysize="*"),
    ColumnInfo("nexp", "short"),
    ColumnInfo("quality", "unsignedByte"),
    ColumnInfo("ccd", "int"),
    ColumnInfo("code", "char", arraysize="4"),
    ColumnInfo("samples", "float", arraysize="*"),
    ColumnInfo("my col", "int"),  # a delimited name: ID must still be an NCName
    ColumnInfo("2mass", "double"),
]

T0 = dt.datetime(2025, 6, 1, 3, 4, 5, 123000)


def sample_batch() -> pa.RecordBatch:
    arrays = [
        pa.array([1, None, 2**62, -5]),
        pa.array([10.123456789012345, None, float("nan"), -0.0]),
        pa.array([0.1, None, float("inf"), 25.5], pa.float32()),
        pa.array([True, None, False, True]),
        pa.array(["g", None, "", "a<b&c>\"'"]),
        pa.array([[1.5, -2.25], None, [359.9, 89.9], [0.0, 0.0]], pa.list_(pa.float64(), 2)),
        pa.array([[10.0, 20.0, 0.5], None, [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
        pa.array(
            [T0, None, dt.datetime(2020, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59)], pa.timestamp("us")
        ),
        pa.array(["Ñandú €", None, "", "plain"]),
        pa.array([1, None, -32768, 32767], pa.int16()),
        pa.array([0, None, 255, 7], pa.uint8()),
        pa.array([-(2**31), None, 2**31 - 1, 0], pa.int32()),
        pa.array(["abcd", "ab", None, ""]),
        pa.array([[1.0, 2.0, 3.0], None, [], [float("nan")]], pa.list_(pa.float32())),
        pa.array([1, 2, None, 4], pa.int32()),
        pa.array([1.0, 2.0, 3.0, None]),
    ]
    return pa.record_batch(arrays, names=[c.name for c in COLUMNS])


def read_votable(doc: bytes):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any astropy spec warning fails the test
        return parse(io.BytesIO(doc))


def check_values(table) -> None:
    """Every value, null and type as written by :func:`sample_batch` (twice over two batches)."""
    rows = table.array
    assert len(rows) == 8
    assert table.fields[0].datatype == "long" and rows["objectId"].dtype == np.int64
    assert rows["objectId"][:4].tolist() == [1, None, 2**62, -5]
    assert rows["ra"][0] == 10.123456789012345 and rows["ra"].mask[1]
    assert np.isnan(rows["ra"].data[2]) and math.copysign(1, rows["ra"][3]) == -1.0
    assert rows["g_mag"].dtype == np.float32 and rows["g_mag"][0] == np.float32(0.1)
    assert np.isinf(rows["g_mag"][2]) and rows["g_mag"].mask[1]
    assert rows["flag"][:4].tolist() == [True, None, False, True]
    assert rows["band"][0] == "g" and rows["band"][2] == "" and rows["band"][3] == "a<b&c>\"'"
    assert rows["pos"].data[0].tolist() == [1.5, -2.25] and rows["pos"].data[2].tolist() == [359.9, 89.9]
    assert rows["pos"].mask[1].all()
    assert rows["circ"].data[2].tolist() == [1.0, 2.0, 3.0]
    assert rows["obs_time"][0] == "2025-06-01T03:04:05.123"
    assert rows["obs_time"][2] == "2020-01-01T00:00:00" and rows["obs_time"][3] == "1999-12-31T23:59:59"
    assert rows["label"][0] == "Ñandú €"
    assert rows["nexp"].dtype == np.int16 and rows["nexp"][:4].tolist() == [1, None, -32768, 32767]
    assert rows["quality"].dtype == np.uint8 and rows["quality"][2] == 255
    assert rows["ccd"].dtype == np.int32 and rows["ccd"][:4].tolist() == [-(2**31), None, 2**31 - 1, 0]
    assert rows["code"][0] == "abcd" and rows["code"][1] == "ab"
    assert list(rows["samples"][0]) == [1.0, 2.0, 3.0] and len(rows["samples"][2]) == 0
    assert rows["my col"][:4].tolist() == [1, 2, None, 4]
    assert rows["2mass"].mask[3]
    assert rows["objectId"][4:].tolist() == rows["objectId"][:4].tolist()


@pytest.mark.parametrize("writer", [write_binary2, write_tabledata], ids=["binary2", "tabledata"])
def test_round_trip_through_astropy(writer) -> None:
    doc = b"".join(writer(COLUMNS, [sample_batch(), sample_batch()], meta=ResultMeta(query="SELECT 1")))
    votable = read_votable(doc)
    resource = votable.resources[0]
    assert resource.type == "results"
    assert [(i.name, i.value) for i in resource.infos][:3] == [
        ("QUERY_STATUS", "OK"),
        ("standardID", "ivo://ivoa.net/std/TAP"),
        ("QUERY", "SELECT 1"),
    ]
    table = resource.tables[0]
    check_values(table)
    by_name = {f.name: f for f in table.fields}
    assert by_name["ra"].unit == "deg" and by_name["ra"].ucd == "pos.eq.ra;meta.main"
    assert by_name["pos"].xtype == "point" and by_name["pos"].arraysize == "2"
    assert by_name["obs_time"].xtype == "timestamp"
    assert by_name["objectId"].description == "Unique id & <key>"
    assert by_name["my col"].ID == "my_col" and by_name["2mass"].ID == "_2mass"


def test_pyvo_reads_results_and_status() -> None:
    from pyvo.dal import TAPResults

    doc = b"".join(write_binary2(COLUMNS, [sample_batch()], status=lambda: ("OVERFLOW", "cut at 4")))
    results = TAPResults(parse(io.BytesIO(doc)))
    assert results.query_status == "OVERFLOW"
    table = results.to_table()
    assert len(table) == 4 and table["objectId"][2] == 2**62 and table["label"][0] == "Ñandú €"


def test_binary2_layout_null_flags_and_line_wrapping() -> None:
    columns = [ColumnInfo("a", "int"), ColumnInfo("b", "double")]
    batch = pa.record_batch([pa.array([1, None]), pa.array([None, 2.5])], names=["a", "b"])
    doc = b"".join(write_binary2(columns, [batch])).decode()
    stream = re.search(r'<STREAM encoding="base64">\n(.*?)</STREAM>', doc, re.S)
    assert stream is not None
    raw = base64.b64decode(stream.group(1))
    # row 1: flags 0b01000000 (b null), int 1, NaN; row 2: flags 0b10000000 (a null), int 0, 2.5
    assert raw == (
        b"\x40"
        + (1).to_bytes(4, "big")
        + np.array([np.nan], ">f8").tobytes()
        + b"\x80"
        + (0).to_bytes(4, "big")
        + np.array([2.5], ">f8").tobytes()
    )
    big = pa.record_batch([pa.array(range(1000)), pa.array(np.arange(1000.0))], names=["a", "b"])
    small = pa.record_batch([pa.array([7]), pa.array([7.0])], names=["a", "b"])
    doc = b"".join(write_binary2(columns, [small, big, small, big])).decode()
    body = re.search(r'<STREAM encoding="base64">\n(.*?)</STREAM>', doc, re.S).group(1)  # type: ignore[union-attr]
    lines = body.splitlines()
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    table = read_votable(doc.encode()).get_first_table().array
    assert table["a"].tolist() == [7, *range(1000), 7, *range(1000)]


def test_overflow_trailer_after_table() -> None:
    doc = b"".join(
        write_tabledata(COLUMNS, [sample_batch()], status=lambda: ("OVERFLOW", "MAXREC=4"))
    ).decode()
    assert (
        doc.index('value="OK"') < doc.index("<TABLE") < doc.index("</TABLE>") < doc.index('value="OVERFLOW"')
    )
    assert doc.count("QUERY_STATUS") == 2 and doc.count("<VOTABLE") == 1


def test_error_mid_stream_ends_the_same_document() -> None:
    def failing():
        yield sample_batch()
        raise RuntimeError("database connection lost\nwith details")

    for writer in (write_binary2, write_tabledata):
        doc = b"".join(writer(COLUMNS, failing()))
        text = doc.decode()
        assert text.count("<VOTABLE") == 1 and text.rstrip().endswith("</VOTABLE>")
        votable = read_votable(doc)
        infos = votable.resources[0].infos
        assert infos[-1].name == "QUERY_STATUS" and infos[-1].value == "ERROR"
        assert infos[-1].content == "database connection lost"
        assert len(votable.get_first_table().array) == 4


def test_error_status_from_caller_and_before_first_row() -> None:
    doc = b"".join(write_binary2(COLUMNS, [sample_batch()], status=lambda: ("ERROR", "timeout after 60 s")))
    assert read_votable(doc).resources[0].infos[-1].content == "timeout after 60 s"

    def at_once():
        raise ValueError("no such table dp1.foo")
        yield  # pragma: no cover

    doc = b"".join(write_binary2(COLUMNS, at_once()))
    infos = read_votable(doc).resources[0].infos
    assert [(i.value, i.content) for i in infos if i.name == "QUERY_STATUS"] == [
        ("ERROR", "no such table dp1.foo")
    ]


def test_type_mismatch_becomes_error_trailer() -> None:
    columns = [ColumnInfo("n", "int")]
    ok = pa.record_batch([pa.array([1], pa.int64())], names=["n"])
    too_big = pa.record_batch([pa.array([2**40], pa.int64())], names=["n"])
    doc = b"".join(write_binary2(columns, [ok, too_big]))
    info = read_votable(doc).resources[0].infos[-1]
    assert info.value == "ERROR" and "'n'" in info.content


def test_empty_result_and_maxrec_zero() -> None:
    for writer in (write_binary2, write_tabledata):
        doc = b"".join(writer(COLUMNS, [], status=lambda: ("OVERFLOW", "MAXREC=0")))
        votable = read_votable(doc)
        statuses = [i.value for i in votable.resources[0].infos if i.name == "QUERY_STATUS"]
        assert statuses == ["OVERFLOW"]
        table = votable.get_first_table()
        assert len(table.array) == 0 and [f.name for f in table.fields] == [c.name for c in COLUMNS]
        doc = b"".join(
            writer(
                COLUMNS,
                [
                    pa.record_batch(
                        [pa.array([], f.type) for f in sample_batch().schema], schema=sample_batch().schema
                    )
                ],
            )
        )
        assert [i.value for i in read_votable(doc).resources[0].infos if i.name == "QUERY_STATUS"] == ["OK"]
    meta_doc = metadata_votable(COLUMNS, meta=ResultMeta(query="SELECT * FROM t"))
    votable = read_votable(meta_doc)
    assert votable.resources[0].infos[0].value == "OVERFLOW"
    assert len(votable.get_first_table().fields) == len(COLUMNS)


def test_error_document() -> None:
    doc = error_votable('no table "x" & <y>\nsecond line', query="SELECT * FROM x")
    votable = read_votable(doc)
    resource = votable.resources[0]
    assert resource.type == "results" and not resource.tables
    assert resource.infos[0].value == "ERROR" and resource.infos[0].content.startswith('no table "x" & <y>')
    assert [i.value for i in resource.infos if i.name == "QUERY"] == ["SELECT * FROM x"]


def test_names_deduplicated_and_escaped() -> None:
    columns = [ColumnInfo("a", "int"), ColumnInfo("a", "int"), ColumnInfo('x"<&>\ty', "int")]
    batch = pa.record_batch([pa.array([1]), pa.array([2]), pa.array([3])], names=["a", "b", "c"])
    table = read_votable(b"".join(write_binary2(columns, [batch]))).get_first_table()
    assert [f.name for f in table.fields] == ["a", "a_2", 'x"<&>\ty']
    assert len({f.ID for f in table.fields}) == 3


def test_non_ascii_char_policy() -> None:
    columns = [ColumnInfo("s", "char", arraysize="*")]
    batch = pa.record_batch([pa.array(["café"])], names=["s"])
    binary = read_votable(b"".join(write_binary2(columns, [batch]))).get_first_table().array
    assert binary["s"][0] == "caf?"
    fixed = [ColumnInfo("u", "unicodeChar", arraysize="3"), ColumnInfo("c", "char", arraysize="3*")]
    sized = pa.record_batch(
        [pa.array(["αβγδ", "z", None]), pa.array(["abcdef", "é", None])], names=["u", "c"]
    )
    for writer in (write_binary2, write_tabledata):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W46: the TABLEDATA values are longer than declared
            rows = parse(io.BytesIO(b"".join(writer(fixed, [sized])))).get_first_table().array
        assert rows["u"][1] == "z" and rows["u"][0].startswith("αβγ")
        assert rows["c"][0].startswith("abc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy W55: non-ASCII in char (allowed by VOTable 1.5)
        td = parse(io.BytesIO(b"".join(write_tabledata(columns, [batch])))).get_first_table().array
    assert td["s"][0] == "café"


def test_default_votable_avoids_binary2_polygons() -> None:
    columns = [ColumnInfo("s_region", "double", arraysize="*", xtype="polygon")]
    batch = pa.record_batch([pa.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])], names=["s_region"])
    assert b"<TABLEDATA>" in b"".join(write_votable(columns, [batch]))
    assert b"<BINARY2>" in b"".join(write_votable(COLUMNS[:2], [sample_batch().select([0, 1])]))
    assert b"<BINARY2>" in b"".join(negotiate("binary2").write(columns, [batch]))


def run_votlint(stilts: str, path: Path) -> str:
    done = subprocess.run([stilts, "votlint", str(path)], capture_output=True, text=True, timeout=120)
    return (done.stdout + done.stderr).strip()


def test_votlint_clean(require, tmp_path: Path) -> None:
    stilts = require.binary("stilts", "install the Debian package stilts (scripts/system-deps)")
    meta = ResultMeta(
        query="SELECT TOP 4 * FROM t WHERE a < 1",
        request_url="http://x/tap/sync?a=1&b=2",
        citation="2025arXiv250001234P",
        params={"MAXREC": "4"},
    )
    docs = {
        "binary2.xml": b"".join(
            write_binary2(
                COLUMNS, [sample_batch(), sample_batch()], meta=meta, status=lambda: ("OVERFLOW", "cut")
            )
        ),
        "tabledata.xml": b"".join(write_tabledata(COLUMNS, [sample_batch()], meta=meta)),
        "maxrec0.xml": metadata_votable(COLUMNS, meta=meta),
        "error.xml": error_votable("it broke", query="SELECT 1"),
    }
    # One JVM for all documents: votlint reads several inputs when given a list via tpipe? It does not,
    # so each is checked on its own (about 1 s each).
    for name, doc in docs.items():
        path = tmp_path / name
        path.write_bytes(doc)
        report = run_votlint(stilts, path)
        assert report == "", f"{name}: {report}"


def _random_case(seed: int) -> tuple[list[pa.RecordBatch], dict[str, list]]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    nulls = rng.random((5, n)) < 0.2
    ints = [None if nulls[0][i] else int(v) for i, v in enumerate(rng.integers(-(2**63), 2**63 - 1, n))]
    doubles = [None if nulls[1][i] else float(v) for i, v in enumerate(rng.normal(0, 1e6, n))]
    alphabet = list("abcxyz <>&\"'é€")
    texts = [
        None if nulls[2][i] else "".join(rng.choice(alphabet, int(rng.integers(0, 12)))) for i in range(n)
    ]
    arrays = [
        None if nulls[3][i] else [float(x) for x in rng.normal(0, 10, int(rng.integers(0, 7)))]
        for i in range(n)
    ]
    flags = [None if nulls[4][i] else bool(v) for i, v in enumerate(rng.integers(0, 2, n))]
    values = {"i": ints, "d": doubles, "s": texts, "a": arrays, "b": flags}
    table = pa.table(
        {
            "i": pa.array(ints, pa.int64()),
            "d": pa.array(doubles, pa.float64()),
            "s": pa.array(texts, pa.string()),
            "a": pa.array(arrays, pa.list_(pa.float64())),
            "b": pa.array(flags, pa.bool_()),
        }
    )
    cuts = sorted(set(int(c) for c in rng.integers(0, n, int(rng.integers(0, 5)))))
    starts = [0, *cuts]
    stops = [*cuts, n]
    batches = [b for s, e in zip(starts, stops, strict=True) for b in table.slice(s, e - s).to_batches()]
    return batches, values


@pytest.mark.parametrize("seed", range(12))
def test_random_round_trip(seed: int) -> None:
    """Random values, nulls and batch splits (base64 carries, variable-length rows) read back exactly."""
    columns = [
        ColumnInfo("i", "long"),
        ColumnInfo("d", "double"),
        ColumnInfo("s", "unicodeChar", arraysize="*"),
        ColumnInfo("a", "double", arraysize="*"),
        ColumnInfo("b", "boolean"),
    ]
    batches, values = _random_case(seed)
    for writer in (write_binary2, write_tabledata):
        rows = read_votable(b"".join(writer(columns, batches))).get_first_table().array
        assert rows["i"].tolist() == values["i"]
        assert rows["d"].tolist() == values["d"]
        assert rows["b"].tolist() == values["b"]
        # VOTable has no null string distinct from "" and no null array distinct from [];
        # astropy strips the whitespace around TABLEDATA text (STIL keeps it, as XML says).
        expected = [v or "" for v in values["s"]]
        if writer is write_tabledata:
            expected = [v.strip() for v in expected]
        assert [str(x) for x in rows["s"].tolist()] == expected
        assert [list(x) for x in rows["a"].data] == [v or [] for v in values["a"]]
