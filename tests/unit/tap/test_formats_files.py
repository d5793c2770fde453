"""CSV, TSV, HTML, Parquet and FITS writers read back with astropy/pyarrow; format negotiation."""

from __future__ import annotations

import datetime as dt
import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.table import Table

from pachon.core.catalog.model import ColumnInfo
from pachon.services.tap.formats import (
    DEFAULT_FORMAT,
    OUTPUT_FORMATS,
    FormatError,
    ResultMeta,
    ResultStreamError,
    capability_formats,
    negotiate,
    rows_to_batches,
    write_csv,
    write_fits,
    write_html,
    write_parquet,
    write_tsv,
)

COLUMNS = [
    ColumnInfo("objectId", "long", ucd="meta.id;meta.main"),
    ColumnInfo("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main", description="Right ascension"),
    ColumnInfo("g", "float", unit="mag"),
    ColumnInfo("flag", "boolean"),
    ColumnInfo("name", "char", arraysize="*"),
    ColumnInfo("pos", "double", arraysize="2", xtype="point", unit="deg"),
    ColumnInfo("poly", "double", arraysize="*", xtype="polygon"),
    ColumnInfo("t", "char", arraysize="*", xtype="timestamp"),
    ColumnInfo("ccd", "int"),
]


def batch() -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array([1, None, 3]),
            pa.array([0.1, 2.5, float("nan")]),
            pa.array([21.5, None, 19.25], pa.float32()),
            pa.array([True, False, None]),
            pa.array(['a,"quoted"', "line\nbreak\ttab", "Ωmega"]),
            pa.array([[1.0, 2.0], None, [3.5, -4.5]]),
            pa.array([[0.0, 0.0, 1.0, 0.0, 1.0, 1.0], None, []]),
            pa.array([dt.datetime(2025, 1, 2, 3, 4, 5), None, dt.datetime(2025, 1, 2, 3, 4, 5, 500000)]),
            pa.array([7, 8, None], pa.int32()),
        ],
        names=[c.name for c in COLUMNS],
    )


def test_csv_round_trip_with_astropy_and_pyarrow() -> None:
    data = b"".join(write_csv(COLUMNS, [batch(), batch()]))
    assert data.startswith(b"objectId,ra,g,flag,name,pos,poly,t,ccd\r\n")
    table = Table.read(data.decode(), format="ascii.csv")
    assert len(table) == 6
    assert table["objectId"][0] == 1 and table["objectId"].mask[1]
    assert table["ra"][0] == 0.1 and math.isnan(table["ra"][2])
    assert (
        table["name"][0] == 'a,"quoted"'
        and table["name"][1] == "line\nbreak\ttab"
        and table["name"][2] == "Ωmega"
    )
    assert table["pos"][0] == "1 2" and table["pos"][2] == "3.5 -4.5"
    assert table["poly"][0] == "0 0 1 0 1 1"
    assert table["t"][0] == "2025-01-02T03:04:05" and table["t"][2] == "2025-01-02T03:04:05.5"
    assert table["flag"][0] == "true" or bool(table["flag"][0]) is True
    import pyarrow.csv as pcsv

    arrow = pcsv.read_csv(io.BytesIO(data))
    assert arrow.column("g").to_pylist()[:3] == [21.5, None, 19.25]
    assert arrow.column("flag").to_pylist()[:3] == [True, False, None]


def test_tsv_has_no_tabs_or_newlines_inside_values() -> None:
    data = b"".join(write_tsv(COLUMNS, [batch()])).decode()
    lines = data.split("\n")
    assert len(lines) == 5 and lines[-1] == ""
    assert all(line.count("\t") == len(COLUMNS) - 1 for line in lines[:-1])
    table = Table.read(data, format="ascii.tab")
    assert table["name"][1] == "line break tab" and table["ccd"][0] == 7


def test_html_table_is_escaped() -> None:
    html = b"".join(
        write_html(COLUMNS, [batch()], meta=ResultMeta(query="SELECT <x>"), status=lambda: ("OVERFLOW", None))
    ).decode()
    assert '<th title="Right ascension">ra [deg]</th>' in html
    assert "SELECT &lt;x&gt;" in html and html.count("<tr><td>") == 3 and "truncated" in html


def test_parquet_keeps_types_units_and_ucds() -> None:
    data = b"".join(write_parquet(COLUMNS, [batch(), batch()], meta=ResultMeta(query="SELECT 1")))
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 6
    assert table.schema.field("objectId").type == pa.int64()
    assert table.schema.field("g").type == pa.float32()
    assert table.schema.field("ccd").type == pa.int32()
    assert pa.types.is_timestamp(table.schema.field("t").type)
    ra = table.schema.field("ra").metadata
    assert ra[b"unit"] == b"deg" and ra[b"ucd"] == b"pos.eq.ra;meta.main"
    assert ra[b"description"] == b"Right ascension"
    assert table.schema.field("pos").metadata[b"xtype"] == b"point"
    assert table.column("pos").to_pylist()[:3] == [[1.0, 2.0], None, [3.5, -4.5]]
    assert table.column("name").to_pylist()[2] == "Ωmega"
    assert table.schema.metadata[b"pachon.query"] == b"SELECT 1"


def test_parquet_streams_row_groups() -> None:
    big = pa.record_batch([pa.array(np.arange(100_000, dtype=np.int64))], names=["objectId"])
    chunks = list(write_parquet(COLUMNS[:1], [big, big, big]))
    assert len(chunks) >= 2  # the first row group left before the end
    table = pq.read_table(io.BytesIO(b"".join(chunks)))
    assert table.num_rows == 300_000


def test_empty_parquet_has_the_schema() -> None:
    table = pq.read_table(io.BytesIO(b"".join(write_parquet(COLUMNS, []))))
    assert table.num_rows == 0 and table.column_names == [c.name for c in COLUMNS]


def test_fits_binary_table() -> None:
    data = b"".join(write_fits(COLUMNS, [batch()], status=lambda: ("OVERFLOW", "cut")))
    with fits.open(io.BytesIO(data)) as hdul:
        hdu = hdul[1]
        header = hdu.header
        assert header["TUNIT2"] == "deg" and header["TUCD2"] == "pos.eq.ra;meta.main"
        assert header["TCOMM2"] == "Right ascension" and header["QSTATUS"] == "OVERFLOW"
        assert header["TNULL1"] == -(2**63)
    table = Table.read(io.BytesIO(data), format="fits")
    assert table["objectId"][0] == 1 and table["objectId"].mask[1]
    assert table["ra"].unit == "deg" and table["ra"][1] == 2.5
    assert table["g"][0] == np.float32(21.5) and np.isnan(np.ma.getdata(table["g"])[1])
    assert table["pos"][2].tolist() == [3.5, -4.5] and np.isnan(np.ma.getdata(table["pos"])[1]).all()
    assert list(table["poly"][0]) == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert table["name"][2] == "?mega"  # FITS strings are ASCII
    assert table["t"][2] == "2025-01-02T03:04:05.5"


def test_errors_after_output_abort_the_stream() -> None:
    def failing():
        yield batch()
        raise RuntimeError("lost")

    for writer in (write_csv, write_tsv, write_html):
        with pytest.raises(ResultStreamError):
            b"".join(writer(COLUMNS, failing()))
    # Nothing sent yet (Parquet holds rows until a row group is full; CSV before the first
    # row): the original error reaches the caller, which can still answer with a VOTable error.
    with pytest.raises(RuntimeError, match="lost"):
        b"".join(write_parquet(COLUMNS, failing()))

    def at_once():
        raise RuntimeError("early")
        yield  # pragma: no cover

    stream = write_csv(COLUMNS, at_once())
    with pytest.raises(RuntimeError, match="early"):
        next(stream)
    with pytest.raises(ResultStreamError, match="timeout"):
        b"".join(write_csv(COLUMNS, [batch()], status=lambda: ("ERROR", "timeout")))
    with pytest.raises(ResultStreamError):
        b"".join(write_fits(COLUMNS, [batch()], status=lambda: ("ERROR", "timeout")))


@pytest.mark.parametrize(
    ("asked", "name", "mime"),
    [
        (None, "votable", "application/x-votable+xml"),
        ("", "votable", "application/x-votable+xml"),
        ("votable", "votable", "application/x-votable+xml"),
        ("VOTable", "votable", "application/x-votable+xml"),
        ("binary2", "votable/b2", "application/x-votable+xml;serialization=BINARY2"),
        ("votable/td", "votable/td", "application/x-votable+xml;serialization=TABLEDATA"),
        ("votabletd", "votable/td", "application/x-votable+xml;serialization=TABLEDATA"),
        ("votable_plain", "votable/td", "application/x-votable+xml;serialization=TABLEDATA"),
        ("application/x-votable+xml", "votable", "application/x-votable+xml"),
        ("text/xml", "votable", "text/xml"),
        (
            "application/x-votable+xml;serialization=TABLEDATA",
            "votable/td",
            "application/x-votable+xml;serialization=TABLEDATA",
        ),
        (
            "application/x-votable+xml; serialization=binary2",
            "votable/b2",
            "application/x-votable+xml; serialization=binary2",
        ),
        ("csv", "csv", "text/csv;header=present"),
        ("text/csv", "csv", "text/csv"),
        ("tsv", "tsv", "text/tab-separated-values"),
        ("text/tab-separated-values", "tsv", "text/tab-separated-values"),
        ("parquet", "parquet", "application/vnd.apache.parquet"),
        ("application/vnd.apache.parquet", "parquet", "application/vnd.apache.parquet"),
        ("fits", "fits", "application/fits"),
        ("application/fits", "fits", "application/fits"),
        ("html", "html", "text/html;charset=utf-8"),
        ("text/html", "html", "text/html"),
    ],
)
def test_negotiate(asked: str | None, name: str, mime: str) -> None:
    fmt = negotiate(asked)
    assert (fmt.name, fmt.mime) == (name, mime)
    assert fmt.extension in ("xml", "csv", "tsv", "parquet", "fits", "html")


@pytest.mark.parametrize(
    "asked", ["json", "application/json", "votable/binary", "application/x-votable+xml;serialization=FITS"]
)
def test_negotiate_refuses_unknown(asked: str) -> None:
    with pytest.raises(FormatError) as info:
        negotiate(asked)
    assert asked in str(info.value) and ("csv" in str(info.value) or "TABLEDATA" in str(info.value))


def test_capability_formats() -> None:
    caps = capability_formats()
    assert caps[0].ivo_id == "ivo://ivoa.net/std/TAPRegExt#output-votable-binary2"
    assert caps[1].ivo_id == "ivo://ivoa.net/std/TAPRegExt#output-votable-td"
    assert {c.mime for c in caps} >= {"text/csv;header=present", "application/vnd.apache.parquet"}
    for cap in caps:  # every alias announced is accepted
        for alias in cap.aliases:
            negotiate(alias)
        negotiate(cap.mime)
    assert DEFAULT_FORMAT in OUTPUT_FORMATS


def test_rows_to_batches_from_database_rows() -> None:
    from decimal import Decimal

    rows = [
        (1, Decimal("0.5"), 1.5, True, "x", (1.0, 2.0), [1, 2, 3, 4, 5, 6], dt.datetime(2025, 1, 1), 3),
        (None, None, None, None, None, None, None, None, None),
        (3, 2, 2, False, "y", [3, 4], [], dt.datetime(2025, 1, 2, tzinfo=dt.UTC), 5),
    ]
    batches = list(rows_to_batches(iter(rows), COLUMNS, batch_size=2))
    assert [b.num_rows for b in batches] == [2, 1]
    assert batches[0].column(1).type == pa.float64() and batches[0].column(1)[0].as_py() == 0.5
    assert batches[0].column(5).to_pylist() == [[1.0, 2.0], None]
    csv = b"".join(write_csv(COLUMNS, batches)).decode().splitlines()
    assert csv[1] == "1,0.5,1.5,true,x,1 2,1 2 3 4 5 6,2025-01-01T00:00:00,3"
    assert csv[3] == "3,2,2,false,y,3 4,,2025-01-02T00:00:00,5"
    with pytest.raises(ValueError, match="2 values"):
        list(rows_to_batches([(1, 2)], COLUMNS))


def test_duckdb_batches_in_every_format() -> None:
    """Arrow batches exactly as DuckDB hands them over (its own types) go through every writer."""
    import duckdb
    from astropy.io.votable import parse

    con = duckdb.connect()
    reader = con.sql(
        """
        SELECT i::BIGINT AS objectId, i * 0.5 AS ra, (i * 0.25)::REAL AS g, i % 2 = 0 AS flag,
               'n' || i AS name, [i * 1.0, -i * 1.0]::DOUBLE[2] AS pos,
               TIMESTAMP '2025-01-01 00:00:00' + INTERVAL (i) SECOND AS t,
               CASE WHEN i % 3 = 0 THEN NULL ELSE i END::INTEGER AS ccd,
               sum(i) OVER () AS total, 1.5::DECIMAL(10, 2) AS price
        FROM range(5000) r(i)
        """
    ).to_arrow_reader(2048)
    batches = list(reader)
    columns = [
        ColumnInfo("objectId", "long"),
        ColumnInfo("ra", "double"),
        ColumnInfo("g", "float"),
        ColumnInfo("flag", "boolean"),
        ColumnInfo("name", "char", arraysize="*"),
        ColumnInfo("pos", "double", arraysize="2", xtype="point"),
        ColumnInfo("t", "char", arraysize="*", xtype="timestamp"),
        ColumnInfo("ccd", "int"),
        ColumnInfo("total", "long"),
        ColumnInfo("price", "double"),
    ]
    for fmt in OUTPUT_FORMATS:
        data = b"".join(fmt.write(columns, batches))
        assert data, fmt.name
    votable = (
        parse(io.BytesIO(b"".join(negotiate("votable").write(columns, batches)))).get_first_table().array
    )
    assert len(votable) == 5000 and votable["t"][61] == "2025-01-01T00:01:01"
    assert votable["total"][0] == sum(range(5000)) and votable["price"][0] == 1.5
    assert votable["ccd"].mask[3] and votable["ccd"][4] == 4 and votable["pos"][7].tolist() == [7.0, -7.0]


@pytest.mark.parametrize("fmt", [f.name for f in OUTPUT_FORMATS])
def test_closing_the_stream_closes_the_source(fmt: str) -> None:
    """A client that hangs up must release the database cursor behind the batches at once."""
    closed = []

    def source():
        try:
            for _ in range(100):
                yield batch()
        finally:
            closed.append(True)

    stream = negotiate(fmt).write(COLUMNS, source())
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert closed == [True] or fmt == "fits"  # FITS reads everything before its first byte
