"""Parser: the tree it builds and the errors it raises (line, column, token, expectations)."""

from __future__ import annotations

import time

import pytest

from pachon.services.tap.adql import AdqlSyntaxError, parse
from pachon.services.tap.adql import nodes as n


def test_select_parts() -> None:
    q = parse(
        "SELECT DISTINCT TOP 5 a, b AS c, t.* FROM s.t AS x WHERE a > 1 GROUP BY a HAVING count(*) > 2 ORDER BY 1 DESC OFFSET 3"
    )
    sel = q.body
    assert isinstance(sel, n.Select)
    assert sel.distinct and sel.top == 5
    assert [i.alias.name if i.alias else None for i in sel.items] == [None, "c", None]
    assert isinstance(sel.items[2].expr, n.Star) and sel.items[2].expr.qualifier[0].name == "t"
    table = sel.from_[0]
    assert isinstance(table, n.TableName) and table.schema and table.schema.name == "s"
    assert table.alias and table.alias.name == "x"
    assert isinstance(sel.where, n.Comparison)
    assert isinstance(sel.having, n.Comparison)
    assert q.order_by[0].descending and q.offset == 3


def test_delimited_identifiers_keep_case_and_escape() -> None:
    q = parse('SELECT "Weird ""name""" FROM "My Table"')
    col = q.body.items[0].expr  # type: ignore[attr-defined]
    assert isinstance(col, n.ColumnRef)
    assert col.name.name == 'Weird "name"' and col.name.quoted
    assert col.name.key == 'Weird "name"'
    assert n.Ident("Ra").key == "ra"


def test_joins_and_set_operations() -> None:
    q = parse(
        "SELECT * FROM a NATURAL LEFT JOIN b CROSS JOIN c FULL OUTER JOIN d USING (x, y) "
        "RIGHT JOIN e ON e.k = d.k UNION ALL SELECT * FROM f EXCEPT SELECT * FROM g "
        "INTERSECT SELECT * FROM h"
    )
    body = q.body
    assert isinstance(body, n.SetOp) and body.op == "EXCEPT"
    assert isinstance(body.right.body, n.SetOp) and body.right.body.op == "INTERSECT"
    left = body.left.body
    assert isinstance(left, n.SetOp) and left.op == "UNION" and left.all
    join = left.left.body.from_[0]  # type: ignore[attr-defined]
    assert isinstance(join, n.Join) and join.kind == "RIGHT"
    assert join.left.kind == "FULL" and [u.name for u in join.left.using] == ["x", "y"]  # type: ignore[attr-defined]


def test_functions_geometry_and_udfs() -> None:
    q = parse(
        "SELECT DISTANCE(POINT('ICRS', ra, dec), POINT(1, 2)), DISTANCE(1, 2, 3, 4), "
        "CIRCLE(POINT(1, 2), 3), POLYGON(1, 2, 3, 4, 5, 6), ivo_hasword(a, 'x'), "
        "CAST(x AS DOUBLE PRECISION), COALESCE(a, b), CASE WHEN a > 1 THEN 'big' ELSE 'small' END, "
        "CASE a WHEN 1 THEN 2 END, IN_UNIT(ra, 'rad') FROM t"
    )
    exprs = [i.expr for i in q.body.items]  # type: ignore[attr-defined]
    first = exprs[0]
    assert isinstance(first, n.FuncCall) and first.name == "distance"
    point = first.args[0]
    assert isinstance(point, n.FuncCall) and isinstance(point.coordsys, n.Literal) and len(point.args) == 2
    assert isinstance(exprs[5], n.Cast) and exprs[5].type.name == "DOUBLE PRECISION"
    assert isinstance(exprs[7], n.Case) and exprs[7].operand is None
    assert isinstance(exprs[8], n.Case) and exprs[8].operand is not None


def test_comments_and_numbers() -> None:
    q = parse("SELECT 1, 2.5, .5, 1e3, 3., -4 -- comment\nFROM t -- trailing")
    values = [i.expr.value for i in q.body.items]  # type: ignore[attr-defined]
    assert values == [1, 2.5, 0.5, 1000.0, 3.0, -4]


def test_with_only_at_top_level() -> None:
    q = parse("WITH a AS (SELECT x FROM t), b AS (SELECT x FROM a) SELECT * FROM b")
    assert [c.name.name for c in q.ctes] == ["a", "b"]
    with pytest.raises(AdqlSyntaxError):
        parse("SELECT * FROM (WITH a AS (SELECT x FROM t) SELECT * FROM a) AS q")


@pytest.mark.parametrize(
    ("text", "line", "column", "token", "expected"),
    [
        ("SELECT a\nFORM t", 2, 1, "FORM", "FROM"),
        ("SELECT a, FROM t", 1, 11, "FROM", None),
        ("SELECT a FROM t WHERE", None, None, None, None),
        ("SELECT _a FROM t", 1, 8, "_a", None),
        ("SELECT distance FROM t", 1, 17, "FROM", "reserved ADQL function name"),
        ("SELECT TOP -1 a FROM t", 1, 12, "-", "an integer"),
        ("SELECT a FROM t OFFSET 1.5", 1, 24, "1.5", None),
        ("SELECT CAST(a AS FLOAT) FROM t", 1, 18, "FLOAT", "a type name"),
        ("SELECT COALESCE() FROM t", 1, 8, "COALESCE", None),
        ("SELECT CIRCLE('fk5', 1, 2) FROM t", 1, 15, None, None),
        ("SELECT a FROM t WHERE 'x", 1, 23, "'", None),
    ],
)
def test_syntax_errors_are_positioned(
    text: str, line: int | None, column: int | None, token: str | None, expected: str | None
) -> None:
    with pytest.raises(AdqlSyntaxError) as info:
        parse(text)
    err = info.value
    if line is not None:
        assert (err.line, err.column) == (line, column), str(err)
        assert str(err).startswith(f"line {line}, column {column}: ")
    if token is not None:
        assert err.token == token
    if expected is not None:
        assert expected in str(err)


def test_message_shape() -> None:
    with pytest.raises(AdqlSyntaxError) as info:
        parse("SELECT ra, dec\n  FROM t WHER x = 1")
    assert str(info.value) == "line 2, column 10: unexpected 'WHER' (did you mean WHERE?)"


def test_strict_udfs() -> None:
    parse("SELECT my_func(a) FROM t")
    parse("SELECT ivo_healpix_index(6, ra, dec) FROM t", udfs=[])
    parse("SELECT My_Func(a) FROM t", udfs=["my_func"])
    with pytest.raises(AdqlSyntaxError, match="unknown function 'my_func'"):
        parse("SELECT my_func(a) FROM t", udfs=["other"])
    with pytest.raises(AdqlSyntaxError, match="takes 3 argument"):
        parse("SELECT ivo_healpix_index(6, ra) FROM t")


def test_bad_input() -> None:
    with pytest.raises(AdqlSyntaxError, match="empty"):
        parse("   ")
    with pytest.raises(AdqlSyntaxError, match="NUL"):
        parse("SELECT a FROM t\x00")
    with pytest.raises(AdqlSyntaxError):
        parse("SELECT a FROM t; DROP TABLE t")


def test_parse_is_fast() -> None:
    text = (
        "SELECT objectid, ra, dec, r_mag FROM dp1.object WHERE "
        "CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 150.1, 2.2, 0.05)) = 1"
    )
    parse(text)
    start = time.perf_counter()
    for _ in range(200):
        parse(text)
    per_query = (time.perf_counter() - start) / 200
    assert per_query < 0.005, f"{per_query * 1e6:.0f} µs per parse"
