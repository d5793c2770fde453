#!/usr/bin/env python3
"""Speed of the ADQL translator and of its index-using SQL on DuckDB.

Builds a 1,000,000-row object table in the bench_tap patch (ra 140–160°, dec −8–12°),
following the spatial-index contract (``pachon_hpx`` at HPX_DEPTH, unit vectors, rows
sorted by ``pachon_hpx``), plus a 1,000-row upload table, then reports medians of:

* parse and parse+translate time of the bench_tap workload queries (µs per query);
* cones of 0.05° (20 centres) and 1° as translated (HEALPix ranges + exact test),
  against the same predicate without the index (plain haversine over all rows);
* a 1,000-position upload crossmatch at 1″ (HEALPix cell equi-join + refine).

Usage::

    .venv/bin/python benchmarks/tap/adql_cone_speed.py [--rows 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from collections.abc import Callable

import astropy.units as u
import duckdb
import numpy as np
import pyarrow as pa
from astropy.coordinates import Latitude, Longitude
from cdshealpix import nested

from pachon.core.catalog.model import HPX_DEPTH, ColumnInfo, PositionInfo, TableInfo
from pachon.services.tap.adql import SimpleResolver, parse, translate
from pachon.services.tap.adql.duckdb_functions import install

ARCSEC = 1 / 3600


def build(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    rng = np.random.default_rng(42)
    ra = rng.uniform(140, 160, rows)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-8)), np.sin(np.radians(12)), rows)))
    hpx = nested.lonlat_to_healpix(Longitude(ra * u.deg), Latitude(dec * u.deg), HPX_DEPTH).astype(np.int64)
    a, d = np.radians(ra), np.radians(dec)
    order = np.argsort(hpx)
    objtab = pa.table(  # noqa: F841 - read by DuckDB's replacement scan
        {
            "objectid": (np.arange(rows) + 1_000_000_000_000)[order],
            "ra": ra[order],
            "dec": dec[order],
            "r_mag": rng.uniform(14, 26, rows).astype(np.float32)[order],
            "pachon_hpx": hpx[order],
            "pachon_x": (np.cos(d) * np.cos(a))[order],
            "pachon_y": (np.cos(d) * np.sin(a))[order],
            "pachon_z": np.sin(d)[order],
        }
    )
    con.execute("CREATE SCHEMA bench")
    con.execute("CREATE TABLE bench.object AS SELECT * FROM objtab")
    pick = rng.choice(rows, 1000, replace=False)
    up = pa.table(  # noqa: F841
        {"pos_id": np.arange(1000), "ra": ra[pick] + rng.normal(0, 0.2 * ARCSEC, 1000), "dec": dec[pick]}
    )
    con.execute("CREATE TABLE upload_pos AS SELECT * FROM up")


OBJECT = TableInfo(
    "bench",
    "object",
    (
        ColumnInfo("objectid", "long"),
        ColumnInfo("ra", "double", unit="deg"),
        ColumnInfo("dec", "double", unit="deg"),
        ColumnInfo("r_mag", "float", unit="mag"),
        ColumnInfo("pachon_hpx", "long"),
        ColumnInfo("pachon_x", "double"),
        ColumnInfo("pachon_y", "double"),
        ColumnInfo("pachon_z", "double"),
    ),
    position=PositionInfo("ra", "dec"),
    row_count=1_000_000,
)
UPLOAD = TableInfo(
    "TAP_UPLOAD",
    "pos",
    (ColumnInfo("pos_id", "long"), ColumnInfo("ra", "double"), ColumnInfo("dec", "double")),
    db_schema="",
    db_name="upload_pos",
)
RESOLVER = SimpleResolver([OBJECT, UPLOAD])


def cone_centres() -> list[tuple[float, float]]:
    rng = np.random.default_rng(7)
    return [(float(rng.uniform(141, 159)), float(rng.uniform(-7, 11))) for _ in range(20)]


WORKLOAD = [
    "SELECT objectid, ra, dec, r_mag FROM bench.object WHERE "
    "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.1234, 2.5678, 0.05)) = 1",
    "SELECT * FROM bench.object WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150, 2, 1)) = 1",
    "SELECT COUNT(*) AS n FROM bench.object WHERE r_mag < 20",
    "SELECT TOP 1000 objectid, ra, dec, r_mag FROM bench.object ORDER BY r_mag",
    "SELECT FLOOR(r_mag * 2) / 2.0 AS bin, COUNT(*) AS n FROM bench.object GROUP BY bin ORDER BY bin",
    "SELECT u.pos_id, o.objectid, o.r_mag FROM TAP_UPLOAD.pos AS u JOIN bench.object AS o ON "
    f"DISTANCE(POINT('ICRS', o.ra, o.dec), POINT('ICRS', u.ra, u.dec)) < {ARCSEC!r}",
]


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    print("# adql_cone_speed.py — 2-core, 24 GiB machine; DuckDB", duckdb.__version__)
    print("# µs of CPU per query (process time, best of 7 runs of 100: the machine is shared)")
    for text in WORKLOAD:
        tree = parse(text)
        parse_us = (
            min(timeit.repeat(lambda t=text: parse(t), number=100, repeat=7, timer=time.process_time))
            / 100
            * 1e6
        )
        both_us = (
            min(
                timeit.repeat(
                    lambda t=text: translate(parse(t), "duckdb", RESOLVER, limit=1001),
                    number=100,
                    repeat=7,
                    timer=time.process_time,
                )
            )
            / 100
            * 1e6
        )
        pg_us = (
            min(
                timeit.repeat(
                    lambda t=tree: translate(t, "postgresql", RESOLVER, limit=1001),
                    number=100,
                    repeat=7,
                    timer=time.process_time,
                )
            )
            / 100
            * 1e6
        )
        print(
            f"parse {parse_us:6.0f} µs  parse+translate duckdb {both_us:6.0f} µs  translate pg {pg_us:6.0f} µs  | "
            f"{text[:70]}"
        )

    con = duckdb.connect()
    install(con)
    start = time.perf_counter()
    build(con, args.rows)
    print(f"built {args.rows} rows sorted by pachon_hpx in {time.perf_counter() - start:.1f} s")

    def cone_sql(ra: float, dec: float, r: float, count: bool = False) -> str:
        cols = "COUNT(*)" if count else "objectid, ra, dec, r_mag"
        text = (
            f"SELECT {cols} FROM bench.object WHERE "
            f"CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {ra:.4f}, {dec:.4f}, {r})) = 1"
        )
        return translate(parse(text), "duckdb", RESOLVER, limit=None).sql

    def naive_sql(ra: float, dec: float, r: float) -> str:
        return (
            "SELECT objectid, ra, dec, r_mag FROM bench.object WHERE degrees(2 * asin(least(1.0, sqrt("
            f"power(sin((radians(dec) - radians({dec})) / 2), 2) + cos(radians(dec)) * cos(radians({dec})) * "
            f"power(sin((radians(ra) - radians({ra})) / 2), 2))))) <= {r}"
        )

    centres = cone_centres()
    small = [cone_sql(ra, dec, 0.05) for ra, dec in centres]
    i = iter(range(10**9))
    t_small = median_ms(lambda: con.execute(small[next(i) % 20]).fetchall(), args.repeats * 3)
    rows_small = statistics.mean(len(con.execute(q).fetchall()) for q in small)
    naive_small = median_ms(lambda: con.execute(naive_sql(*centres[0], 0.05)).fetchall(), 3)
    print(
        f"cone 0.05°: {t_small:.1f} ms median over 20 centres (~{rows_small:.0f} rows); "
        f"no index {naive_small:.1f} ms"
    )
    big = cone_sql(150, 2, 1)
    t_big = median_ms(lambda: con.execute(big).fetchall(), args.repeats)
    rows_big = len(con.execute(big).fetchall())
    naive_big = median_ms(lambda: con.execute(naive_sql(150, 2, 1)).fetchall(), 3)
    print(f"cone 1°: {t_big:.1f} ms ({rows_big} rows); no index {naive_big:.1f} ms")
    big_all = translate(
        parse(
            "SELECT * FROM bench.object WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150, 2, 1)) = 1"
        ),
        "duckdb",
        RESOLVER,
    ).sql
    print(f"cone 1° all columns: {median_ms(lambda: con.execute(big_all).fetchall(), args.repeats):.1f} ms")
    xm = translate(parse(WORKLOAD[-1]), "duckdb", RESOLVER, limit=None).sql
    t_xm = median_ms(lambda: con.execute(xm).fetchall(), args.repeats)
    print(
        f'upload crossmatch 1000 × {args.rows} at 1": {t_xm:.1f} ms ({len(con.execute(xm).fetchall())} pairs)'
    )


if __name__ == "__main__":
    main()
