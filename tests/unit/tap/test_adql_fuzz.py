"""Short property-based fuzzing of the ADQL parser and translator (the long run is
``benchmarks/tap/fuzz_adql.py``): nothing but AdqlError escapes, every generated statement
is a single statement with user text only inside quotes, and executing it on DuckDB
cannot touch a canary table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings

from pachon.services.tap.adql.fuzzing import check_query, mutated_queries, queries, random_text
from pachon.services.tap.adql.safety import UnsafeSqlError, check_sql

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@given(random_text())
@FAST
def test_random_text(text: str) -> None:
    check_query(text)


@given(mutated_queries())
@FAST
def test_mutated_queries(text: str) -> None:
    check_query(text)


@pytest.fixture(scope="module")
def canary() -> Iterator[duckdb.DuckDBPyConnection]:
    from pachon.services.tap.adql.duckdb_functions import install

    con = duckdb.connect()
    install(con)
    con.execute("CREATE SCHEMA fuzz")
    con.execute(
        'CREATE TABLE fuzz.t (id BIGINT, ra DOUBLE, dec DOUBLE, mag DOUBLE, name VARCHAR, "a;b" DOUBLE, '
        '"x""y" DOUBLE, "--c" VARCHAR, "drop table canary" INTEGER, "region" DOUBLE[], pachon_hpx BIGINT, '
        "pachon_x DOUBLE, pachon_y DOUBLE, pachon_z DOUBLE)"
    )
    con.execute(
        "INSERT INTO fuzz.t VALUES (1, 10, 20, 19.5, 'x''; --', 1, 2, '--', 3, [1, 2, 3, 4, 5, 6], 1, 0, 0, 1)"
    )
    con.execute("CREATE TABLE canary (x INTEGER)")
    yield con
    con.close()


@given(queries())
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_queries_cannot_inject(canary: duckdb.DuckDBPyConnection, text: str) -> None:
    for sql in check_query(text):
        if "q3c_" in sql or "spoint" in sql or "numeric" in sql:
            continue  # PostgreSQL dialect: checked statically only
        with contextlib.suppress(duckdb.Error):  # type errors are fine; nothing else may run
            canary.execute(sql).fetchall()
        assert canary.execute("SELECT COUNT(*) FROM canary").fetchall() == [(0,)]


def test_checker_rejects_injections() -> None:
    for bad in [
        "SELECT 1; DROP TABLE t",
        "SELECT 1 -- x",
        "SELECT 1 /* x */",
        "SELECT evil(1)",
        "SELECT 1 # x",
    ]:
        with pytest.raises(UnsafeSqlError):
            check_sql(bad)
    check_sql('SELECT "a;b" FROM "t" WHERE "x" = \'--; /*\' AND (- -1) < 2')
