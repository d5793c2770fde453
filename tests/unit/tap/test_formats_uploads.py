"""Upload readers (VOTable, CSV/TSV, Parquet, FITS) and the SSRF-guarded URL fetch."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io.votable.tree import Field, Resource, TableElement, VOTableFile

from pachon.core.catalog.model import ColumnInfo
from pachon.services.tap.exceptions import UploadError as ServiceUploadError
from pachon.services.tap.formats import (
    UploadError,
    check_address,
    fetch_upload_url,
    read_upload,
    write_binary2,
    write_parquet,
    write_tabledata,
)

LIMITS = {"max_rows": 1000, "max_bytes": 1_000_000}


def result_columns() -> list[ColumnInfo]:
    return [
        ColumnInfo("id", "long", ucd="meta.id"),
        ColumnInfo("RA", "double", unit="deg", ucd="pos.eq.ra"),
        ColumnInfo("my col", "float", unit="mag"),
        ColumnInfo("size", "int"),
        ColumnInfo("ok", "boolean"),
        ColumnInfo("name", "char", arraysize="*"),
        ColumnInfo("pos", "double", arraysize="2", xtype="point"),
        ColumnInfo("t", "char", arraysize="*", xtype="timestamp"),
        ColumnInfo("label", "unicodeChar", arraysize="*"),
    ]


def result_batch() -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array([1, 2, None]),
            pa.array([10.5, None, 350.25]),
            pa.array([1.5, 2.5, None], pa.float32()),
            pa.array([1, None, 3], pa.int32()),
            pa.array([True, None, False]),
            pa.array(["a", "", None]),
            pa.array([[1.0, 2.0], None, [3.0, 4.0]]),
            pa.array([dt.datetime(2025, 1, 1, 12), None, dt.datetime(2025, 1, 2)]),
            pa.array(["Ωmega", "b", None]),
        ],
        names=[c.name for c in result_columns()],
    )


@pytest.mark.parametrize("writer", [write_binary2, write_tabledata], ids=["binary2", "tabledata"])
def test_votable_upload_round_trip(writer) -> None:
    data = b"".join(writer(result_columns(), [result_batch()]))
    up = read_upload(data, "mine", **LIMITS)
    assert up.name == "mine" and up.format == "votable" and up.num_rows == 3
    cols = {c.name: c for c in up.columns}
    assert [c.name for c in up.columns] == [c.name for c in result_columns()]
    assert cols["RA"].unit == "deg" and cols["RA"].ucd == "pos.eq.ra" and not cols["RA"].delimited
    assert cols["my col"].delimited and cols["size"].delimited and not cols["id"].delimited
    assert cols["pos"].datatype == "double" and cols["pos"].arraysize == "2" and cols["pos"].xtype == "point"
    assert cols["t"].xtype == "timestamp" and cols["label"].datatype == "unicodeChar"
    table = up.table
    assert table.column("id").to_pylist() == [1, 2, None]
    assert table.column("RA").to_pylist()[0] == 10.5 and table.column("RA").null_count == 1
    assert table.column("size").type == pa.int32() and table.column("size").to_pylist() == [1, None, 3]
    assert table.column("ok").to_pylist() == [True, None, False]
    assert table.column("pos").to_pylist()[2] == [3.0, 4.0]
    assert table.column("t").to_pylist()[0] == dt.datetime(2025, 1, 1, 12)
    assert table.column("label").to_pylist()[0] == "Ωmega"
    ra_meta = table.schema.field("RA").metadata
    assert (
        ra_meta[b"unit"] == b"deg"
        and ra_meta[b"ucd"] == b"pos.eq.ra"
        and ra_meta[b"votable.datatype"] == b"double"
    )
    assert table.schema.field("my col").metadata[b"adql.delimited"] == b"true"


def test_votable_char_arraysize_one_keeps_longer_values() -> None:
    vot = VOTableFile()
    resource = Resource()
    vot.resources.append(resource)
    table = TableElement(vot)
    resource.tables.append(table)
    table.fields.extend(
        [
            Field(vot, name="flag", datatype="char", arraysize="1"),
            Field(vot, name="code", datatype="char", arraysize="1"),
        ]
    )
    table.create_arrays(2)
    table.array["flag"] = ["Y", "N"]
    table.array["code"] = ["A", "B"]
    out = io.BytesIO()
    vot.to_xml(out)
    xml = out.getvalue().replace(b"<TD>A</TD>", b"<TD>ABC</TD>")
    up = read_upload(xml, "codes", **LIMITS)
    cols = {c.name: c for c in up.columns}
    assert cols["flag"].arraysize == "1" and up.table.column("flag").to_pylist() == ["Y", "N"]
    assert cols["code"].arraysize == "*" and up.table.column("code").to_pylist()[0] == "ABC"


def test_parquet_upload_keeps_metadata() -> None:
    data = b"".join(write_parquet(result_columns(), [result_batch()]))
    up = read_upload(data, "pq", **LIMITS)
    cols = {c.name: c for c in up.columns}
    assert up.format == "parquet"
    assert cols["RA"].unit == "deg" and cols["RA"].ucd == "pos.eq.ra"
    assert cols["t"].datatype == "char" and cols["t"].xtype == "timestamp"
    assert cols["pos"].arraysize == "2" and cols["label"].datatype == "unicodeChar"
    assert up.table.column("id").to_pylist() == [1, 2, None]


def test_plain_parquet_types() -> None:
    table = pa.table(
        {
            "a": pa.array([1, 2], pa.int8()),
            "b": pa.array([1, 2], pa.uint32()),
            "c": pa.array(["x", "y"]).dictionary_encode(),
            "d": pa.array([[1, 2], [3]], pa.list_(pa.int64())),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    up = read_upload(sink.getvalue(), "plain", **LIMITS)
    assert [(c.datatype, c.arraysize) for c in up.columns] == [
        ("short", None),
        ("long", None),
        ("char", "*"),
        ("long", "*"),
    ]
    assert up.table.column("c").to_pylist() == ["x", "y"]


def test_csv_upload_infers_types() -> None:
    data = (
        b'id,ra,dec,name,flag,obs,"my col"\n'
        b"1,10.5,-30,alpha,true,2025-01-01T00:00:00Z,1e3\n"
        b'2,,-31.5,"be,ta",false,2025-01-02,nan\n'
        b"3,12,,,,,\n"
    )
    up = read_upload(data, "cat", **LIMITS)
    cols = {c.name: c for c in up.columns}
    assert [(c.name, c.datatype) for c in up.columns] == [
        ("id", "long"),
        ("ra", "double"),
        ("dec", "double"),
        ("name", "char"),
        ("flag", "boolean"),
        ("obs", "char"),
        ("my col", "double"),
    ]
    assert cols["obs"].xtype == "timestamp" and cols["my col"].delimited
    t = up.table
    assert t.column("ra").to_pylist() == [10.5, None, 12.0]
    assert t.column("name").to_pylist() == ["alpha", "be,ta", None]
    assert t.column("flag").to_pylist() == [True, False, None]
    assert t.column("obs").to_pylist()[1] == dt.datetime(2025, 1, 2)
    assert np.isnan(t.column("my col").to_pylist()[1])


def test_tsv_upload() -> None:
    up = read_upload(b"a\tb\n1\tx y\n2\tz\n", "tabs", **LIMITS)
    assert up.table.column("b").to_pylist() == ["x y", "z"] and up.columns[0].datatype == "long"


def test_csv_bad_number_is_reported_by_row_and_column() -> None:
    lines = ["id,ra"] + [f"{i},{i * 1.5}" for i in range(1, 30)]
    lines[17] = "17,abc"
    with pytest.raises(UploadError) as info:
        read_upload("\n".join(lines).encode(), "mytab", **LIMITS)
    message = str(info.value)
    assert message.startswith("upload 'mytab': row 17, column 'ra': 'abc' is not a number")
    assert info.value.row == 17 and info.value.column == "ra" and info.value.table == "mytab"
    assert isinstance(info.value, ServiceUploadError)


def test_csv_text_column_stays_text() -> None:
    up = read_upload(b"obj\n123\nM31\n", "names", **LIMITS)
    assert up.columns[0].datatype == "char" and up.table.column("obj").to_pylist() == ["123", "M31"]


def test_csv_ragged_line() -> None:
    with pytest.raises(UploadError, match=r"upload 'rag': line 3 .*3 fields.*2"):
        read_upload(b"a,b\n1,2\n3,4,5\n", "rag", **LIMITS)


@pytest.mark.parametrize(
    ("data", "name", "limits", "match"),
    [
        (b"a\n1\n", "1bad", LIMITS, "not a valid upload table name"),
        (b"a\n1\n", "bad-name", LIMITS, "not a valid upload table name"),
        (
            b"a\n1\n2\n3\n",
            "big",
            {"max_rows": 2, "max_bytes": 100},
            "3 rows, more than this service's limit of 2",
        ),
        (b"a\n" + b"1\n" * 100, "big", {"max_rows": 1000, "max_bytes": 50}, "202 bytes"),
        (b"", "empty", LIMITS, "empty"),
        (b"<VOTABLE><oops", "broken", LIMITS, "not a readable VOTable"),
        (b"PAR1garbage", "broken", LIMITS, "not a readable Parquet"),
        (b"ra,RA\n1,2\n", "dup", LIMITS, "'ra' and 'RA' are the same in ADQL"),
    ],
)
def test_bad_uploads(data: bytes, name: str, limits: dict[str, int], match: str) -> None:
    with pytest.raises(UploadError, match=match):
        read_upload(data, name, **limits)


def test_upload_from_path(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x\n1\n")
    assert read_upload(path, "fromfile", **LIMITS).table.column("x").to_pylist() == [1]


def test_fits_upload(tmp_path: Path) -> None:
    from astropy.table import Table

    t = Table({"ra": [1.0, 2.0], "name": ["a", "b"], "n": np.array([1, 2], dtype=np.int16)})
    t["ra"].unit = "deg"
    path = tmp_path / "t.fits"
    t.write(path)
    up = read_upload(path, "f", **LIMITS)
    assert [(c.name, c.datatype, c.unit) for c in up.columns] == [
        ("ra", "double", "deg"),
        ("name", "char", None),
        ("n", "short", None),
    ]


# SSRF guard -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("fe80::1", True),
        ("224.0.0.1", True),
        ("0.0.0.0", True),
        ("240.0.0.1", True),
        ("100.64.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("fd00::1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
    ],
)
def test_check_address(address: str, refused: bool) -> None:
    assert (check_address(address) is not None) is refused


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/table.csv")
            self.end_headers()
            return
        if self.path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        if self.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
            return
        if self.path != "/table.csv":
            self.send_response(404)
            self.end_headers()
            return
        body = b"id,ra\n1,10.5\n2,11.5\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_allowed_private_host(local_server: str) -> None:
    data = fetch_upload_url(f"{local_server}/table.csv", allow_private_hosts=True, max_bytes=1000, timeout=5)
    assert data == b"id,ra\n1,10.5\n2,11.5\n"
    via_redirect = fetch_upload_url(
        f"{local_server}/redirect", allow_private_hosts=True, max_bytes=1000, timeout=5
    )
    assert read_upload(via_redirect, "remote", **LIMITS).table.column("ra").to_pylist() == [10.5, 11.5]


def test_fetch_refuses_private_host(local_server: str) -> None:
    with pytest.raises(UploadError, match=r"resolves to 127\.0\.0\.1, a loopback address"):
        fetch_upload_url(f"{local_server}/table.csv", allow_private_hosts=False, max_bytes=1000, timeout=5)
    port = local_server.rsplit(":", 1)[1]
    with pytest.raises(UploadError, match="loopback"):
        fetch_upload_url(
            f"http://localhost:{port}/table.csv", allow_private_hosts=False, max_bytes=1000, timeout=5
        )


def test_fetch_errors(local_server: str) -> None:
    with pytest.raises(UploadError, match="only http and https"):
        fetch_upload_url("file:///etc/passwd", allow_private_hosts=True, max_bytes=1000, timeout=5)
    with pytest.raises(UploadError, match="only http and https"):
        fetch_upload_url(f"{local_server}/elsewhere", allow_private_hosts=True, max_bytes=1000, timeout=5)
    with pytest.raises(UploadError, match="HTTP 404"):
        fetch_upload_url(f"{local_server}/missing", allow_private_hosts=True, max_bytes=1000, timeout=5)
    with pytest.raises(UploadError, match="more than the limit of 10"):
        fetch_upload_url(f"{local_server}/table.csv", allow_private_hosts=True, max_bytes=10, timeout=5)
    with pytest.raises(UploadError, match="redirected more than"):
        fetch_upload_url(f"{local_server}/loop", allow_private_hosts=True, max_bytes=1000, timeout=5)
    with pytest.raises(UploadError, match="cannot be resolved"):
        fetch_upload_url(
            "http://no-such-host.invalid/x", allow_private_hosts=False, max_bytes=1000, timeout=5
        )


def test_guard_applies_at_connection_time() -> None:
    """Even past the URL check, the transport itself refuses a loopback connection."""
    import httpx

    from pachon.services.tap.formats.fetch import _GuardedTransport

    with (
        httpx.Client(transport=_GuardedTransport(False)) as client,
        pytest.raises(UploadError, match="loopback"),
    ):
        client.get("http://127.0.0.1:9/")


@pytest.mark.parametrize("serialization", ["tabledata", "binary2"])
def test_astropy_written_votable_upload(serialization: str) -> None:
    """What pyvo and astroquery send: an astropy Table written as VOTable."""
    from astropy.table import MaskedColumn, Table

    table = Table(
        {
            "id": np.array([1, 2, 3], dtype=np.int64),
            "ra": MaskedColumn([1.5, 2.5, 3.5], mask=[False, True, False], unit="deg"),
            "name": ["a", "bcd", "Ωx"],
            "ok": [True, False, True],
            "n": MaskedColumn(np.array([1, 2, 3], dtype=np.int16), mask=[False, False, True]),
        }
    )
    table["ra"].meta["ucd"] = "pos.eq.ra"
    out = io.BytesIO()
    table.write(out, format="votable", tabledata_format=serialization)
    up = read_upload(out.getvalue(), "client", **LIMITS)
    cols = {c.name: c for c in up.columns}
    assert cols["id"].datatype == "long" and cols["ra"].datatype == "double" and cols["ra"].unit == "deg"
    assert cols["n"].datatype == "short" and cols["ok"].datatype == "boolean"
    assert cols["name"].datatype == "unicodeChar"
    t = up.table
    assert t.column("id").to_pylist() == [1, 2, 3]
    assert t.column("ra").to_pylist()[0] == 1.5 and t.column("ra").is_null().to_pylist() == [
        False,
        True,
        False,
    ]
    assert t.column("name").to_pylist() == ["a", "bcd", "Ωx"]
    assert t.column("ok").to_pylist() == [True, False, True]
    assert t.column("n").to_pylist() == [1, 2, None]
