"""The real TAP app through httpx's ASGI transport, on the session's real DuckDB catalog."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
from astropy.io.votable import parse as vo_parse
from astropy.io.votable import parse_single_table

from pachon.core.settings import TapSettings
from pachon.services.tap.config import TapConfig
from pachon.services.tap.main import create_app

pytestmark = pytest.mark.anyio

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_client(tap_catalog, tmp_path: Path) -> Callable[..., object]:  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def _make(
        anonymous: bool = True, catalog_url: str | None = None, options: dict | None = None, **limits: object
    ) -> AsyncIterator[httpx.AsyncClient]:
        config = TapConfig(
            catalog_url=catalog_url or tap_catalog.url,
            state_url=f"sqlite:///{tmp_path / 'state.sqlite3'}",
            results_dir=tmp_path / "results",
            anonymous=anonymous,
            limits=TapSettings(**limits),  # type: ignore[arg-type]
            **(options or {}),
        )
        app = create_app(config)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield client

    return _make


def table_of(response: httpx.Response):  # type: ignore[no-untyped-def]
    return parse_single_table(io.BytesIO(response.content)).to_table()


async def wait_final(client: httpx.AsyncClient, job: str, timeout: float = 10) -> httpx.Response:
    """Block with UWS WAIT until the job leaves PENDING/QUEUED/EXECUTING (WAIT returns at
    every phase change, e.g. QUEUED -> EXECUTING, so loop)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get(job, params={"WAIT": str(max(1, int(deadline - time.monotonic())))})
        phase = ElementTree.fromstring(response.content).find(UWS + "phase")
        if phase is None or phase.text not in ("PENDING", "QUEUED", "EXECUTING"):
            return response
        if time.monotonic() > deadline:
            return response


def status_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """The last QUERY_STATUS INFO of a VOTable (the trailing one tells OVERFLOW or a late ERROR)."""
    vo_parse(io.BytesIO(response.content))  # must be a valid VOTable
    root = ElementTree.fromstring(response.content)
    found: tuple[str | None, str | None] = (None, None)
    for info in root.iter("{http://www.ivoa.net/xml/VOTable/v1.3}INFO"):
        if info.get("name") == "QUERY_STATUS":
            found = (info.get("value"), info.text)
    return found


async def test_sync_get_post_and_multipart(make_client) -> None:  # type: ignore[no-untyped-def]
    q = "SELECT TOP 5 objectid, ra, dec FROM bench.object ORDER BY objectid"
    async with make_client() as client:
        get = await client.get("/tap/sync", params={"lang": "ADQL", "QUERY": q, "REQUEST": "doQuery"})
        assert get.status_code == 200, get.text
        assert len(table_of(get)) == 5
        post = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "tapclient": "x"})
        assert list(table_of(post)["objectid"]) == list(table_of(get)["objectid"])
        multipart = await client.post(
            "/tap/sync", data={"LANG": "ADQL", "QUERY": q}, files={"dummy": ("d.txt", b"", "text/plain")}
        )
        assert len(table_of(multipart)) == 5
        csv = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0] == "objectid,ra,dec"


async def test_maxrec_overflow_only_when_cut(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        base = {"LANG": "ADQL", "QUERY": "SELECT objectid FROM bench.object"}
        cut = await client.post("/tap/sync", data={**base, "MAXREC": "10"})
        assert len(table_of(cut)) == 10 and status_of(cut)[0] == "OVERFLOW"
        exact = await client.post(
            "/tap/sync",
            data={"LANG": "ADQL", "QUERY": "SELECT TOP 10 objectid FROM bench.object", "MAXREC": "10"},
        )
        assert len(table_of(exact)) == 10 and status_of(exact)[0] == "OK"
        top_bigger = await client.post(
            "/tap/sync",
            data={"LANG": "ADQL", "QUERY": "SELECT TOP 50 objectid FROM bench.object", "MAXREC": "7"},
        )
        assert len(table_of(top_bigger)) == 7 and status_of(top_bigger)[0] == "OVERFLOW"
        meta = await client.post("/tap/sync", data={**base, "MAXREC": "0"})
        assert len(table_of(meta)) == 0 and status_of(meta)[0] == "OVERFLOW"
        assert table_of(meta).colnames == ["objectid"]


async def test_errors_are_votables(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        syntax = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT ra\nFROM FROM x"})
        assert syntax.status_code == 400
        value, message = status_of(syntax)
        assert value == "ERROR" and "line 2" in (message or "") and "column" in (message or "")
        for response in (
            await client.get("/tap/nothing-here"),
            await client.delete("/tap/sync"),
            await client.post("/tap/sync", data={"LANG": "SQL", "QUERY": "SELECT 1"}),
            await client.get("/tap/history", params={"limit": "lots"}),
            await client.get("/tap/async/doesnotexist"),
        ):
            assert response.status_code >= 400
            assert "xml" in response.headers["content-type"]
            assert status_of(response)[0] == "ERROR"


async def test_vosi_documents(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        availability = await client.get("/tap/availability")
        assert b"<vosi:available>true</vosi:available>" in availability.content
        caps = ElementTree.fromstring((await client.get("/tap/capabilities")).content)
        tap_caps = [c for c in caps if c.get("standardID") == "ivo://ivoa.net/std/TAP"]
        assert len(tap_caps) == 1
        forms = [f.text for f in tap_caps[0].iter("form")]
        assert any(f and f.startswith("scisql_nanojanskyToAbMag") for f in forms)
        assert "CONTAINS" in forms and "WITH" in forms
        assert tap_caps[0].find("interface/accessURL").text == "http://testserver/tap"  # type: ignore[union-attr]
        tables = (await client.get("/tap/tables")).text
        assert "<name>bench.object</name>" in tables and "pachon_hpx" not in tables
        assert "<column>" not in (await client.get("/tap/tables", params={"detail": "min"})).text
        one = await client.get("/tap/tables/bench.object")
        assert one.status_code == 200 and "<name>ra</name>" in one.text
        assert (await client.get("/tap/tables/bench.nope")).status_code == 404
        landing = await client.get("/tap")
        assert landing.headers["content-type"].startswith("text/html")
        health = (await client.get("/tap/health")).json()
        assert health["status"] == "ok"


async def test_forwarded_headers_give_public_urls(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        caps = await client.get(
            "/tap/capabilities",
            headers={
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "sky.example",
                "X-Forwarded-Prefix": "/services",
            },
        )
        assert "https://sky.example/services/tap" in caps.text


async def test_examples_run(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        page = await client.get("/tap/examples")
        root = ElementTree.fromstring(page.content)
        queries = [el.text for el in root.iter() if el.get("property") == "query"]
        assert queries, "no examples listed"
        for query in queries:
            answer = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query})
            assert answer.status_code == 200 and status_of(answer)[0] == "OK", (query, answer.text[:500])


async def test_async_lifecycle(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        created = await client.post(
            "/tap/async",
            data={"LANG": "ADQL", "QUERY": "SELECT TOP 3 objectid FROM bench.object", "RUNID": "r1"},
        )
        assert created.status_code == 303
        job_url = created.headers["location"]
        job = job_url.removeprefix("http://testserver")
        assert (await client.get(job + "/phase")).text == "PENDING"
        assert (await client.get(job + "/quote")).text == ""
        assert (await client.get(job + "/owner")).text == "anonymous"
        moved = await client.post(job + "/executionduration", data={"EXECUTIONDURATION": "30"})
        assert moved.status_code == 303 and (await client.get(job + "/executionduration")).text == "30"
        assert (
            await client.post(job + "/destruction", data={"DESTRUCTION": "2099-01-01T00:00:00Z"})
        ).status_code == 303
        params = await client.post(job + "/parameters", data={"MAXREC": "2"})
        assert params.status_code == 303
        assert (await client.post(job + "/phase", data={"PHASE": "RUN"})).status_code == 303
        done = await wait_final(client, job, 10)
        root = ElementTree.fromstring(done.content)
        assert root.get("version") == "1.1"
        assert root.find(UWS + "phase").text == "COMPLETED"  # type: ignore[union-attr]
        result = await client.get(job + "/results/result")
        assert len(table_of(result)) == 2 and status_of(result)[0] == "OVERFLOW"
        listing = await client.get("/tap/async", params={"PHASE": "COMPLETED", "LAST": "5"})
        assert job_url.rsplit("/", 1)[1] in listing.text
        deleted = await client.delete(job)
        assert deleted.status_code == 303 and deleted.headers["location"].endswith("/tap/async")
        assert (await client.get(job)).status_code == 404


async def test_async_error_and_action_delete(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        created = await client.post(
            "/tap/async",
            data={"LANG": "ADQL", "QUERY": "SELECT nosuchcolumn FROM bench.object", "PHASE": "RUN"},
        )
        job = created.headers["location"].removeprefix("http://testserver")
        done = await wait_final(client, job, 10)
        assert "<uws:phase>ERROR</uws:phase>" in done.text and "errorSummary" in done.text
        error = await client.get(job + "/error")
        assert error.status_code == 200 and status_of(error)[0] == "ERROR"
        assert "nosuchcolumn" in (status_of(error)[1] or "").lower()
        assert (await client.get(job + "/results/result")).status_code == 404
        gone = await client.post(job, data={"ACTION": "DELETE"})
        assert gone.status_code == 303
        assert (await client.get(job + "/phase")).status_code == 404


async def test_execution_duration_cancels_the_query(make_client) -> None:  # type: ignore[no-untyped-def]
    slow = (
        "SELECT COUNT(*) AS n FROM bench.forcedsource AS a, bench.forcedsource AS b, bench.forcedsource AS c "
        "WHERE a.psf_flux + b.psf_flux + c.psf_flux > 0"
    )
    async with make_client() as client:
        created = await client.post("/tap/async", data={"LANG": "ADQL", "QUERY": slow})
        job = created.headers["location"].removeprefix("http://testserver")
        await client.post(job + "/executionduration", data={"EXECUTIONDURATION": "1"})
        t0 = time.monotonic()
        await client.post(job + "/phase", data={"PHASE": "RUN"})
        done = await wait_final(client, job, 20)
        assert time.monotonic() - t0 < 10
        assert "<uws:phase>ERROR</uws:phase>" in done.text and "time limit" in done.text
        # ABORT stops a running query too
        created = await client.post("/tap/async", data={"LANG": "ADQL", "QUERY": slow, "PHASE": "RUN"})
        job = created.headers["location"].removeprefix("http://testserver")
        await client.get(job, params={"WAIT": "5", "PHASE": "QUEUED"})
        await asyncio.sleep(0.3)
        await client.post(job + "/phase", data={"PHASE": "ABORT"})
        done = await wait_final(client, job, 10)
        assert "<uws:phase>ABORTED</uws:phase>" in done.text


async def test_ownership_between_two_users(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(anonymous=False) as client:
        alice, bob = {"X-Forwarded-User": "alice"}, {"X-Forwarded-User": "bob"}
        assert (await client.get("/tap/availability")).status_code == 200  # anonymous
        assert (await client.get("/tap/capabilities")).status_code == 200  # anonymous
        assert (await client.get("/tap")).status_code == 200  # landing page, anonymous
        assert (await client.get("/tap/tables")).status_code == 401
        assert (
            await client.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT 1 AS x"})
        ).status_code == 401
        created = await client.post(
            "/tap/async",
            data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 objectid FROM bench.object"},
            headers=alice,
        )
        job = created.headers["location"].removeprefix("http://testserver")
        assert (await client.get(job, headers=alice)).status_code == 200
        assert (await client.get(job, headers=bob)).status_code == 404
        assert (await client.delete(job, headers=bob)).status_code == 404
        assert job.rsplit("/", 1)[1] not in (await client.get("/tap/async", headers=bob)).text
        assert job.rsplit("/", 1)[1] in (await client.get("/tap/async", headers=alice)).text
        await client.post(
            "/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM bench.object"}, headers=bob
        )
        mine = (await client.get("/tap/history", headers=bob)).json()
        assert mine["user"] == "bob" and [q["query"] for q in mine["queries"]] == [
            "SELECT TOP 1 ra FROM bench.object"
        ]
        assert all(
            q["owner"] == "alice" for q in (await client.get("/tap/history", headers=alice)).json()["queries"]
        )


async def test_history_records_sync_and_async(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client() as client:
        await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT TOP 4 ra FROM bench.object"})
        await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT broken FROM"})
        created = await client.post(
            "/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 2 ra FROM bench.object", "PHASE": "RUN"}
        )
        await wait_final(client, created.headers["location"].removeprefix("http://testserver"), 10)
        entries = (await client.get("/tap/history", params={"limit": 10})).json()["queries"]
        by_query = {e["query"]: e for e in entries}
        assert by_query["SELECT TOP 4 ra FROM bench.object"]["row_count"] == 4
        assert by_query["SELECT TOP 4 ra FROM bench.object"]["status"] == "OK"
        assert by_query["SELECT broken FROM"]["status"] == "ERROR"
        assert by_query["SELECT TOP 2 ra FROM bench.object"]["mode"] == "async"


async def test_inline_upload_join(make_client) -> None:  # type: ignore[no-untyped-def]
    votable = (
        b'<?xml version="1.0"?><VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">'
        b'<RESOURCE><TABLE><FIELD name="id" datatype="int"/><FIELD name="oid" datatype="long"/>'
        b"<DATA><TABLEDATA><TR><TD>1</TD><TD>1000000000000</TD></TR><TR><TD>2</TD><TD>1000000000001</TD></TR>"
        b"</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    )
    query = (
        "SELECT u.id, o.objectid FROM TAP_UPLOAD.mine AS u JOIN bench.object AS o ON o.objectid = u.oid "
        "ORDER BY u.id"
    )
    async with make_client() as client:
        answer = await client.post(
            "/tap/sync",
            data={"LANG": "ADQL", "QUERY": query, "UPLOAD": "mine,param:tbl"},
            files={"tbl": ("t.xml", votable, "application/x-votable+xml")},
        )
        assert answer.status_code == 200, answer.text
        assert list(table_of(answer)["id"]) == [1, 2]
        missing = await client.post(
            "/tap/sync", data={"LANG": "ADQL", "QUERY": query, "UPLOAD": "mine,param:tbl"}
        )
        assert missing.status_code == 400 and "tbl" in (status_of(missing)[1] or "")


async def test_udfs_and_geometry_run(make_client) -> None:  # type: ignore[no-untyped-def]
    queries = {
        "SELECT COUNT(*) AS n FROM bench.object WHERE "
        "CONTAINS(POINT('ICRS', ra, dec), POLYGON('ICRS', 145, 0, 155, 0, 155, 5, 145, 5)) = 1": None,
        "SELECT TOP 3 objectid, scisql_nanojanskyToAbMag(3631e9) AS m0, ivo_healpix_index(6, ra, dec) AS hpx "
        "FROM bench.object ORDER BY objectid": 3,
        "SELECT TOP 2 ra, dec FROM bench.object ORDER BY DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 150, 2))": 2,
    }
    async with make_client() as client:
        for query, rows in queries.items():
            answer = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": query})
            assert answer.status_code == 200 and status_of(answer)[0] == "OK", (query, answer.text[-600:])
            table = table_of(answer)
            if rows is not None:
                assert len(table) == rows
        count = table_of(await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": next(iter(queries))}))
        assert 0 < int(count["n"][0]) < 3000


async def test_large_results_stream(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(options={"sync_inline_bytes": 10_000}) as client:
        for fmt in ("votable", "csv"):
            answer = await client.post(
                "/tap/sync",
                data={"LANG": "ADQL", "QUERY": "SELECT * FROM bench.forcedsource", "RESPONSEFORMAT": fmt},
            )
            assert answer.status_code == 200
            assert "content-length" not in answer.headers  # chunked, not buffered
            if fmt == "votable":
                assert len(table_of(answer)) > 10_000 and status_of(answer)[0] == "OK"
            else:
                assert len(answer.text.splitlines()) > 10_001


async def test_sync_time_limit(make_client) -> None:  # type: ignore[no-untyped-def]
    slow = (
        "SELECT COUNT(*) AS n FROM bench.forcedsource AS a, bench.forcedsource AS b, bench.forcedsource AS c "
        "WHERE a.psf_flux + b.psf_flux + c.psf_flux > 0"
    )
    async with make_client(sync_timeout_s=1.0) as client:
        t0 = time.monotonic()
        answer = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": slow})
        assert time.monotonic() - t0 < 10
        assert answer.status_code == 400 and "time limit of 1 s" in (status_of(answer)[1] or "")


async def test_reload_shows_new_tables(make_client, tap_catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from pachon.core.catalog import open_catalog

    url = f"duckdb:///{tmp_path / 'reload'}/"
    with open_catalog(url, read_only=False) as writer:
        writer.ingest(tap_catalog.data_dir / "object.parquet", "early.object", ra="ra", dec="dec")
    query = {"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM later.object"}
    async with make_client(catalog_url=url) as client:
        assert (await client.post("/tap/sync", data=query)).status_code == 400
        with open_catalog(url, read_only=False) as writer:  # while the service runs
            writer.ingest(tap_catalog.data_dir / "object.parquet", "later.object", ra="ra", dec="dec")
        reloaded = await client.post("/tap/admin/reload")
        assert reloaded.status_code == 200 and "later" in reloaded.json()["schemas"]
        answer = await client.post("/tap/sync", data=query)
        assert int(table_of(answer)["n"][0]) == tap_catalog.n_obj
        assert "later.object" in (await client.get("/tap/tables")).text


async def test_destruction_is_enforced(make_client) -> None:  # type: ignore[no-untyped-def]
    async with make_client(options={"reaper_interval_s": 0.2}) as client:
        created = await client.post(
            "/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM bench.object", "PHASE": "RUN"}
        )
        job = created.headers["location"].removeprefix("http://testserver")
        await wait_final(client, job, 10)
        assert (await client.get(job + "/results/result")).status_code == 200
        await client.post(job + "/destruction", data={"DESTRUCTION": "2000-01-01T00:00:00Z"})
        for _ in range(50):
            if (await client.get(job + "/phase")).status_code == 404:
                break
            await asyncio.sleep(0.1)
        assert (await client.get(job + "/phase")).status_code == 404
        assert (await client.get(job + "/results/result")).status_code == 404


async def test_identity_from_hub_middleware(tap_catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Behind the hub, HubAuthMiddleware puts the identity in the request state; jobs follow it."""
    from pachon.core.auth import HubIdentity

    config = TapConfig(
        catalog_url=tap_catalog.url,
        state_url=f"sqlite:///{tmp_path / 'state.sqlite3'}",
        results_dir=tmp_path / "results",
        anonymous=False,
    )
    app = create_app(config)

    async def as_carol(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            scope.setdefault("state", {})["hub_identity"] = HubIdentity(name="carol")
        await app(scope, receive, send)

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=as_carol)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            created = await client.post("/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT 1 AS one"})
            job = created.headers["location"].removeprefix("http://testserver")
            assert (await client.get(job + "/owner")).text == "carol"


@pytest.fixture
def csv_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A loopback HTTP server publishing one CSV table (for UPLOAD=name,http://…)."""
    import functools
    import http.server
    import threading

    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "ids.csv").write_text("oid,tag\n1000000000000,a\n1000000000002,b\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ids.csv"
    server.shutdown()


async def test_url_upload_and_ssrf_guard(make_client, csv_server: str) -> None:  # type: ignore[no-untyped-def]
    query = (
        "SELECT u.tag, o.objectid FROM TAP_UPLOAD.ids AS u JOIN bench.object AS o ON o.objectid = u.oid "
        "ORDER BY u.tag"
    )
    data = {"LANG": "ADQL", "QUERY": query, "UPLOAD": f"ids,{csv_server}"}
    async with make_client() as client:  # default: loopback uploads refused
        refused = await client.post("/tap/sync", data=data)
        assert refused.status_code == 400 and status_of(refused)[0] == "ERROR"
        assert (
            "127.0.0.1" in (status_of(refused)[1] or "") or "private" in (status_of(refused)[1] or "").lower()
        )
    async with make_client(upload_allow_private_hosts=True) as client:
        answer = await client.post("/tap/sync", data=data)
        assert answer.status_code == 200, answer.text
        assert list(table_of(answer)["tag"]) == ["a", "b"]


async def test_csv_time_limit_is_a_clean_error(make_client) -> None:  # type: ignore[no-untyped-def]
    slow = (
        "SELECT COUNT(*) AS n FROM bench.forcedsource AS a, bench.forcedsource AS b, bench.forcedsource AS c "
        "WHERE a.psf_flux + b.psf_flux + c.psf_flux > 0"
    )
    async with make_client(sync_timeout_s=1.0) as client:
        answer = await client.post("/tap/sync", data={"LANG": "ADQL", "QUERY": slow, "RESPONSEFORMAT": "csv"})
        assert answer.status_code == 400 and status_of(answer)[0] == "ERROR"
        assert "time limit" in (status_of(answer)[1] or "")


async def test_public_base_url_from_settings(make_client) -> None:  # type: ignore[no-untyped-def]
    public = "https://sky.example.org/services/tap"
    async with make_client(public_base_url=public) as client:
        caps = await client.get("/tap/capabilities")
        assert f'<accessURL use="base">{public}</accessURL>' in caps.text
        created = await client.post(
            "/tap/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 ra FROM bench.object"}
        )
        assert created.headers["location"].startswith(public + "/async/")
        listing = await client.get("/tap/async")
        assert f'xlink:href="{created.headers["location"]}"' in listing.text


async def test_starts_on_an_empty_catalog(make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with make_client(catalog_url=f"duckdb:///{tmp_path / 'empty'}/") as client:
        answer = await client.post(
            "/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT table_name FROM TAP_SCHEMA.tables"}
        )
        assert answer.status_code == 200
        assert "tap_schema.columns" in [str(v).lower() for v in table_of(answer)["table_name"]]
        assert (await client.get("/tap/availability")).status_code == 200
        assert (await client.get("/tap/examples")).status_code == 200
