"""Differential test: the same ADQL on DuckDB and on PostgreSQL (pgsphere + q3c) agrees.

Both databases get the same generated sample catalog (loaded with plain SQL, following
the spatial-index contract: HEALPix + unit vectors sorted on DuckDB, a q3c index on
PostgreSQL). Every query is translated for each back end and run; the row multisets must
be equal, floats to 1e-9 relative. This catches translation traps (integer division,
``log``, ``mod``, rounding, ``LIKE`` case, set operations, geometry) on either side.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from pachon.services.tap.adql import SimpleResolver, parse, translate
from pachon.services.tap.adql.duckdb_functions import install
from pachon.services.tap.adql.postgres_functions import install_sql
from pachon.services.tap.adql.sample import SampleCatalog, make_sample

O = "cat.object"  # noqa: E741 - short names keep the query list readable
S = "cat.source"
F = "cat.field"

QUERIES: list[str] = [
    # --- basic selection, projection, literals
    f"SELECT objectid, ra, dec FROM {O} WHERE objectid < 1000020",
    f"SELECT TOP 10 objectid, r_mag FROM {O} ORDER BY r_mag",
    f"SELECT TOP 10 objectid, r_mag FROM {O} ORDER BY r_mag DESC, objectid",
    f"SELECT objectid FROM {O} ORDER BY objectid OFFSET 1990",
    f"SELECT TOP 5 objectid FROM {O} ORDER BY objectid OFFSET 10",
    f"SELECT DISTINCT type FROM {O}",
    f"SELECT ALL flags FROM {O} WHERE objectid BETWEEN 1000100 AND 1000120",
    f"SELECT objectid, 'const', 42, -2, 3.25, 10e-3, NULL FROM {O} WHERE objectid < 1000003",
    f'SELECT o.objectid AS id, o.r_mag AS "R mag" FROM {O} AS o WHERE o.r_mag < 15',
    f"SELECT * FROM {O} WHERE objectid = 1000007",
    f"SELECT o.* FROM {O} o WHERE o.objectid IN (1000001, 1000002, 1000003)",
    f"SELECT objectid FROM {O} WHERE objectid NOT IN (SELECT objectid FROM {S})",
    f'SELECT "size" FROM {O} WHERE "size" IS NULL',
    f'SELECT count(*) FROM {O} WHERE "size" IS NOT NULL',
    f"SELECT OBJECTID, Ra FROM {O} WHERE OBJECTID < 1000004",
    # --- comparisons and logic
    f"SELECT objectid FROM {O} WHERE r_mag > 24 AND (flags = 3 OR flags = 5)",
    f"SELECT objectid FROM {O} WHERE NOT (r_mag < 24.8) AND flags <> 0",
    f"SELECT objectid FROM {O} WHERE r_mag NOT BETWEEN 15 AND 24.9",
    f"SELECT count(*) FROM {O} WHERE g_mag - r_mag > 1",
    f"SELECT count(*) FROM {O} WHERE flags != 2",
    # --- arithmetic traps
    f"SELECT objectid, flags / 3, flags * 2 + 1, (flags - 8) / 3 FROM {O} WHERE objectid < 1000030",
    f"SELECT objectid, flags / 2.0, 7 / 2, -7 / 2 FROM {O} WHERE objectid < 1000010",
    f"SELECT objectid, mod(flags, 4), mod(r_mag, 2), mod(-7, 3) FROM {O} WHERE objectid < 1000030",
    f"SELECT objectid, log(flux), log10(flux), exp(r_mag / 10), sqrt(flux) FROM {O} WHERE objectid < 1000030",
    f"SELECT objectid, power(r_mag, 2), abs(g_mag - r_mag), ceiling(r_mag), floor(r_mag) FROM {O} "
    "WHERE objectid < 1000030",
    f"SELECT objectid, round(r_mag, 2), round(r_mag), truncate(r_mag, 1), truncate(-r_mag) FROM {O} "
    "WHERE objectid < 1000030",
    f"SELECT objectid, sin(radians(ra)), cos(radians(dec)), tan(radians(dec)), degrees(pi() / 4) FROM {O} "
    "WHERE objectid < 1000030",
    f"SELECT objectid, asin(sin(radians(dec))), acos(0.5), atan(1), atan2(dec, ra), cot(radians(ra)) FROM {O} "
    "WHERE objectid < 1000030",
    f"SELECT objectid, abs(flags - 8), - flags, + flags FROM {O} WHERE objectid < 1000030",
    f"SELECT objectid, ra * 3600 FROM {O} WHERE ra * 3600 < 504100",
    # --- strings
    f"SELECT objectid, name FROM {O} WHERE name LIKE '%red%' AND objectid < 1000200",
    f"SELECT count(*) FROM {O} WHERE type LIKE 'star'",
    f"SELECT count(*) FROM {O} WHERE type ILIKE 'star'",
    f"SELECT count(*) FROM {O} WHERE name NOT LIKE 'obj 0%'",
    f"SELECT objectid, LOWER(type), UPPER(name) FROM {O} WHERE objectid < 1000015",
    f"SELECT objectid, type || '/' || name FROM {O} WHERE objectid < 1000015",
    f"SELECT count(*) FROM {O} WHERE name LIKE '%o''brien%'",
    f"SELECT count(*) FROM {O} WHERE LOWER(name) LIKE '%nebula%'",
    f"SELECT count(*) FROM {O} WHERE name LIKE 'obj 0000_ %'",
    # --- aggregates
    f"SELECT COUNT(*) FROM {O}",
    f"SELECT COUNT(*) AS n, MIN(r_mag), MAX(r_mag), AVG(r_mag), SUM(flags) FROM {O}",
    f"SELECT type, COUNT(*), AVG(g_mag - r_mag) FROM {O} GROUP BY type",
    f"SELECT type, COUNT(*) AS n FROM {O} GROUP BY type HAVING COUNT(*) > 400",
    f"SELECT flags, COUNT(DISTINCT type) FROM {O} GROUP BY flags",
    f"SELECT FLOOR(r_mag * 2) / 2.0 AS bin, COUNT(*) AS n FROM {O} GROUP BY bin ORDER BY bin",
    f"SELECT type, flags, COUNT(*) FROM {O} GROUP BY type, flags HAVING AVG(r_mag) > 19.5",
    f'SELECT COUNT(*), COUNT("size"), SUM("size") FROM {O}',
    f"SELECT band, COUNT(*), MIN(mjd), MAX(flux) FROM {S} GROUP BY band ORDER BY 2 DESC, band",
    f"SELECT objectid, COUNT(*) AS nsrc, AVG(flux) FROM {S} GROUP BY objectid HAVING COUNT(*) >= 3 "
    "AND objectid < 1000020",
    f"SELECT MAX(objectid) AS m FROM {O}",
    f"SELECT SUM(flux) / COUNT(*) FROM {S}",
    # --- joins
    f"SELECT s.sourceid, o.objectid, o.r_mag FROM {S} AS s JOIN {O} AS o ON s.objectid = o.objectid "
    "WHERE o.objectid < 1000010",
    f"SELECT s.sourceid, o.ra FROM {S} s INNER JOIN {O} o USING (objectid) WHERE objectid < 1000010",
    f"SELECT objectid, sourceid, r_mag FROM {S} NATURAL JOIN (SELECT objectid, r_mag FROM {O}) AS q "
    "WHERE objectid < 1000005",
    f"SELECT o.objectid, s.sourceid FROM {O} o LEFT OUTER JOIN {S} s ON o.objectid = s.objectid "
    "WHERE o.objectid BETWEEN 998990 AND 1001005 AND o.objectid > 1000995",
    f"SELECT o.objectid, s.sourceid FROM {S} s RIGHT JOIN {O} o ON o.objectid = s.objectid "
    "WHERE o.objectid > 1001995",
    f"SELECT COUNT(*) FROM {O} o FULL OUTER JOIN {S} s ON o.objectid = s.objectid",
    f"SELECT COUNT(*) FROM {F} CROSS JOIN {F} AS f2",
    f"SELECT COUNT(*) FROM {O} o, {S} s WHERE o.objectid = s.objectid AND s.band = 'g'",
    f"SELECT o.type, COUNT(*) FROM {O} o JOIN {S} s ON o.objectid = s.objectid GROUP BY o.type",
    f"SELECT objectid, COUNT(*) FROM {S} s JOIN {O} o USING (objectid) GROUP BY objectid "
    "HAVING COUNT(*) > 2 ORDER BY objectid OFFSET 990",
    f"SELECT a.objectid, b.objectid FROM {O} a JOIN {O} b ON a.flags = b.flags AND a.objectid < b.objectid "
    "WHERE a.objectid < 1000005 AND b.objectid < 1000030",
    # --- subqueries
    f"SELECT objectid FROM {O} WHERE r_mag = (SELECT MIN(r_mag) FROM {O})",
    f"SELECT objectid FROM {O} o WHERE EXISTS (SELECT * FROM {S} s WHERE s.objectid = o.objectid "
    "AND s.flux > 9990)",
    f"SELECT objectid FROM {O} o WHERE NOT EXISTS (SELECT sourceid FROM {S} s WHERE s.objectid = o.objectid) "
    "AND objectid < 1001010",
    f"SELECT q.t, q.n FROM (SELECT type AS t, COUNT(*) AS n FROM {O} GROUP BY type) AS q WHERE q.n > 100",
    f"SELECT objectid, (SELECT COUNT(*) FROM {S} s WHERE s.objectid = o.objectid) AS nsrc FROM {O} o "
    "WHERE objectid < 1000010",
    f"SELECT * FROM (SELECT TOP 5 objectid, r_mag FROM {O} ORDER BY r_mag) AS q",
    f"SELECT objectid FROM {O} WHERE objectid IN (SELECT TOP 3 objectid FROM {S} ORDER BY flux DESC)",
    f"SELECT COUNT(*) FROM (SELECT DISTINCT objectid FROM {S}) AS q",
    # --- CASE, COALESCE, NULLIF, CAST
    f"SELECT objectid, CASE WHEN r_mag < 18 THEN 'bright' WHEN r_mag < 22 THEN 'mid' ELSE 'faint' END "
    f"FROM {O} WHERE objectid < 1000040",
    f"SELECT objectid, CASE flags WHEN 1 THEN 'one' WHEN 2 THEN 'two' END FROM {O} WHERE objectid < 1000040",
    f'SELECT objectid, COALESCE("size", -1), NULLIF(flags, 3) FROM {O} WHERE objectid < 1000060',
    f"SELECT CASE WHEN r_mag > 20 THEN 1 ELSE 0 END AS faint, COUNT(*) FROM {O} GROUP BY "
    "CASE WHEN r_mag > 20 THEN 1 ELSE 0 END",
    f"SELECT objectid, CAST(flags AS SMALLINT), CAST(flags AS BIGINT), CAST(flags AS REAL), "
    f"CAST(flags AS DOUBLE PRECISION) FROM {O} WHERE objectid < 1000020",
    f"SELECT objectid, CAST(objectid AS VARCHAR(20)), CAST(flags AS CHAR(4)) FROM {O} WHERE objectid < 1000010",
    f"SELECT objectid FROM {O} WHERE CAST(FLOOR(r_mag) AS INTEGER) = 20",
    f"SELECT CAST('2021-01-14T11:25:00' AS TIMESTAMP) FROM {F} WHERE fieldid = 1",
    # --- set operations
    f"SELECT objectid FROM {O} WHERE objectid < 1000010 UNION SELECT objectid FROM {S} WHERE sourceid < 5000012",
    f"SELECT objectid FROM {O} WHERE objectid < 1000010 UNION ALL SELECT objectid FROM {S} "
    "WHERE sourceid < 5000012",
    f"SELECT objectid FROM {O} WHERE objectid < 1000010 INTERSECT SELECT objectid FROM {S}",
    f"SELECT objectid FROM {O} WHERE objectid < 1000010 EXCEPT SELECT objectid FROM {S} WHERE sourceid < 5000009",
    f"SELECT objectid, r_mag FROM {O} WHERE objectid < 1000005 UNION SELECT objectid, r_mag FROM {O} "
    "WHERE objectid > 1001995 ORDER BY r_mag",
    f"(SELECT TOP 3 objectid FROM {O} ORDER BY r_mag) UNION (SELECT TOP 3 objectid FROM {O} ORDER BY r_mag DESC)",
    f"SELECT objectid FROM {O} WHERE objectid < 1000005 UNION SELECT objectid FROM {O} WHERE objectid > 1001995 "
    "ORDER BY 1 DESC OFFSET 2",
    f"SELECT type FROM {O} EXCEPT ALL SELECT type FROM {O} WHERE r_mag > 15",
    # --- WITH
    f"WITH b AS (SELECT objectid, r_mag FROM {O} WHERE r_mag < 15) SELECT COUNT(*) FROM b",
    f"WITH b AS (SELECT objectid FROM {O} WHERE r_mag < 16), s AS (SELECT objectid, flux FROM {S}) "
    "SELECT b.objectid, s.flux FROM b JOIN s ON b.objectid = s.objectid",
    f"WITH t1 AS (SELECT TOP 10 objectid FROM {O} ORDER BY objectid ASC), "
    f"t2 AS (SELECT TOP 10 objectid FROM {O} ORDER BY objectid DESC) SELECT * FROM t1 UNION SELECT * FROM t2",
    # --- cones (index-using forms)
    f"SELECT objectid FROM {O} WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150, 2, 1)) = 1",
    f"SELECT objectid FROM {O} WHERE 1 = CONTAINS(POINT(ra, dec), CIRCLE(145.5, -3.2, 0.7))",
    f"SELECT objectid FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(POINT(155, 5), 1.5)) = 1",
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(150, 2, 3)) = 0",
    f"SELECT COUNT(*) FROM {O} WHERE 0 = CONTAINS(POINT(ra, dec), CIRCLE(150, 2, 3))",
    f"SELECT objectid FROM {O} WHERE DISTANCE(POINT(ra, dec), POINT(151, 3)) < 0.8",
    f"SELECT objectid FROM {O} WHERE DISTANCE(POINT(151, 3), POINT(ra, dec)) <= 0.8",
    f"SELECT objectid FROM {O} WHERE 0.8 > DISTANCE(POINT(ra, dec), POINT(151, 3))",
    f"SELECT objectid FROM {O} WHERE DISTANCE(ra, dec, 151, 3) < 0.8",
    f"SELECT objectid FROM {O} WHERE INTERSECTS(CIRCLE(150, 2, 1), POINT(ra, dec)) = 1",
    f"SELECT objectid FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(150, 2, 1.0 / 60 * 60)) = 1 AND r_mag < 22",
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(150, 2, 2)) = 1 OR r_mag < 14.1",
    f"SELECT TOP 5 objectid, DISTANCE(POINT(ra, dec), POINT(150, 2)) AS d FROM {O} "
    "ORDER BY DISTANCE(POINT(ra, dec), POINT(150, 2))",
    f"SELECT TOP 5 objectid, DISTANCE(POINT(ra, dec), POINT(150, 2)) AS d FROM {O} ORDER BY d DESC",
    f"SELECT objectid FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(159.9, 11.9, 0.5)) = 1",
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), CIRCLE(30, -60, 1)) = 1",
    # --- crossmatches
    f"SELECT a.objectid, b.objectid FROM {O} a JOIN {O} b ON DISTANCE(POINT(a.ra, a.dec), POINT(b.ra, b.dec)) "
    "< 0.15 WHERE a.objectid < b.objectid",
    f"SELECT a.objectid, b.objectid FROM {O} a, {O} b WHERE a.objectid < b.objectid AND "
    "CONTAINS(POINT(a.ra, a.dec), CIRCLE(b.ra, b.dec, 0.15)) = 1",
    f"SELECT COUNT(*) FROM {O} a JOIN {O} b ON 1 = CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, 0.2))",
    f"SELECT a.objectid, COUNT(b.objectid) FROM {O} a LEFT JOIN {O} b ON "
    "DISTANCE(POINT(a.ra, a.dec), POINT(b.ra, b.dec)) < 0.1 AND a.objectid <> b.objectid "
    "WHERE a.objectid < 1000050 GROUP BY a.objectid",
    f"SELECT f.fieldid, COUNT(*) FROM {F} f JOIN {O} o ON "
    "CONTAINS(POINT(o.ra, o.dec), CIRCLE(COORD1(f.centre), COORD2(f.centre), 0.4)) = 1 GROUP BY f.fieldid",
    f"SELECT f.fieldid, COUNT(*) FROM {F} f JOIN {O} o ON CONTAINS(POINT(o.ra, o.dec), CIRCLE(f.centre, f.radius)) = 1 "
    "GROUP BY f.fieldid",
    # --- other geometry
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), POLYGON(149, 1, 151, 1, 151, 3, 149, 3)) = 1",
    f"SELECT objectid FROM {O} WHERE CONTAINS(POINT(ra, dec), POLYGON(POINT(145, -5), POINT(147, -5), "
    "POINT(146, -3))) = 1",
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), BOX(150, 2, 2, 1)) = 1",
    f"SELECT f.fieldid, COUNT(*) FROM {F} f JOIN {O} o ON CONTAINS(POINT(o.ra, o.dec), f.s_region) = 1 "
    "WHERE f.fieldid < 8 GROUP BY f.fieldid",
    f"SELECT fieldid FROM {F} WHERE INTERSECTS(CIRCLE(150, 2, 1.5), s_region) = 1",
    f"SELECT fieldid FROM {F} WHERE INTERSECTS(s_region, POLYGON(147, -1, 153, -1, 150, 4)) = 1",
    f"SELECT fieldid FROM {F} WHERE CONTAINS(CIRCLE(150.3, -0.8, 0.2), s_region) = 1",
    f"SELECT fieldid, AREA(s_region), AREA(CIRCLE(1, 2, 3)) FROM {F} WHERE fieldid < 10",
    f"SELECT fieldid, COORD1(centre), COORD2(centre), COORD1(CENTROID(s_region)), COORD2(CENTROID(s_region)) "
    f"FROM {F} WHERE fieldid < 10",
    f"SELECT fieldid, centre, s_region, POINT(1.5, 2.5), CIRCLE(1, 2, 0.5) FROM {F} WHERE fieldid < 4",
    f"SELECT COORDSYS(centre), COUNT(*) FROM {F} GROUP BY COORDSYS(centre)",
    f"SELECT fieldid FROM {F} WHERE CONTAINS(POINT(150.5, -0.5), s_region) = 1",
    f"SELECT COUNT(*) FROM {O} WHERE CONTAINS(POINT(ra, dec), REGION('Circle ICRS 150 2 1')) = 1",
    f"SELECT CAST('12.3 45.6' AS POINT), CAST('1 2 3' AS CIRCLE) FROM {F} WHERE fieldid = 0",
    # --- UDFs
    f"SELECT objectid, ivo_healpix_index(8, ra, dec) FROM {O} WHERE objectid < 1000030",
    f"SELECT ivo_healpix_index(4, ra, dec) AS cell, COUNT(*) FROM {O} GROUP BY ivo_healpix_index(4, ra, dec)",
    f"SELECT ivo_healpix_center(5, 1000) FROM {F} WHERE fieldid = 0",
    f"SELECT COUNT(*) FROM {O} WHERE ivo_hasword(name, 'RED') = 1",
    f"SELECT objectid, ivo_hasword(name, 'nebula') FROM {O} WHERE objectid < 1000020",
    f"SELECT COUNT(*) FROM {O} WHERE ivo_nocasematch(type, 'STAR') = 1",
    f"SELECT objectid FROM {O} WHERE ivo_interval_overlaps(r_mag, g_mag, 20, 20.01) = 1",
    f"SELECT objectid, scisql_nanojanskyToAbMag(flux), scisql_nanojanskyToAbMagSigma(flux, flux_err) "
    f"FROM {O} WHERE objectid < 1000020",
    f"SELECT objectid, scisql_abMagToNanojansky(r_mag), scisql_abMagToNanojanskySigma(r_mag, 0.01) "
    f"FROM {O} WHERE objectid < 1000020",
    f"SELECT COUNT(*) FROM {O} WHERE ABS(scisql_nanojanskyToAbMag(flux) - r_mag) < 0.001",
    f"SELECT objectid, ivo_epoch_prop_pos(ra, dec, 0, 100, -50, 0, 2000, 2025) FROM {O} WHERE objectid < 1000005",
    f"SELECT objectid, IN_UNIT(ra, 'rad'), IN_UNIT(\"size\", 'deg') FROM {O} WHERE objectid < 1000010",
]


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_norm(v) for v in value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str):
        return value.rstrip(" ")
    return value


def _key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    out = []
    for v in row:
        if v is None:
            out.append((0, ""))
        elif isinstance(v, float):
            out.append((1, float(f"{v:.6g}") if math.isfinite(v) else 0.0))
        elif isinstance(v, int):
            out.append((1, float(v)))
        else:
            out.append((2, repr(v)))
    return tuple(out)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if math.isnan(float(a)) and math.isnan(float(b)):
            return True
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


@pytest.fixture(scope="module")
def sample() -> SampleCatalog:
    return make_sample(3000, seed=11)


@pytest.fixture(scope="module")
def duck(sample: SampleCatalog) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    install(con)
    sample.load_duckdb(con)
    yield con
    con.close()


@pytest.fixture(scope="module")
def pg(postgres_url: str, sample: SampleCatalog) -> Iterator[tuple[Any, SampleCatalog]]:
    import psycopg2
    import sqlalchemy

    url = sqlalchemy.engine.make_url(postgres_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, password=url.password
    )
    conn.autocommit = True
    pg_sample = dataclasses.replace(sample, db_schema="adql_differential")
    with conn.cursor() as cur:
        cur.execute(install_sql())
    pg_sample.load_postgres(conn)
    yield conn, pg_sample
    with conn.cursor() as cur:
        cur.execute('DROP SCHEMA IF EXISTS "adql_differential" CASCADE')
    conn.close()


def test_enough_queries() -> None:
    assert len(QUERIES) >= 100
    assert len(set(QUERIES)) == len(QUERIES)


def test_duckdb_and_postgresql_agree(
    duck: duckdb.DuckDBPyConnection, pg: tuple[Any, SampleCatalog], sample: SampleCatalog
) -> None:
    conn, pg_sample = pg
    duck_resolver = SimpleResolver(sample.tables())
    pg_resolver = SimpleResolver(pg_sample.tables())
    failures = []
    nonempty = 0
    for query in QUERIES:
        tree = parse(query)
        try:
            d_sql = translate(tree, "duckdb", duck_resolver).sql
            p_sql = translate(tree, "postgresql", pg_resolver).sql
            d_rows = [tuple(_norm(v) for v in row) for row in duck.execute(d_sql).fetchall()]
            with conn.cursor() as cur:
                cur.execute(p_sql)
                p_rows = [tuple(_norm(v) for v in row) for row in cur.fetchall()]
        except Exception as exc:
            failures.append(f"{query}\n  error: {exc}")
            continue
        d_sorted, p_sorted = sorted(d_rows, key=_key), sorted(p_rows, key=_key)
        if len(d_sorted) != len(p_sorted) or not all(
            _close(a, b) for a, b in zip(d_sorted, p_sorted, strict=True)
        ):
            diff = [(a, b) for a, b in zip(d_sorted, p_sorted, strict=False) if not _close(a, b)][:3]
            failures.append(
                f"{query}\n  duckdb {len(d_rows)} rows, postgresql {len(p_rows)} rows; first differences {diff}"
            )
        if d_rows:
            nonempty += 1
    print(f"differential: {len(QUERIES) - len(failures)}/{len(QUERIES)} queries agree ({nonempty} non-empty)")
    assert not failures, "\n\n".join(failures)
    assert nonempty >= 0.9 * len(QUERIES)
