"""A last check on generated SQL: one statement, only our own words outside quotes.

The translator builds SQL from the tree alone, so user text can only reach the SQL as a
double-quoted identifier (resolved against the catalog) or a single-quoted literal. This
check proves that property for each generated statement before it is returned: outside
quoted tokens there may be no ``;``, no comment opener, and no bare word that is not a
keyword or function name the translator itself writes. It costs a few microseconds per
query and turns any future translator bug into a refused query instead of an injection.
"""

from __future__ import annotations

import re

__all__ = ["ALLOWED_WORDS", "UnsafeSqlError", "check_sql"]

ALLOWED_WORDS = frozenset(
    w.lower()
    for w in [
        "SELECT",
        "DISTINCT",
        "AS",
        "FROM",
        "WHERE",
        "GROUP",
        "BY",
        "HAVING",
        "ORDER",
        "ASC",
        "DESC",
        "LIMIT",
        "OFFSET",
        "UNION",
        "INTERSECT",
        "EXCEPT",
        "ALL",
        "WITH",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "OUTER",
        "CROSS",
        "ON",
        "AND",
        "OR",
        "NOT",
        "BETWEEN",
        "IN",
        "LIKE",
        "ILIKE",
        "IS",
        "NULL",
        "EXISTS",
        "CASE",
        "WHEN",
        "THEN",
        "ELSE",
        "END",
        "CAST",
        "TRUE",
        "FALSE",
        "ARRAY",
        "DOUBLE",
        "PRECISION",
        "VARCHAR",
        "INTEGER",
        "BIGINT",
        "SMALLINT",
        "REAL",
        "TIMESTAMP",
        "CHAR",
        "DECIMAL",
        "NUMERIC",
        "count",
        "avg",
        "min",
        "max",
        "sum",
        "ln",
        "log10",
        "exp",
        "sqrt",
        "abs",
        "ceil",
        "floor",
        "degrees",
        "radians",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "atan2",
        "cot",
        "power",
        "pi",
        "random",
        "round",
        "trunc",
        "fmod",
        "mod",
        "lower",
        "upper",
        "coalesce",
        "nullif",
        "least",
        "string_agg",
        "unnest",
        "spoint",
        "scircle",
        "spoly",
        "area",
        "q3c_radial_query",
        "q3c_join",
        "healpix_nest",
        "center_of_healpix_nest",
        "pachon_geom_contains",
        "pachon_geom_intersects",
        "pachon_geom_area",
        "pachon_geom_centroid",
        "pachon_healpix",
        "pachon_hpx_neighbours",
        "pachon_healpix_center",
        "pachon_hasword",
        "pachon_spoint",
        "pachon_scircle",
        "pachon_spoly",
        "pachon_spoint_array",
    ]
)

_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORBIDDEN = re.compile(r"--|/\*|[^A-Za-z0-9_\s<>=!|:/+*%(),.\[\]@&-]")


class UnsafeSqlError(Exception):
    """Generated SQL failed the safety check (a translator bug; the query is refused)."""


def check_sql(sql: str) -> None:
    """Raise :class:`UnsafeSqlError` unless ``sql`` is one statement made of our own words.

    >>> check_sql('SELECT "a;b" FROM "t" WHERE "x" = \\'--\\'')
    >>> check_sql("SELECT 1; DROP TABLE t")
    Traceback (most recent call last):
    ...
    pachon.services.tap.adql.safety.UnsafeSqlError: unexpected ';' in the generated SQL
    """
    if "\x00" in sql:
        raise UnsafeSqlError("NUL character in the generated SQL")
    # Quoted tokens become a blank: user text lives only there, and nothing in them matters here.
    rest = _NUMBER.sub(" ", _QUOTED.sub(" ", sql))
    bad = _FORBIDDEN.search(rest)
    if bad is not None:
        raise UnsafeSqlError(f"unexpected {bad.group()!r} in the generated SQL")
    for word in set(_WORD.findall(rest)):
        if word.lower() not in ALLOWED_WORDS:
            raise UnsafeSqlError(f"unquoted word {word!r} in the generated SQL")
