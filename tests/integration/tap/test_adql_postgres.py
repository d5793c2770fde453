"""Translated ADQL on PostgreSQL with pgsphere 1.2 and q3c 2.0: index use and helpers.

Correctness against DuckDB is the differential test's job; here we check what only
PostgreSQL can show: that cones and crossmatches use the q3c index (EXPLAIN), and that
the helper functions of ``install_sql()`` install and behave.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pachon.services.tap.adql import SimpleResolver, parse, translate
from pachon.services.tap.adql.postgres_functions import install_sql
from pachon.services.tap.adql.sample import SampleCatalog, make_sample


@pytest.fixture(scope="module")
def pg(postgres_url: str) -> Iterator[tuple[Any, SampleCatalog]]:
    import psycopg2
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    conn.autocommit = True
    sample = dataclasses.replace(make_sample(60000, seed=4), db_schema="adql_pg_test")
    with conn.cursor() as cur:
        cur.execute(install_sql())
        cur.execute(install_sql())  # idempotent
    sample.load_postgres(conn)
    yield conn, sample
    with conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS "adql_pg_test" CASCADE')
    conn.close()


def _plan(conn: Any, sql: str) -> str:
    with conn.cursor() as cur:
        cur.execute("EXPLAIN (FORMAT JSON) " + sql)
        return json.dumps(cur.fetchone()[0])


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def test_cone_uses_q3c_index(pg: tuple[Any, SampleCatalog]) -> None:
    conn, sample = pg
    resolver = SimpleResolver(sample.tables())
    for where in (
        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150, 2, 0.2)) = 1",
        "DISTANCE(POINT(150, 2), POINT(ra, dec)) < 0.2",
    ):
        sql = translate(parse(f"SELECT objectid FROM cat.object WHERE {where}"), "postgresql", resolver).sql
        plan = _plan(conn, sql)
        assert "object_q3c_idx" in plan, plan
        assert len(_rows(conn, sql)) > 0


def test_crossmatch_uses_q3c_join(pg: tuple[Any, SampleCatalog]) -> None:
    conn, sample = pg
    resolver = SimpleResolver(sample.tables())
    text = (
        "SELECT f.fieldid, o.objectid FROM cat.field AS f JOIN cat.object AS o "
        "ON DISTANCE(POINT(o.ra, o.dec), POINT(COORD1(f.centre), COORD2(f.centre))) < 0.05"
    )
    sql = translate(parse(text), "postgresql", resolver).sql
    assert "q3c_join(" in sql
    assert "object_q3c_idx" in _plan(conn, sql)


def test_helpers(pg: tuple[Any, SampleCatalog]) -> None:
    conn, _ = pg
    row = _rows(
        conn,
        "SELECT pachon_spoint_array(pachon_spoint(ARRAY[10, 20]::double precision[])), "
        "pachon_geom_centroid(ARRAY[0, 0, 2, 0, 2, 2, 0, 2]::double precision[]), "
        "pachon_hasword('The RED giant', 'red'), pachon_hasword('redder', 'red'), "
        "scisql_nanojanskyToAbMag(3631e9), scisql_abMagToNanojansky(0), "
        "pachon_spoly(ARRAY[0, 0, 2, 0, 2, 2]::double precision[]) @> spoint(radians(1.5), radians(0.5))",
    )[0]
    assert row[0] == pytest.approx([10, 20])
    assert row[1] == pytest.approx([1.0, 1.0], abs=1e-3)
    assert row[2:4] == (1, 0)
    assert row[4] == pytest.approx(0.0, abs=1e-12) and row[5] == pytest.approx(3631e9)
    assert row[6] is True
