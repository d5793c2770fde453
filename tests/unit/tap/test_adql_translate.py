"""Translator: SQL snapshots for key constructs, output metadata, limits and semantic errors."""

from __future__ import annotations

import re

import pytest

from pachon.core.catalog.model import ColumnInfo, PositionInfo, TableInfo
from pachon.services.tap.adql import AdqlSemanticError, SimpleResolver, parse, translate

OBJECT = TableInfo(
    "dp1",
    "Object",
    (
        ColumnInfo("objectId", "long", ucd="meta.id;meta.main", description="Unique id"),
        ColumnInfo("coord_ra", "double", unit="deg", ucd="pos.eq.ra"),
        ColumnInfo("coord_dec", "double", unit="deg", ucd="pos.eq.dec"),
        ColumnInfo("r_psfFlux", "float", unit="nJy", ucd="phot.flux"),
        ColumnInfo("select", "int", delimited=True),
        ColumnInfo("Mixed Case", "char", arraysize="*", delimited=True),
        ColumnInfo("pachon_hpx", "long"),
        ColumnInfo("pachon_x", "double"),
        ColumnInfo("pachon_y", "double"),
        ColumnInfo("pachon_z", "double"),
    ),
    position=PositionInfo("coord_ra", "coord_dec"),
    row_count=1_000_000,
)
SOURCE = TableInfo(
    "dp1",
    "Source",
    (
        ColumnInfo("sourceId", "long"),
        ColumnInfo("objectId", "long"),
        ColumnInfo("band", "char", arraysize="1"),
    ),
)
UPLOAD = TableInfo(
    "TAP_UPLOAD",
    "mine",
    (
        ColumnInfo("id", "int"),
        ColumnInfo("ra", "double", unit="deg"),
        ColumnInfo("dec", "double", unit="deg"),
    ),
    db_schema="",
    db_name="upload_1_mine",
)
RESOLVER = SimpleResolver([OBJECT, SOURCE, UPLOAD])


def sql(text: str, dialect: str = "duckdb", limit: int | None = None) -> str:
    return translate(parse(text), dialect, RESOLVER, limit).sql


def test_identifiers_are_resolved_quoted_and_aliased() -> None:
    assert sql("SELECT objectid, COORD_RA FROM dp1.object") == (
        'SELECT "_t1"."objectId" AS "objectId", "_t1"."coord_ra" AS "coord_ra" FROM "dp1"."Object" AS "_t1"'
    )
    assert sql('SELECT "select", "Mixed Case" FROM dp1.Object o') == (
        'SELECT "_t1"."select" AS "select", "_t1"."Mixed Case" AS "Mixed Case" FROM "dp1"."Object" AS "_t1"'
    )


def test_delimited_identifiers_are_exact() -> None:
    with pytest.raises(AdqlSemanticError, match="unknown column"):
        sql('SELECT "objectid" FROM dp1.Object')
    with pytest.raises(AdqlSemanticError, match="unknown table"):
        sql('SELECT * FROM dp1."object"')


def test_star_hides_index_columns() -> None:
    tr = translate(parse("SELECT * FROM dp1.Object"), "duckdb", RESOLVER)
    assert [c.name for c in tr.columns] == [
        "objectId",
        "coord_ra",
        "coord_dec",
        "r_psfFlux",
        "select",
        "Mixed Case",
    ]
    assert "pachon_" not in tr.sql
    with pytest.raises(AdqlSemanticError):
        sql("SELECT pachon_hpx FROM dp1.Object")


def test_output_metadata_and_unique_names() -> None:
    tr = translate(
        parse(
            "SELECT o.objectId, s.objectId, COUNT(*), COUNT(*), MAX(o.r_psfFlux), o.coord_ra * 2 AS twice, "
            "POINT(o.coord_ra, o.coord_dec), DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(1, 2)) "
            "FROM dp1.Object o JOIN dp1.Source s ON o.objectId = s.objectId GROUP BY o.objectId, s.objectId, "
            "o.coord_ra, o.coord_dec"
        ),
        "duckdb",
        RESOLVER,
    )
    names = [c.name for c in tr.columns]
    assert names == ["objectId", "objectId_2", "count", "count_2", "max", "twice", "point", "distance"]
    by_name = {c.name: c for c in tr.columns}
    assert by_name["objectId"].ucd == "meta.id;meta.main" and by_name["objectId"].description == "Unique id"
    assert by_name["count"].datatype == "long"
    assert by_name["max"].unit == "nJy" and by_name["max"].datatype == "float"
    assert by_name["twice"].datatype == "double" and by_name["twice"].unit == "deg"
    assert (by_name["point"].datatype, by_name["point"].arraysize, by_name["point"].xtype) == (
        "double",
        "2",
        "point",
    )
    assert by_name["distance"].unit == "deg"
    assert tr.tables == [OBJECT, SOURCE]


def test_limits_top_and_offset() -> None:
    assert sql("SELECT TOP 10 objectId FROM dp1.Object").endswith(" LIMIT 10")
    assert sql("SELECT TOP 10 objectId FROM dp1.Object", limit=5).endswith(" LIMIT 5")
    assert sql("SELECT TOP 10 objectId FROM dp1.Object", limit=50).endswith(" LIMIT 10")
    assert sql("SELECT objectId FROM dp1.Object OFFSET 7").endswith(" OFFSET 7")
    assert sql("SELECT objectId FROM dp1.Object OFFSET 7", limit=3).endswith(" LIMIT 3 OFFSET 7")
    tr = translate(parse("SELECT TOP 4 objectId FROM dp1.Object"), "duckdb", RESOLVER, limit=101)
    assert tr.top == 4
    union = sql(
        "SELECT TOP 3 objectId FROM dp1.Object UNION SELECT objectId FROM dp1.Source ORDER BY objectId",
        limit=11,
    )
    assert union == (
        '(SELECT "_t1"."objectId" AS "objectId" FROM "dp1"."Object" AS "_t1" LIMIT 3) UNION '
        '(SELECT "_t2"."objectId" AS "objectId" FROM "dp1"."Source" AS "_t2") ORDER BY 1 LIMIT 11'
    )


def test_subquery_top_stays_inside() -> None:
    text = "SELECT * FROM (SELECT TOP 2 objectId FROM dp1.Object ORDER BY objectId DESC) AS q"
    assert sql(text, limit=100) == (
        'SELECT "_t2"."objectId" AS "objectId" FROM (SELECT "_t1"."objectId" AS "objectId" FROM "dp1"."Object" '
        'AS "_t1" ORDER BY 1 DESC LIMIT 2) AS "_t2" LIMIT 100'
    )


def test_math_traps() -> None:
    duck = sql("SELECT log(r_psfFlux), 7 / 2, objectId / 2, mod(3.5, 2), LOWER('A') FROM dp1.Object")
    assert "ln(CAST(" in duck and "(7 // 2)" in duck and '("_t1"."objectId" // 2)' in duck
    assert "fmod(" in duck
    pg = sql("SELECT log(r_psfFlux), 7 / 2, mod(3.5, 2), round(coord_ra, 3) FROM dp1.Object", "postgresql")
    assert "ln(CAST(" in pg and "(7 / 2)" in pg
    assert "mod(CAST(CAST(3.5 AS double precision) AS numeric)" in pg
    assert 'round(CAST("_t1"."coord_ra" AS numeric), 3)' in pg


def test_like_stays_case_sensitive() -> None:
    assert "LIKE 'a%'" in sql("SELECT objectId FROM dp1.Object WHERE \"Mixed Case\" LIKE 'a%'")
    assert "ILIKE 'a%'" in sql("SELECT objectId FROM dp1.Object WHERE \"Mixed Case\" ILIKE 'a%'")


def test_strings_are_escaped() -> None:
    out = sql("SELECT objectId FROM dp1.Object WHERE \"Mixed Case\" = 'x''; DROP TABLE t; --'")
    assert "'x''; DROP TABLE t; --'" in out
    # Outside string literals nothing but our own SQL remains.
    assert ";" not in re.sub(r"'(?:[^']|'')*'", "", out)


@pytest.mark.parametrize(
    "where",
    [
        "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 10, 20, 0.1)) = 1",
        "1 = CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 20, 0.1))",
        "DISTANCE(POINT(coord_ra, coord_dec), POINT(10, 20)) < 0.1",
        "DISTANCE(POINT(10, 20), POINT(coord_ra, coord_dec)) <= 0.1",
        "0.1 > DISTANCE(POINT(coord_ra, coord_dec), POINT(10, 20))",
        "INTERSECTS(CIRCLE(10, 20, 0.1), POINT(coord_ra, coord_dec)) = 1",
    ],
)
def test_cone_uses_the_index(where: str) -> None:
    duck = sql(f"SELECT objectId FROM dp1.Object WHERE {where}")
    assert '"_t1"."pachon_hpx" BETWEEN' in duck
    assert '("_t1"."pachon_x" - ' in duck
    pg = sql(f"SELECT objectId FROM dp1.Object WHERE {where}", "postgresql")
    assert 'q3c_radial_query("_t1"."coord_ra", "_t1"."coord_dec", ' in pg


def test_contains_zero_is_a_negation() -> None:
    duck = sql(
        "SELECT objectId FROM dp1.Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 20, 1)) = 0"
    )
    assert duck.count("(NOT ") == 1


def test_crossmatch_becomes_cell_join() -> None:
    text = (
        "SELECT u.id, o.objectId FROM TAP_UPLOAD.mine AS u JOIN dp1.Object AS o "
        "ON DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(u.ra, u.dec)) < 0.0003"
    )
    duck = sql(text)
    assert (
        '(SELECT "_t1".*, unnest(pachon_hpx_neighbours(pachon_healpix("_t1"."ra", "_t1"."dec", 15), 15)) '
        'AS "_pachon_cell" FROM "upload_1_mine" AS "_t1") AS "_t1"'
    ) in duck
    assert '(("_t2"."pachon_hpx" >> 2) = "_t1"."_pachon_cell")' in duck
    pg = sql(text, "postgresql")
    assert 'q3c_join("_t1"."ra", "_t1"."dec", "_t2"."coord_ra", "_t2"."coord_dec",' in pg


def test_crossmatch_not_rewritten_under_or() -> None:
    text = (
        "SELECT u.id FROM TAP_UPLOAD.mine AS u, dp1.Object AS o WHERE "
        "DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(u.ra, u.dec)) < 0.0003 OR u.id = 1"
    )
    assert "unnest" not in sql(text)


def test_geometry_output_is_dali() -> None:
    duck = sql("SELECT POINT(coord_ra, coord_dec), CIRCLE(1, 2, 3) FROM dp1.Object")
    assert '[CAST("_t1"."coord_ra" AS DOUBLE), CAST("_t1"."coord_dec" AS DOUBLE)]' in duck
    pg = sql("SELECT POLYGON(1, 2, 3, 4, 5, 6) FROM dp1.Object", "postgresql")
    assert "ARRAY[CAST(1.0 AS double precision)" in pg


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("SELECT x FROM dp1.Object", "unknown column x", 1, 8),
        ("SELECT objectid FROM dp1.Objekt", "did you mean dp1.object", 1, 22),
        ("SELECT r_psfflx FROM dp1.Object", "did you mean r_psfflux", 1, 8),
        ("SELECT q.objectId FROM dp1.Object o", "unknown table or alias q", 1, 8),
        ("SELECT objectId FROM dp1.Object o, dp1.Source s", "ambiguous", 1, 8),
        ("SELECT foo(objectId) FROM dp1.Object", "unknown function foo", 1, 8),
        ("SELECT band + 1 FROM dp1.Source", "needs numbers", 1, 8),
        ("SELECT IN_UNIT(objectId, 'm') FROM dp1.Object", "known unit", 1, 16),
        ("SELECT IN_UNIT(coord_ra, 'm') FROM dp1.Object", "cannot convert", 1, 26),
        ("SELECT REGION('Union ICRS (Circle 1 2 3)') FROM dp1.Object", "unsupported STC-S", 1, 15),
        ("SELECT objectId FROM dp1.Object UNION SELECT objectId, band FROM dp1.Source", "columns", 1, 8),
    ],
)
def test_semantic_errors_are_positioned(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(AdqlSemanticError) as info:
        sql(text)
    assert message.lower() in str(info.value).lower()
    assert (info.value.line, info.value.column) == (line, column), str(info.value)


def test_translation_is_fast() -> None:
    import time

    text = (
        "SELECT objectId, coord_ra, coord_dec, r_psfFlux FROM dp1.Object WHERE "
        "CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 150.1, 2.2, 0.05)) = 1"
    )
    tree = parse(text)
    translate(tree, "duckdb", RESOLVER)
    start = time.perf_counter()
    for _ in range(50):
        translate(tree, "duckdb", RESOLVER)
    per = (time.perf_counter() - start) / 50
    assert per < 0.02, f"{per * 1e3:.2f} ms per translation"
