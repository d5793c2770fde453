#!/usr/bin/env python3
"""Fuzz the ADQL parser and translator for a few minutes (a benchmark job, not a unit test).

Three hypothesis generators (random text, grammar-shaped queries carrying injection
attempts through identifiers, strings, comments and ``;``, and mutations of valid
queries) run in batches until the time is up. For every input: only AdqlError may
escape; every SQL statement produced (DuckDB and PostgreSQL dialects) must pass the
single-statement/quoted-identifier check; DuckDB SQL is executed against a table with
hostile column names and a canary table that must survive.

Usage::

    .venv/bin/python benchmarks/tap/fuzz_adql.py            # 3 minutes
    .venv/bin/python benchmarks/tap/fuzz_adql.py --minutes 10
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter

import duckdb
from hypothesis import HealthCheck, given, seed, settings

from pachon.services.tap.adql.duckdb_functions import install
from pachon.services.tap.adql.fuzzing import check_query, mutated_queries, queries, random_text


def _connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    install(con)
    con.execute("CREATE SCHEMA fuzz")
    con.execute(
        'CREATE TABLE fuzz.t (id BIGINT, ra DOUBLE, dec DOUBLE, mag DOUBLE, name VARCHAR, "a;b" DOUBLE, '
        '"x""y" DOUBLE, "--c" VARCHAR, "drop table canary" INTEGER, "region" DOUBLE[], pachon_hpx BIGINT, '
        "pachon_x DOUBLE, pachon_y DOUBLE, pachon_z DOUBLE)"
    )
    con.execute(
        "INSERT INTO fuzz.t VALUES (1, 10, 20, 19.5, 'x', 1, 2, '--', 3, [1, 2, 3, 4, 5, 6], 1, 0, 0, 1)"
    )
    con.execute("CREATE TABLE canary (x INTEGER)")
    con.execute("INSERT INTO canary VALUES (42)")
    return con


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to fuzz (default 3)")
    parser.add_argument("--batch", type=int, default=300, help="examples per hypothesis batch")
    args = parser.parse_args()

    con = _connection()
    stats: Counter[str] = Counter()
    failures: list[str] = []

    def one(text: str) -> None:
        stats["inputs"] += 1
        try:
            sqls = check_query(text)
        except Exception:
            failures.append(f"{text!r}\n{traceback.format_exc()}")
            return
        if sqls:
            stats["translated"] += 1
        for sql in sqls:
            stats["statements"] += 1
            if "q3c_" in sql or "spoint" in sql or "numeric" in sql:
                continue
            try:
                con.execute(sql).fetchall()
                stats["executed"] += 1
            except duckdb.Error:
                stats["db_errors"] += 1
            if con.execute("SELECT COUNT(*) FROM canary").fetchall() != [(1,)]:
                failures.append(f"canary touched by {sql!r}")

    strategies = {"random": random_text(), "grammar": queries(), "mutation": mutated_queries()}
    deadline = time.monotonic() + args.minutes * 60
    batch = 0
    while time.monotonic() < deadline:
        for name, strategy in strategies.items():
            if time.monotonic() >= deadline:
                break

            @seed(batch)
            @settings(
                max_examples=args.batch, deadline=None, database=None, suppress_health_check=list(HealthCheck)
            )
            @given(strategy)
            def run(text: str) -> None:
                if time.monotonic() < deadline:
                    one(text)

            run()
            stats[f"batches_{name}"] += 1
            batch += 1
    print(f"fuzz_adql: {args.minutes:g} min, {dict(stats)}")
    print(f"fuzz_adql: {len(failures)} failures")
    for failure in failures[:10]:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
