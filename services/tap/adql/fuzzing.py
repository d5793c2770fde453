"""Hypothesis strategies and checks for fuzzing the ADQL parser and translator.

Used by the unit test ``tests/unit/tap/test_adql_fuzz.py`` (seconds) and the benchmark job
``benchmarks/tap/fuzz_adql.py`` (minutes). Requires ``hypothesis`` (a test dependency);
nothing in the service imports this module.

Three generators: random text, grammar-shaped queries whose identifiers, strings and
comments carry injection attempts (``;``, ``--``, ``/*``, quotes, backslashes, NUL), and
mutations of a corpus of valid queries. :func:`check_query` asserts the properties: only
:class:`~.errors.AdqlError` escapes, and every generated statement passes
:func:`~.safety.check_sql` (one statement, user text only inside quotes).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pachon.core.catalog.model import ColumnInfo, PositionInfo, TableInfo

from .errors import AdqlError
from .parser import parse
from .safety import check_sql
from .translate import translate

__all__ = [
    "CORPUS",
    "FUZZ_COLUMNS",
    "FuzzResolver",
    "check_query",
    "mutated_queries",
    "queries",
    "random_text",
]

NASTY = ["'", '"', ";", "--", "/*", "*/", "\\", "\n", "DROP TABLE canary", "$$", "%", "_", "é", "\u2028"]
"""Fragments for identifiers and strings (NUL is tried by the mutation and random generators)."""

FUZZ_COLUMNS = (
    ColumnInfo("id", "long"),
    ColumnInfo("ra", "double", unit="deg"),
    ColumnInfo("dec", "double", unit="deg"),
    ColumnInfo("mag", "double", unit="mag"),
    ColumnInfo("name", "char", arraysize="*"),
    ColumnInfo("a;b", "double", delimited=True),
    ColumnInfo('x"y', "double", delimited=True),
    ColumnInfo("--c", "char", arraysize="*", delimited=True),
    ColumnInfo("drop table canary", "int", delimited=True),
    ColumnInfo("region", "double", arraysize="*", xtype="polygon", delimited=True),
    ColumnInfo("pachon_hpx", "long"),
    ColumnInfo("pachon_x", "double"),
    ColumnInfo("pachon_y", "double"),
    ColumnInfo("pachon_z", "double"),
)


class FuzzResolver:
    """Resolves any table name to a table with :data:`FUZZ_COLUMNS` (stored as ``fuzz.t``)."""

    def resolve(self, schema: str | None, table: str) -> TableInfo | None:
        if not table or "\x00" in table:
            return None
        return TableInfo(
            schema or "fuzz",
            table,
            FUZZ_COLUMNS,
            position=PositionInfo("ra", "dec"),
            db_schema="fuzz",
            db_name="t",
        )


def _ident(nasty: bool) -> st.SearchStrategy[str]:
    plain = st.sampled_from(["id", "ra", "dec", "mag", "name", "t", "q", "x"])
    quoted = st.sampled_from(['"a;b"', '"x""y"', '"--c"', '"drop table canary"', '"region"'])
    weird = (
        st.lists(st.sampled_from(list("abc;'-/*\\ \n\"") + NASTY), min_size=1, max_size=8)
        .map("".join)
        .map(lambda s: '"' + s.replace('"', '""') + '"')
    )
    if nasty:
        return st.one_of(plain, quoted, weird)
    return st.one_of(plain, quoted)


def _string() -> st.SearchStrategy[str]:
    body = st.lists(st.sampled_from(list("ab %_") + NASTY), max_size=10).map("".join)
    return body.map(lambda s: "'" + s.replace("'", "''") + "'")


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**12), 10**12).map(str),
        st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: repr(f) if "e" not in repr(f) else "1.5"),
        st.sampled_from(["0", "1", "0.5", "90", "360", "-91", "1e300", "2", "3"]),
    )


def _comment() -> st.SearchStrategy[str]:
    return st.sampled_from(["", " -- ; DROP TABLE canary\n", "\n-- '\n", " "])


@st.composite
def _value(draw: Any, depth: int = 0) -> str:
    leaves = [_ident(True), _number(), _string(), st.just("NULL")]
    if depth > 2:
        return draw(st.one_of(*leaves))
    choice = draw(st.integers(0, 11))
    sub = _value(depth + 1)
    if choice <= 3:
        return draw(st.one_of(*leaves))
    if choice == 4:
        return f"({draw(sub)} {draw(st.sampled_from(['+', '-', '*', '/', '||']))} {draw(sub)})"
    if choice == 5:
        arity = {
            "abs": 1,
            "log": 1,
            "sqrt": 1,
            "round": 2,
            "LOWER": 1,
            "UPPER": 1,
            "COALESCE": 2,
            "ivo_hasword": 2,
            "scisql_nanojanskyToAbMag": 1,
            "mod": 2,
            "power": 2,
            "truncate": 1,
            "nosuchfn": 1,
        }
        fn = draw(st.sampled_from(sorted(arity)))
        n = arity[fn] if draw(st.integers(0, 9)) else draw(st.integers(0, 3))
        return f"{fn}({', '.join(draw(sub) for _ in range(n))})"
    if choice == 6:
        return f"DISTANCE(POINT({draw(sub)}, {draw(sub)}), POINT({draw(_number())}, {draw(_number())}))"
    if choice == 7:
        return f"CAST({draw(sub)} AS {draw(st.sampled_from(['INTEGER', 'VARCHAR(3)', 'DOUBLE PRECISION', 'POINT']))})"
    if choice == 8:
        return f"CASE WHEN {draw(_cond(depth + 1))} THEN {draw(sub)} ELSE {draw(sub)} END"
    if choice == 9:
        return f"(SELECT {draw(sub)} FROM {draw(_ident(False))})"
    if choice == 10:
        return f"POLYGON({', '.join(draw(_number()) for _ in range(draw(st.sampled_from([6, 8, 8, 7]))))})"
    return f"{draw(_ident(True))}.{draw(_ident(True))}"


@st.composite
def _cond(draw: Any, depth: int = 0) -> str:
    v = _value(depth + 1)
    choice = draw(st.integers(0, 9))
    if choice <= 3:
        return f"{draw(v)} {draw(st.sampled_from(['=', '<', '>=', '<>', '!=']))} {draw(v)}"
    if choice == 4:
        return f"{draw(v)} {draw(st.sampled_from(['LIKE', 'NOT LIKE', 'ILIKE']))} {draw(_string())}"
    if choice == 5:
        return f"{draw(v)} BETWEEN {draw(v)} AND {draw(v)}"
    if choice == 6:
        return (
            f"CONTAINS(POINT(ra, dec), CIRCLE({draw(_number())}, {draw(_number())}, {draw(_number())})) = "
            + draw(st.sampled_from(["1", "0"]))
        )
    if choice == 7 and depth < 2:
        return (
            f"({draw(_cond(depth + 1))} {draw(st.sampled_from(['AND', 'OR']))} NOT {draw(_cond(depth + 1))})"
        )
    if choice == 8:
        return f"{draw(v)} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    return f"{draw(v)} IN ({draw(v)}, {draw(_string())})"


@st.composite
def queries(draw: Any) -> str:
    """Grammar-shaped ADQL queries carrying injection attempts."""
    items = ", ".join(
        draw(_value()) + draw(st.sampled_from(["", " AS " + draw(_ident(True))]))
        for _ in range(draw(st.integers(1, 3)))
    )
    if draw(st.booleans()):
        items = draw(st.sampled_from(["*", "t.*", "COUNT(*)"])) if draw(st.booleans()) else items
    top = draw(st.sampled_from(["", "TOP 5 ", "TOP 0 ", "DISTINCT "]))
    table = draw(st.sampled_from(["fuzz.t", "t", '"weird;name"', "TAP_UPLOAD.up", "s.t AS q"]))
    join = draw(
        st.sampled_from(
            [
                "",
                " JOIN fuzz.u AS u ON u.id = t.id",
                " NATURAL JOIN fuzz.v",
                " , fuzz.w",
                " JOIN fuzz.x AS x ON DISTANCE(POINT(x.ra, x.dec), POINT(t.ra, t.dec)) < 0.01",
            ]
        )
    )
    where = f" WHERE {draw(_cond())}" if draw(st.booleans()) else ""
    group = " GROUP BY id" if draw(st.booleans()) else ""
    order = draw(st.sampled_from(["", " ORDER BY 1", " ORDER BY id DESC", f" ORDER BY {draw(_value())}"]))
    offset = draw(st.sampled_from(["", " OFFSET 3"]))
    body = f"SELECT {top}{items} FROM {table}{join}{where}{group}"
    if draw(st.integers(0, 5)) == 0:
        body = f"{body} UNION SELECT {items} FROM fuzz.t"
    body += order + offset
    if draw(st.integers(0, 6)) == 0:
        body = f"WITH c AS (SELECT id FROM fuzz.t) {body}"
    return draw(_comment()) + body + draw(_comment())


CORPUS = [
    "SELECT TOP 10 id, ra, dec FROM fuzz.t WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 1)) = 1",
    "SELECT t.id, u.id FROM fuzz.t AS t JOIN fuzz.u AS u ON DISTANCE(POINT(t.ra, t.dec), POINT(u.ra, u.dec)) < 0.001",
    "SELECT name, COUNT(*) FROM fuzz.t WHERE name LIKE 'a%' GROUP BY name HAVING COUNT(*) > 1 ORDER BY 2 DESC",
    "WITH c AS (SELECT id, mag FROM fuzz.t) SELECT * FROM c WHERE mag BETWEEN 1 AND 2 OFFSET 5",
    'SELECT "a;b", "x""y", "--c" FROM fuzz.t WHERE "drop table canary" = 1',
    "SELECT id FROM fuzz.t UNION ALL SELECT id FROM fuzz.u EXCEPT SELECT id FROM fuzz.v",
    "SELECT CASE WHEN mag > 20 THEN 'faint' ELSE 'bright' END, CAST(id AS VARCHAR(10)) FROM fuzz.t",
    'SELECT AREA("region"), CENTROID("region") FROM fuzz.t WHERE INTERSECTS("region", CIRCLE(1, 2, 3)) = 1',
    "SELECT id FROM fuzz.t WHERE id IN (SELECT id FROM fuzz.u WHERE name = 'x''; DROP TABLE canary; --')",
]


@st.composite
def mutated_queries(draw: Any) -> str:
    """A corpus query with random edits (insertions of nasty fragments, deletions, swaps)."""
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        if op == 0:
            text = (
                text[:pos]
                + draw(st.sampled_from([*NASTY, "SELECT", ")", "(", ",", " OR 1=1", "'"]))
                + text[pos:]
            )
        elif op == 1:
            end = min(len(text), pos + draw(st.integers(1, 6)))
            text = text[:pos] + text[end:]
        else:
            text = text[:pos] + draw(st.text(max_size=3)) + text[pos:]
    return text


def random_text() -> st.SearchStrategy[str]:
    """Arbitrary text, biased towards ADQL-ish characters."""
    return st.one_of(
        st.text(max_size=60),
        st.text(alphabet=st.sampled_from(list("SELECT FROM WHERE ()*,.'\";-/\n0123456789abc")), max_size=80),
    )


def check_query(text: str, resolver: Any | None = None) -> list[str]:
    """Parse and translate for both dialects; returns the SQL produced (possibly none).

    Raises AssertionError when anything but an :class:`AdqlError` escapes or when a
    generated statement fails :func:`check_sql`.
    """
    resolver = resolver or FuzzResolver()
    try:
        tree = parse(text)
    except AdqlError:
        return []
    out = []
    for dialect in ("duckdb", "postgresql"):
        try:
            sql = translate(tree, dialect, resolver, limit=100).sql
        except AdqlError:
            continue
        check_sql(sql)
        out.append(sql)
    return out
