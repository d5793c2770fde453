"""Catalog-layer benchmark: ingest the TAP bench catalog into DuckDB (and PostgreSQL) and time the SQL.

Measures what the catalog layer controls, below HTTP and VOTable: the ingest time of both
bench tables and the database time of the TAP workload's index-using queries on the stored
layout (HEALPix-sorted object table, objectid-sorted forcedsource table, 2 threads).

    .venv/bin/python /work/shared/bench/gen_catalog.py --formats parquet /tmp/benchcat
    .venv/bin/python benchmarks/catalog/bench_catalog.py /tmp/benchcat --out /tmp/benchcatdb
    .venv/bin/python benchmarks/catalog/bench_catalog.py /tmp/benchcat --postgres postgresql://…

The cone SQL is what the translator emits on DuckDB: HEALPix ranges from
``cdshealpix.nested.cone_search`` (a superset of the circle, shifted to HPX_DEPTH) as a
range predicate on ``pachon_hpx`` that the zone maps prune, then the exact
``dot(unit vector) >= cos(r)`` refine.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from pachon.core.catalog import HPX_DEPTH, open_catalog


def hpx_ranges(ra: float, dec: float, radius_deg: float) -> list[tuple[int, int]]:
    """Merged [lo, hi) ranges at HPX_DEPTH covering a cone."""
    import astropy.units as u
    from cdshealpix.nested import cone_search

    depth = max(0, min(HPX_DEPTH, math.floor(math.log2(58.6 / max(radius_deg, 1e-6))) + 1))
    ipix, dep, _ = cone_search(ra * u.deg, dec * u.deg, radius_deg * u.deg, depth)
    shift = 2 * (HPX_DEPTH - dep.astype(np.int64))
    lo = np.sort(ipix.astype(np.int64) << shift)
    order = np.argsort(ipix.astype(np.int64) << shift)
    hi = ((ipix.astype(np.int64) + 1) << shift)[order]
    ranges: list[tuple[int, int]] = []
    for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
        if ranges and a <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], b))
        else:
            ranges.append((a, b))
    return ranges


def cone_sql(table: str, ra: float, dec: float, radius: float, columns: str) -> str:
    ranges = " OR ".join(f"(pachon_hpx >= {a} AND pachon_hpx < {b})" for a, b in hpx_ranges(ra, dec, radius))
    r, d = math.radians(ra), math.radians(dec)
    x, y, z = math.cos(d) * math.cos(r), math.cos(d) * math.sin(r), math.sin(d)
    return (
        f"SELECT {columns} FROM {table} WHERE ({ranges}) AND "
        f"pachon_x * {x!r} + pachon_y * {y!r} + pachon_z * {z!r} >= {math.cos(math.radians(radius))!r}"
    )


def timed(cat, sql: str, repeats: int = 7) -> tuple[float, list]:
    times = []
    rows: list = []
    for _ in range(repeats):
        with cat.connection() as conn:
            t0 = time.perf_counter()
            cur = (
                conn.cursor() if hasattr(conn, "commit") and not hasattr(conn, "fetch_arrow_table") else conn
            )
            cur.execute(sql)
            rows = cur.fetchall()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), rows


def run(url: str, catdir: Path, table_prefix: str = "bench") -> dict[str, float]:
    figures: dict[str, float] = {}
    cat = open_catalog(url, read_only=False)
    t0 = time.perf_counter()
    r1 = cat.ingest(catdir / "object.parquet", f"{table_prefix}.object", ra="ra", dec="dec", replace=True)
    r2 = cat.ingest(catdir / "forcedsource.parquet", f"{table_prefix}.forcedsource", replace=True)
    figures["ingest_total_s"] = time.perf_counter() - t0
    print(r1.summary())
    print(r2.summary())
    print(f"ingest both tables: {figures['ingest_total_s']:.1f} s")
    cat.close()
    reader = open_catalog(url, read_only=True)
    obj, fs = f"{table_prefix}.object", f"{table_prefix}.forcedsource"
    is_duck = reader.dialect == "duckdb"
    rng = np.random.default_rng(1)
    centres = [(float(rng.uniform(141, 159)), float(rng.uniform(-7, 11))) for _ in range(20)]

    def cone(ra: float, dec: float, radius: float, cols: str) -> str:
        if is_duck:
            return cone_sql(obj, ra, dec, radius, cols)
        return f"SELECT {cols} FROM {obj} WHERE q3c_radial_query(ra, dec, {ra}, {dec}, {radius})"

    small = [timed(reader, cone(ra, dec, 0.05, "objectid, ra, dec, r_mag"))[0] for ra, dec in centres]
    figures["cone_0.05deg_ms"] = statistics.median(small)
    t, rows = timed(reader, cone(150.0, 2.0, 1.0, "objectid, ra, dec, g_mag, r_mag, i_mag, flags"))
    figures["cone_1deg_ms"] = t
    print(f"1 deg cone: {len(rows)} rows")
    t, rows = timed(reader, f"SELECT COUNT(*) FROM {obj} WHERE r_mag < 20")
    figures["count_ms"] = t
    print(f"count r_mag<20: {rows[0][0]}")
    ids = [1_000_000_000_000 + int(i) for i in rng.integers(0, 1_000_000, 20)]
    lc = [
        timed(
            reader,
            f"SELECT f.forcedsourceid, f.objectid, f.band, f.mjd, f.psf_flux, f.psf_flux_err, o.ra, o.dec, "
            f"o.r_mag FROM {fs} AS f JOIN {obj} AS o ON f.objectid = o.objectid WHERE f.objectid = {i}",
        )[0]
        for i in ids
    ]
    figures["lightcurve_ms"] = statistics.median(lc)
    figures["top1000_ms"] = timed(
        reader, f"SELECT objectid, ra, dec, r_mag FROM {obj} ORDER BY r_mag LIMIT 1000"
    )[0]
    figures["histogram_ms"] = timed(
        reader, f"SELECT FLOOR(r_mag * 2) / 2.0 AS bin, COUNT(*) AS n FROM {obj} GROUP BY bin ORDER BY bin"
    )[0]
    reader.close()
    for key, value in figures.items():
        print(f"{key:>20}: {value:8.2f}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "catdir", type=Path, help="folder written by gen_catalog.py (object/forcedsource.parquet)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/tmp/pachon-bench-catalog"), help="DuckDB output folder"
    )
    parser.add_argument(
        "--postgres",
        help="also run against this PostgreSQL URL (pgsphere + q3c installed), or 'auto' for a throwaway "
        "cluster started like the test fixture",
    )
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    print("== DuckDB, one file (duckdb:///…/cat.duckdb), 2 threads; machine: 2 cores, 24 GiB")
    run(f"duckdb:///{args.out.resolve()}/cat.duckdb", args.catdir)
    print("== DuckDB, folder form (duckdb:///…/folder/)")
    run(f"duckdb:///{args.out.resolve()}/folder/", args.catdir)
    if args.postgres == "auto":
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
        from fixtures.postgres import start_cluster

        cluster = start_cluster()
        try:
            print("== PostgreSQL 15 + q3c (throwaway cluster)")
            run(cluster.create_database("bench"), args.catdir)
        finally:
            cluster.stop()
    elif args.postgres:
        print("== PostgreSQL + q3c")
        run(args.postgres, args.catdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
