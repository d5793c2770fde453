"""The TAP service on the PostgreSQL back end (pgsphere + q3c), with its jobs and history in
a PostgreSQL state database: same answers as the DuckDB service on the same data, async
jobs, uploads and overflow."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from astropy.table import Table
from fixtures.tap import TapServer, start_tap_server

from pachon.core.catalog import open_catalog

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

QUERIES = [
    "SELECT objectid, ra, dec, r_mag FROM bench.object "
    "WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.0, 2.0, 1.5)) = 1 ORDER BY objectid",
    "SELECT COUNT(*) AS n FROM bench.object WHERE r_mag < 21",
    "SELECT TOP 10 objectid, r_mag FROM bench.object ORDER BY r_mag, objectid",
    "SELECT FLOOR(r_mag * 2) / 2 AS bin, COUNT(*) AS n FROM bench.object GROUP BY FLOOR(r_mag * 2) / 2 ORDER BY bin",
    "SELECT f.forcedsourceid, f.band, f.psf_flux FROM bench.forcedsource AS f JOIN bench.object AS o "
    "ON o.objectid = f.objectid WHERE o.objectid = 1000000000042 ORDER BY f.forcedsourceid",
    "SELECT TOP 5 objectid, DISTANCE(POINT('ICRS', ra, dec), POINT('ICRS', 150, 2)) AS d FROM bench.object "
    "ORDER BY d",
]


@pytest.fixture(scope="module")
def pg_server(postgres_cluster, tap_catalog, tmp_path_factory) -> Iterator[TapServer]:  # type: ignore[no-untyped-def]
    url = postgres_cluster.create_database("tap_catalog")
    # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; the venv has psycopg2
    state_url = postgres_cluster.create_database("tap_state", extensions=()).replace(
        "postgresql://", "postgresql+psycopg2://"
    )
    with open_catalog(url, read_only=False) as catalog:
        catalog.ingest(tap_catalog.data_dir / "object.parquet", "bench.object", ra="ra", dec="dec")
        catalog.ingest(tap_catalog.data_dir / "forcedsource.parquet", "bench.forcedsource")
    server = start_tap_server(
        url, tmp_path_factory.mktemp("tappg"), extra_env={"PACHON_STATE_DB_URL": state_url}
    )
    yield server
    server.stop()


def _rows(table: Table) -> list[tuple[object, ...]]:
    out = []
    for row in table:
        out.append(tuple(round(float(v), 9) if isinstance(v, float | np.floating) else v for v in row))
    return out


def test_postgres_answers_like_duckdb(pg_server, tap_server) -> None:  # type: ignore[no-untyped-def]
    import pyvo

    pg, duck = pyvo.dal.TAPService(pg_server.url), pyvo.dal.TAPService(tap_server.url)
    for query in QUERIES:
        a, b = pg.search(query).to_table(), duck.search(query).to_table()
        assert a.colnames == b.colnames, query
        assert _rows(a) == _rows(b), query


def test_postgres_async_upload_overflow(pg_server) -> None:  # type: ignore[no-untyped-def]
    import pyvo

    service = pyvo.dal.TAPService(pg_server.url)
    assert len(service.run_async("SELECT TOP 4 objectid FROM bench.object ORDER BY objectid")) == 4
    first = service.search("SELECT TOP 3 objectid, ra, dec FROM bench.object ORDER BY objectid").to_table()
    mine = Table({"pid": np.arange(3), "ra": first["ra"], "dec": first["dec"]})
    matched = service.search(
        "SELECT u.pid, o.objectid FROM TAP_UPLOAD.mine AS u JOIN bench.object AS o "
        "ON DISTANCE(POINT('ICRS', o.ra, o.dec), POINT('ICRS', u.ra, u.dec)) < 1.0/3600 ORDER BY u.pid",
        uploads={"mine": mine},
    ).to_table()
    assert list(matched["objectid"]) == list(first["objectid"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = service.search("SELECT objectid FROM bench.object", maxrec=11)
    assert len(cut) == 11
    history = __import__("httpx").get(pg_server.url + "/history", params={"limit": 3}).json()
    assert history["user"] == "anonymous" and len(history["queries"]) == 3


def test_postgres_execution_duration_cancels(pg_server) -> None:  # type: ignore[no-untyped-def]
    """EXECUTIONDURATION cancels the running statement on the server (psycopg2 cancel)."""
    import time

    import httpx

    slow = (
        "SELECT COUNT(*) AS n FROM bench.forcedsource AS a, bench.forcedsource AS b, bench.forcedsource AS c "
        "WHERE a.psf_flux + b.psf_flux + c.psf_flux > 0"
    )
    with httpx.Client(timeout=60) as client:
        job = client.post(pg_server.url + "/async", data={"LANG": "ADQL", "QUERY": slow}).headers["location"]
        client.post(job + "/executionduration", data={"EXECUTIONDURATION": "1"})
        t0 = time.monotonic()
        client.post(job + "/phase", data={"PHASE": "RUN"})
        done = ""
        while time.monotonic() - t0 < 30 and "<uws:phase>ERROR" not in done:
            done = client.get(job, params={"WAIT": "30"}).text  # returns at every phase change
            if "COMPLETED" in done or "ABORTED" in done:
                break
        assert time.monotonic() - t0 < 15
        assert "<uws:phase>ERROR</uws:phase>" in done and "time limit" in done
        # the connection went back to the pool in a usable state
        again = client.post(
            pg_server.url + "/sync", data={"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM bench.object"}
        )
        assert again.status_code == 200 and b"QUERY_STATUS" in again.content
