"""ADQL 2.1: parser (lark LALR grammar → typed tree) and translator to DuckDB and PostgreSQL SQL.

Public API::

    from pachon.services.tap.adql import parse, translate
    tree = parse("SELECT TOP 10 ra, dec FROM dp1.Object")
    tr = translate(tree, dialect="duckdb", resolver=resolver, limit=1001)
    tr.sql, tr.columns, tr.top, tr.tables
"""

from __future__ import annotations

from .errors import AdqlError, AdqlSemanticError, AdqlSyntaxError
from .features import LANGUAGE_FEATURES, language_features
from .parser import parse
from .resolver import Resolver, SimpleResolver
from .translate import DIALECTS, Translation, translate
from .udfs import UDFS, UdfInfo

__all__ = [
    "DIALECTS",
    "LANGUAGE_FEATURES",
    "UDFS",
    "AdqlError",
    "AdqlSemanticError",
    "AdqlSyntaxError",
    "Resolver",
    "SimpleResolver",
    "Translation",
    "UdfInfo",
    "language_features",
    "parse",
    "translate",
]
