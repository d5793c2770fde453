"""Prompt products in TAP: schema ``ppdb`` equals the APDB after ``pachon prompt run``, without duplicates.

A real ``pachon serve tap`` is started on the repo's catalog *before* the re-run, and queried with
pyvo; it must see the re-published tables without a restart (its reload, as for a new release).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pachon.pipelines.prompt.ppdb import PPDB_TABLES, apdb_snapshot, publish_ppdb

pytestmark = pytest.mark.slow


def _tap_counts(service: Any) -> dict[str, int]:
    return {
        t: int(service.search(f"SELECT COUNT(*) AS n FROM ppdb.{t}").to_table()["n"][0]) for t in PPDB_TABLES
    }


def test_ppdb_through_tap_equals_the_apdb_and_a_rerun_duplicates_nothing(
    live_prompt_run: Any, tmp_path: Path
) -> None:
    import pyvo
    from fixtures.prompt_live import run_cli
    from fixtures.tap import start_tap_server

    run = live_prompt_run
    assert run.output.count("ppdb: ") == len(run.visits), "ppdb should be published after each visit"
    apdb = apdb_snapshot(run.path)
    server = start_tap_server(run.catalog_url, tmp_path)
    try:
        service = pyvo.dal.TAPService(server.url)
        got = service.search(
            "SELECT diaSourceId, diaObjectId, visit, detector, ra, dec, psfFlux, band, isDipole "
            "FROM ppdb.DiaSource ORDER BY diaSourceId"
        ).to_table()
        expected = apdb["DiaSource"].sort_values("diaSourceId")
        assert len(got) == len(expected) > 0
        assert list(got["diaSourceId"]) == expected["diaSourceId"].tolist()
        assert list(got["diaObjectId"]) == expected["diaObjectId"].tolist()
        assert np.allclose(np.asarray(got["ra"], float), expected["ra"].to_numpy(), rtol=0, atol=1e-12)
        assert np.allclose(
            np.asarray(got["psfFlux"], float), expected["psfFlux"].to_numpy(), rtol=1e-6, equal_nan=True
        )
        assert list(got["band"]) == expected["band"].tolist()
        assert [bool(v) for v in got["isDipole"]] == [bool(v) for v in expected["isDipole"]]
        # One current row per DiaObject, the APDB's; forced photometry of every visit.
        counts = _tap_counts(service)
        assert counts == {t: len(apdb[t]) for t in PPDB_TABLES}
        assert counts["DiaObject"] == apdb["DiaObject"]["diaObjectId"].nunique()
        # TAP_SCHEMA describes the Felis ppdb tables with their units and UCDs.
        tables = service.search(
            "SELECT table_name FROM TAP_SCHEMA.tables WHERE schema_name = 'ppdb'"
        ).to_table()
        assert {f"ppdb.{t}" for t in PPDB_TABLES} <= {str(n) for n in tables["table_name"]}
        cols = service.search(
            "SELECT column_name, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name = 'ppdb.DiaSource'"
        ).to_table()
        by_name = {str(r["column_name"]): r for r in cols}
        assert str(by_name["psfFlux"]["unit"]) == "nJy" and str(by_name["ra"]["ucd"]).startswith("pos.eq.ra")
        assert "pixelId" not in by_name  # APDB-internal index, not a PPDB column
        # A cone search on DiaSource uses the table's position (ADQL geometry).
        first = expected.iloc[0]
        cone = service.search(
            "SELECT diaSourceId FROM ppdb.DiaSource WHERE CONTAINS(POINT('ICRS', ra, dec), "
            f"CIRCLE('ICRS', {first['ra']}, {first['dec']}, 0.0003)) = 1"
        ).to_table()
        assert int(first["diaSourceId"]) in {int(v) for v in cone["diaSourceId"]}

        # Re-running a visit (the real CLI) republishes the same rows: nothing doubles.
        result = run_cli(
            ["prompt", "run", "--repo", str(run.path), "--workers", "2", "--visits", str(run.visits[0]),
             "--catalog", run.catalog_url]
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        assert "already in the APDB" in result.stdout or "0 alerts published" in result.stdout
        reloaded = httpx.post(server.url + "/admin/reload", timeout=30)
        assert reloaded.status_code == 200 and "ppdb" in reloaded.json()["schemas"]
        assert _tap_counts(service) == counts
        again = apdb_snapshot(run.path)
        assert {t: len(again[t]) for t in PPDB_TABLES} == counts
    finally:
        server.stop()


def test_publishing_twice_is_idempotent_and_empty_before_any_visit(
    tmp_path: Path, live_prompt_run: Any
) -> None:
    from pachon.core.catalog import open_catalog

    url = f"duckdb:///{tmp_path / 'catalog'}/"
    empty = publish_ppdb(tmp_path, catalog_url=url)  # no APDB yet: the schema exists, its tables are empty
    assert empty.rows == dict.fromkeys(PPDB_TABLES, 0)
    first = publish_ppdb(live_prompt_run.path, catalog_url=url)
    second = publish_ppdb(live_prompt_run.path, catalog_url=url)
    assert first.rows == second.rows and first.rows["DiaSource"] > 0
    with open_catalog(url) as catalog, catalog.connection() as cur:
        n, distinct = cur.execute(
            'SELECT COUNT(*), COUNT(DISTINCT "diaSourceId") FROM ppdb."DiaSource"'
        ).fetchone()
    assert n == distinct == first.rows["DiaSource"]


def test_ppdb_on_a_postgresql_catalog(live_prompt_run: Any, postgres_cluster: Any) -> None:
    """The scaled-out catalog: the same publication into PostgreSQL (q3c-indexed), idempotent too."""
    from pachon.core.catalog import open_catalog

    url = postgres_cluster.create_database(f"ppdb_{uuid.uuid4().hex[:8]}")
    first = publish_ppdb(live_prompt_run.path, catalog_url=url)
    second = publish_ppdb(live_prompt_run.path, catalog_url=url)
    assert first.rows == second.rows
    apdb = apdb_snapshot(live_prompt_run.path)
    with open_catalog(url) as catalog:
        assert catalog.resolve("ppdb", "DiaSource") is not None
        with catalog.connection() as conn, conn.cursor() as cur:
            cur.execute('SELECT "diaSourceId", "isDipole" FROM ppdb."DiaSource" ORDER BY "diaSourceId"')
            rows = cur.fetchall()
            cur.execute("SELECT table_name FROM tap_schema.tables WHERE schema_name = 'ppdb'")
            tables = {r[0] for r in cur.fetchall()}
    expected = apdb["DiaSource"].sort_values("diaSourceId")
    assert [r[0] for r in rows] == expected["diaSourceId"].tolist()
    assert [r[1] for r in rows] == [bool(v) for v in expected["isDipole"]]
    assert {f"ppdb.{t}" for t in PPDB_TABLES} <= tables
