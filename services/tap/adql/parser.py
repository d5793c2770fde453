"""ADQL 2.1 text → typed syntax tree (:mod:`.nodes`).

The grammar (:mod:`.grammar`) is compiled once per process into a lark LALR(1) parser
whose reductions call :class:`_Builder` directly, so no intermediate parse tree is built.
Checks that a context-free grammar cannot express (function arity, the optional
coordinate-system argument of the geometry constructors, string literals where numbers
are needed, declared UDFs) are made while the tree is built, with the position of the
offending token, so they read like syntax errors.
"""

from __future__ import annotations

import contextvars
import difflib
import re
import threading
from collections.abc import Collection, Sequence
from typing import Any

import lark
from lark import Token

from . import nodes as n
from .errors import AdqlSyntaxError
from .grammar import ADQL_FUNCTIONS, GRAMMAR, TERMINAL_NAMES
from .udfs import lookup_udf

__all__ = ["BUILTIN_ARITY", "parse"]

# Built-in (non-geometry) functions: name -> (min args, max args).
BUILTIN_ARITY: dict[str, tuple[int, int]] = {
    "abs": (1, 1),
    "ceiling": (1, 1),
    "degrees": (1, 1),
    "exp": (1, 1),
    "floor": (1, 1),
    "log": (1, 1),
    "log10": (1, 1),
    "mod": (2, 2),
    "pi": (0, 0),
    "power": (2, 2),
    "radians": (1, 1),
    "sqrt": (1, 1),
    "rand": (0, 1),
    "round": (1, 2),
    "truncate": (1, 2),
    "sin": (1, 1),
    "cos": (1, 1),
    "tan": (1, 1),
    "asin": (1, 1),
    "acos": (1, 1),
    "atan": (1, 1),
    "atan2": (2, 2),
    "cot": (1, 1),
    "lower": (1, 1),
    "upper": (1, 1),
    "coalesce": (1, 1000),
    "nullif": (2, 2),
    "in_unit": (2, 2),
    "contains": (2, 2),
    "intersects": (2, 2),
    "area": (1, 1),
    "centroid": (1, 1),
    "coord1": (1, 1),
    "coord2": (1, 1),
    "coordsys": (1, 1),
    "region": (1, 1),
}

# Geometry constructors: name -> numbers of coordinate arguments accepted (without coordsys).
_GEOMETRY_COORDS: dict[str, tuple[int, ...]] = {"point": (2,), "circle": (2, 3), "box": (3, 4)}


def _pos(item: Any) -> tuple[int, int]:
    if isinstance(item, Token):
        return (item.line or 0, item.column or 0)
    if isinstance(item, n.Node):
        return (item.line, item.column)
    return (0, 0)


def _is_string(expr: n.Expr) -> bool:
    return isinstance(expr, n.Literal) and expr.kind == "string"


def _is_null(expr: n.Expr) -> bool:
    return isinstance(expr, n.Literal) and expr.kind == "null"


def _err(message: str, at: Any, token: str | None = None) -> AdqlSyntaxError:
    line, column = _pos(at)
    return AdqlSyntaxError(message, line=line, column=column, token=token)


class _Builder(lark.Transformer):  # type: ignore[type-arg]
    """Reduction callbacks: each returns a node of :mod:`.nodes` (or a helper tuple)."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)

    # -- identifiers
    def identifier(self, c: list[Token]) -> n.Ident:
        tok = c[0]
        line, column = _pos(tok)
        if tok.type == "DELIM":
            return n.Ident(tok.value[1:-1].replace('""', '"'), True, line=line, column=column)
        return n.Ident(tok.value, False, line=line, column=column)

    def name_chain(self, c: list[n.Ident]) -> tuple[n.Ident, ...]:
        return tuple(c)

    def ident_list(self, c: list[n.Ident]) -> tuple[n.Ident, ...]:
        return tuple(c)

    def alias(self, c: list[n.Ident]) -> n.Ident:
        return c[0]

    # -- literals
    def int_lit(self, c: list[Token]) -> n.Literal:
        line, column = _pos(c[0])
        return n.Literal(int(c[0].value), "int", c[0].value, line=line, column=column)

    def float_lit(self, c: list[Token]) -> n.Literal:
        line, column = _pos(c[0])
        return n.Literal(float(c[0].value), "float", c[0].value, line=line, column=column)

    def string_lit(self, c: list[Token]) -> n.Literal:
        line, column = _pos(c[0])
        value = "".join(t.value[1:-1].replace("''", "'") for t in c)
        return n.Literal(value, "string", line=line, column=column)

    def null_lit(self, c: list[Token]) -> n.Literal:
        return n.Literal(None, "null", "NULL")

    # -- value expressions
    def column_ref(self, c: list[tuple[n.Ident, ...]]) -> n.ColumnRef:
        parts = c[0]
        if len(parts) > 4:
            raise _err("a column reference has at most four parts (catalog.schema.table.column)", parts[0])
        return n.ColumnRef(parts, line=parts[0].line, column=parts[0].column)

    def arith(self, c: list[Any]) -> n.BinaryOp:
        left, op, right = c
        line, column = _pos(left)
        return n.BinaryOp(op.value, left, right, line=line, column=column)

    def concat(self, c: list[Any]) -> n.BinaryOp:
        line, column = _pos(c[0])
        return n.BinaryOp("||", c[0], c[1], line=line, column=column)

    def neg(self, c: list[Any]) -> n.Expr:
        line, column = _pos(c[0])
        operand = c[1]
        if isinstance(operand, n.Literal) and operand.kind in ("int", "float"):
            assert isinstance(operand.value, (int, float))
            return n.Literal(-operand.value, operand.kind, "-" + operand.text, line=line, column=column)
        return n.Unary("-", operand, line=line, column=column)

    def pos(self, c: list[Any]) -> n.Expr:
        line, column = _pos(c[0])
        return n.Unary("+", c[1], line=line, column=column)

    def scalar_subquery(self, c: list[Any]) -> n.ScalarSubquery:
        return n.ScalarSubquery(c[0], line=c[0].line, column=c[0].column)

    # -- functions
    def builtin_call(self, c: list[Any]) -> n.FuncCall:
        tok: Token = c[0]
        name = tok.value.lower()
        args = tuple(a for a in c[1:] if a is not None)
        line, column = _pos(tok)
        coordsys: n.Expr | None = None
        if name in _GEOMETRY_COORDS or name == "polygon":
            coordsys, args = self._geometry_args(name, tok, args)
        elif name == "distance":
            if len(args) not in (2, 4):
                raise _err(f"DISTANCE takes two points or four numbers, not {len(args)} arguments", tok)
        else:
            low, high = BUILTIN_ARITY[name]
            if not low <= len(args) <= high:
                want = f"{low}" if low == high else (f"at least {low}" if high > 100 else f"{low} to {high}")
                raise _err(f"{tok.value.upper()} takes {want} argument(s), not {len(args)}", tok, tok.value)
            if name == "region" and not _is_string(args[0]):
                raise _err("REGION takes a string literal (an STC-S region)", args[0])
            if name == "in_unit" and not _is_string(args[1]):
                raise _err("IN_UNIT takes a unit string literal as second argument", args[1])
        if name in ("contains", "intersects", "distance", "area", "centroid", "coord1", "coord2"):
            for a in args:
                if _is_string(a):
                    raise _err(f"{tok.value.upper()} needs geometry or numeric arguments, not a string", a)
        return n.FuncCall(name, args, coordsys=coordsys, line=line, column=column)

    def _geometry_args(
        self, name: str, tok: Token, args: tuple[n.Expr, ...]
    ) -> tuple[n.Expr | None, tuple[n.Expr, ...]]:
        coordsys: n.Expr | None = None
        upper = tok.value.upper()
        if name == "polygon":
            # POLYGON([cs,] p1, p2, p3, ...) with points, or ([cs,] x1, y1, x2, y2, x3, y3, ...).
            if args and (_is_string(args[0]) or _is_null(args[0])) and len(args) % 2 == 1:
                coordsys, args = args[0], args[1:]
            if len(args) < 3 or (len(args) < 6 and len(args) != 3) or (len(args) >= 6 and len(args) % 2):
                raise _err(
                    f"POLYGON takes an optional coordinate system and at least three vertices "
                    f"(3+ points or 6+ numbers in pairs), got {len(args)} coordinate argument(s)",
                    tok,
                    tok.value,
                )
        else:
            accepted = _GEOMETRY_COORDS[name]
            full = max(accepted) + 1 if name != "point" else 3
            if len(args) == full:
                coordsys, args = args[0], args[1:]
                if not (_is_string(coordsys) or _is_null(coordsys)) and isinstance(coordsys, n.Literal):
                    raise _err(f"the first argument of {upper} must be a coordinate system string", coordsys)
            if len(args) not in accepted:
                forms = {
                    "point": "POINT([cs,] ra, dec)",
                    "circle": "CIRCLE([cs,] ra, dec, radius) or CIRCLE([cs,] point, radius)",
                    "box": "BOX([cs,] ra, dec, width, height)",
                }
                raise _err(f"{upper} takes {forms[name]}; got {len(args)} argument(s)", tok, tok.value)
        for a in args:
            if _is_string(a):
                raise _err(f"{upper} needs numeric coordinates, not a string", a)
        return coordsys, args

    def udf_call(self, c: list[Any]) -> n.FuncCall:
        tok: Token = c[0]
        args = tuple(a for a in c[1:] if a is not None)
        line, column = _pos(tok)
        info = lookup_udf(tok.value)
        declared = _DECLARED_UDFS.get()
        if info is None and declared is not None and tok.value.lower() not in declared:
            raise _err(f"unknown function {tok.value!r}", tok, tok.value)
        if info is not None and not info.min_args <= len(args) <= info.max_args:
            raise _err(f"{info.form} takes {info.min_args} argument(s), not {len(args)}", tok, tok.value)
        return n.FuncCall(tok.value if info is None else info.name, args, line=line, column=column)

    def count_star(self, c: list[Any]) -> n.FuncCall:
        tok: Token = c[0]
        if tok.value.lower() != "count":
            raise _err(f"{tok.value.upper()}(*) is not allowed; only COUNT(*)", tok, tok.value)
        line, column = _pos(tok)
        return n.FuncCall("count", (), star=True, line=line, column=column)

    def aggregate(self, c: list[Any]) -> n.FuncCall:
        tok: Token = c[0]
        distinct = len(c) == 3 and c[1] == "distinct"
        line, column = _pos(tok)
        return n.FuncCall(tok.value.lower(), (c[-1],), distinct=distinct, line=line, column=column)

    def quantifier(self, c: list[Token]) -> str:
        return c[0].value.lower()

    # -- CASE / CAST
    def when_search(self, c: list[Any]) -> tuple[n.Expr, n.Expr]:
        return (c[0], c[1])

    when_simple = when_search

    def else_clause(self, c: list[Any]) -> tuple[str, n.Expr]:
        return ("else", c[0])

    def searched_case(self, c: list[Any]) -> n.Case:
        return self._case(None, c)

    def simple_case(self, c: list[Any]) -> n.Case:
        return self._case(c[0], c[1:])

    def _case(self, operand: n.Expr | None, rest: list[Any]) -> n.Case:
        whens = tuple(x for x in rest if x[0] != "else")
        else_ = next((x[1] for x in rest if x[0] == "else"), None)
        line, column = _pos(operand if operand is not None else whens[0][0])
        return n.Case(operand, whens, else_, line=line, column=column)

    def cast_type(self, c: list[Any]) -> n.TypeSpec:
        tok: Token = c[0]
        name = " ".join(tok.value.upper().split())
        if tok.type == "FUNCNAME" and name not in ("POINT", "CIRCLE", "POLYGON"):
            raise _err(f"unknown type {tok.value!r} in CAST", tok, tok.value)
        length = int(c[1].value) if len(c) > 1 and c[1] is not None else None
        if length is not None and name not in ("CHAR", "VARCHAR"):
            raise _err(f"{name} takes no length", tok, tok.value)
        line, column = _pos(tok)
        return n.TypeSpec(name, length, line=line, column=column)

    def cast_expr(self, c: list[Any]) -> n.Cast:
        line, column = _pos(c[0])
        return n.Cast(c[1], c[2], line=line, column=column)

    # -- predicates
    def comparison(self, c: list[Any]) -> n.Comparison:
        left, op, right = c
        line, column = _pos(left)
        return n.Comparison("<>" if op.value == "!=" else op.value, left, right, line=line, column=column)

    def between(self, c: list[Any]) -> n.Between:
        negated = isinstance(c[1], Token)
        items = [x for x in c if not isinstance(x, Token)]
        line, column = _pos(items[0])
        return n.Between(items[0], items[1], items[2], negated, line=line, column=column)

    def in_query(self, c: list[Any]) -> n.InSubquery:
        negated = isinstance(c[1], Token)
        line, column = _pos(c[0])
        return n.InSubquery(c[0], c[-1], negated, line=line, column=column)

    def in_list(self, c: list[Any]) -> n.InList:
        negated = isinstance(c[1], Token)
        items = [x for x in c[1:] if not isinstance(x, Token)]
        line, column = _pos(c[0])
        return n.InList(c[0], tuple(items), negated, line=line, column=column)

    def like(self, c: list[Any]) -> n.Like:
        negated = len(c) == 4
        op: Token = c[-2]
        line, column = _pos(c[0])
        return n.Like(c[0], c[-1], negated, op.value.lower() == "ilike", line=line, column=column)

    def is_null(self, c: list[Any]) -> n.IsNull:
        line, column = _pos(c[0])
        return n.IsNull(c[0], len(c) == 2, line=line, column=column)

    def exists(self, c: list[Any]) -> n.Exists:
        return n.Exists(c[0], line=c[0].line, column=c[0].column)

    def and_(self, c: list[Any]) -> n.Logical:
        return self._logical("AND", c)

    def or_(self, c: list[Any]) -> n.Logical:
        return self._logical("OR", c)

    def _logical(self, op: str, c: list[Any]) -> n.Logical:
        items: list[n.Expr] = []
        for x in c:
            if isinstance(x, n.Logical) and x.op == op:
                items.extend(x.items)
            else:
                items.append(x)
        line, column = _pos(items[0])
        return n.Logical(op, tuple(items), line=line, column=column)

    def not_(self, c: list[Any]) -> n.Not:
        line, column = _pos(c[0])
        return n.Not(c[1], line=line, column=column)

    # -- select
    def star(self, c: list[Any]) -> n.SelectItem:
        line, column = _pos(c[0])
        return n.SelectItem(n.Star(line=line, column=column), line=line, column=column)

    def qualified_star(self, c: list[Any]) -> n.SelectItem:
        parts = c[0]
        return n.SelectItem(n.Star(parts, line=parts[0].line, column=parts[0].column))

    def select_value(self, c: list[Any]) -> n.SelectItem:
        expr = c[0]
        line, column = _pos(expr)
        return n.SelectItem(expr, c[1] if len(c) > 1 else None, line=line, column=column)

    def select_list(self, c: list[n.SelectItem]) -> tuple[n.SelectItem, ...]:
        return tuple(c)

    def top(self, c: list[Token]) -> tuple[str, int]:
        return ("top", int(c[0].value))

    def from_clause(self, c: list[n.FromItem]) -> tuple[str, tuple[n.FromItem, ...]]:
        return ("from", tuple(c))

    def where_clause(self, c: list[Any]) -> tuple[str, n.Expr]:
        return ("where", c[0])

    def group_by(self, c: list[Any]) -> tuple[str, tuple[n.Expr, ...]]:
        return ("group_by", tuple(c))

    def having(self, c: list[Any]) -> tuple[str, n.Expr]:
        return ("having", c[0])

    def select_spec(self, c: list[Any]) -> n.Select:
        parts: dict[str, Any] = {}
        items: tuple[n.SelectItem, ...] = ()
        distinct = False
        for x in c:
            if isinstance(x, str):
                distinct = x == "distinct"
            elif isinstance(x, tuple) and x and isinstance(x[0], n.SelectItem):
                items = x
            else:
                parts[x[0]] = x[1]
        line, column = _pos(items[0]) if items else (0, 0)
        return n.Select(
            items,
            parts["from"],
            line=line,
            column=column,
            distinct=distinct,
            top=parts.get("top"),
            where=parts.get("where"),
            group_by=parts.get("group_by", ()),
            having=parts.get("having"),
        )

    def order_item(self, c: list[Any]) -> n.OrderItem:
        line, column = _pos(c[0])
        desc = len(c) > 1 and c[1].value.lower() == "desc"
        return n.OrderItem(c[0], desc, line=line, column=column)

    def order_by(self, c: list[n.OrderItem]) -> tuple[str, tuple[n.OrderItem, ...]]:
        return ("order_by", tuple(c))

    def offset(self, c: list[Token]) -> tuple[str, int]:
        return ("offset", int(c[0].value))

    def query_expr(self, c: list[Any]) -> n.Query:
        body = c[0]
        if isinstance(body, n.Query):
            # A parenthesised query: keep its own ORDER BY/OFFSET unless outer ones are given.
            if len(c) == 1:
                return body
            if not body.order_by and body.offset is None and not body.ctes:
                extra = dict(c[1:])
                return n.Query(body.body, order_by=extra.get("order_by", ()), offset=extra.get("offset"))
            body = n.Select(
                (n.SelectItem(n.Star()),), (n.DerivedTable(body, n.Ident("_pachon_paren", True)),)
            )
        extra = dict(c[1:])
        return n.Query(body, order_by=extra.get("order_by", ()), offset=extra.get("offset"))

    def _set(self, op: str, c: list[Any]) -> n.SetOp:
        left, right = c[0], c[-1]
        all_ = len(c) == 4
        lq = left if isinstance(left, n.Query) else n.Query(left)
        rq = right if isinstance(right, n.Query) else n.Query(right)
        return n.SetOp(op, lq, rq, all_)

    def set_union(self, c: list[Any]) -> n.SetOp:
        return self._set("UNION", c)

    def set_except(self, c: list[Any]) -> n.SetOp:
        return self._set("EXCEPT", c)

    def set_intersect(self, c: list[Any]) -> n.SetOp:
        return self._set("INTERSECT", c)

    # -- FROM
    def table_name(self, c: list[Any]) -> n.TableName:
        parts = c[0]
        if len(parts) > 3:
            raise _err("a table name has at most three parts (catalog.schema.table)", parts[0])
        alias = c[1] if len(c) > 1 else None
        return n.TableName(parts, alias, line=parts[0].line, column=parts[0].column)

    def derived_table(self, c: list[Any]) -> n.DerivedTable:
        return n.DerivedTable(c[0], c[1], line=c[1].line, column=c[1].column)

    def paren_join(self, c: list[Any]) -> n.Join:
        join: n.Join = c[0]
        if len(c) > 1:
            return n.Join(
                join.kind,
                join.left,
                join.right,
                join.natural,
                join.on,
                join.using,
                c[1],
                line=join.line,
                column=join.column,
            )
        return join

    def join_type(self, c: list[Token]) -> str:
        return c[0].value.upper()

    def join_on(self, c: list[Any]) -> tuple[str, Any]:
        return ("on", c[0])

    def join_using(self, c: list[Any]) -> tuple[str, Any]:
        return ("using", c[0])

    def qualified_join(self, c: list[Any]) -> n.Join:
        left, right = c[0], c[-2]
        kind = c[1] if len(c) == 4 else "INNER"
        spec_kind, spec = c[-1]
        line, column = _pos(left)
        if spec_kind == "on":
            return n.Join(kind, left, right, on=spec, line=line, column=column)
        return n.Join(kind, left, right, using=spec, line=line, column=column)

    def natural_join(self, c: list[Any]) -> n.Join:
        left, right = c[0], c[-1]
        kind = c[1] if len(c) == 3 else "INNER"
        line, column = _pos(left)
        return n.Join(kind, left, right, natural=True, line=line, column=column)

    def cross_join(self, c: list[Any]) -> n.Join:
        line, column = _pos(c[0])
        return n.Join("CROSS", c[0], c[1], line=line, column=column)

    # -- WITH
    def cte(self, c: list[Any]) -> n.Cte:
        name = c[0]
        columns = c[1] if len(c) == 3 and c[1] is not None else ()
        return n.Cte(name, c[-1], columns, line=name.line, column=name.column)

    def with_clause(self, c: list[n.Cte]) -> tuple[str, tuple[n.Cte, ...]]:
        return ("with", tuple(c))

    def start(self, c: list[Any]) -> n.Query:
        query: n.Query = c[-1]
        if len(c) == 2:
            return n.Query(query.body, query.order_by, query.offset, c[0][1])
        return query


_lock = threading.Lock()
_instance: list[lark.Lark] = []
_display: dict[str, str] = {}
# Declared UDF names (lower case) of the parse in progress; None accepts any function name.
_DECLARED_UDFS: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "adql_declared_udfs", default=None
)


def _parser() -> lark.Lark:
    """The process-wide parser, built on first use (about 0.1 s)."""
    if not _instance:
        with _lock:
            if not _instance:
                parser = lark.Lark(
                    GRAMMAR,
                    parser="lalr",
                    lexer="basic",
                    transformer=_Builder(),
                    maybe_placeholders=True,
                )
                for term in parser.terminals:
                    pattern = term.pattern
                    if isinstance(pattern, lark.lexer.PatternStr):
                        value = pattern.value
                        _display[term.name] = value.upper() if value.isalpha() else f"'{value}'"
                _display.update(TERMINAL_NAMES)
                _instance.append(parser)
    return _instance[0]


def _expected(names: Collection[str]) -> tuple[str, ...]:
    shown = {_display.get(name, name.lstrip("_")) for name in names}
    return tuple(sorted(shown, key=lambda s: (not s.isupper(), s)))


def _describe(expected: Sequence[str], limit: int = 8) -> str:
    if not expected:
        return ""
    shown = ", ".join(expected[:limit])
    return f" (expected {shown}{', …' if len(expected) > limit else ''})"


_RESERVED_FUNCTIONS = frozenset(ADQL_FUNCTIONS) | {"COUNT", "AVG", "MIN", "MAX", "SUM"}
_PREVIOUS_WORD = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s*$")


def _misspelt_keyword(text: str, pos: int) -> tuple[str, str, int, int] | None:
    """The word before ``pos`` if it looks like a misspelt keyword (``FORM`` for FROM).

    Without ``AS`` a misspelt keyword after a column reads as an alias, and the parser only
    trips on the word after it; pointing at the misspelling is far more useful.
    """
    match = _PREVIOUS_WORD.search(text, 0, pos)
    if match is None:
        return None
    word = match.group(1)
    if word.upper() in _RESERVED_FUNCTIONS:
        return None
    keywords = [k for k in _display.values() if k.isalpha() and k.isupper()]
    if word.upper() in keywords:
        return None
    close = difflib.get_close_matches(word.upper(), keywords, n=1, cutoff=0.75)
    if not close:
        return None
    start = match.start(1)
    line = text.count("\n", 0, start) + 1
    column = start - (text.rfind("\n", 0, start) + 1) + 1
    return word, close[0], line, column


def parse(text: str, *, udfs: Collection[str] | None = None) -> n.Query:
    """Parse ADQL 2.1 ``text`` into a :class:`~.nodes.Query`.

    ``udfs``: when given, the names of user-defined functions declared by the caller
    (besides those this service offers, see :mod:`.udfs`); calls to any other function then
    fail here. When None (the default) unknown functions parse and the translator rejects
    them, which keeps parse-only tools (validators, editors) useful.

    Raises :class:`~.errors.AdqlSyntaxError` with ``line``, ``column`` and ``token``.

    >>> parse("SELECT TOP 5 ra, dec FROM dp1.Object").body.top
    5
    """
    if not isinstance(text, str):
        raise AdqlSyntaxError("the query must be a string")
    if "\x00" in text:
        at = text.index("\x00")
        line = text.count("\n", 0, at) + 1
        raise AdqlSyntaxError(
            "the query contains a NUL character", line=line, column=at - text.rfind("\n", 0, at), token="\\0"
        )
    if not text.strip():
        raise AdqlSyntaxError("the query is empty; an ADQL query starts with SELECT or WITH")
    parser = _parser()
    udf_token = _DECLARED_UDFS.set(None if udfs is None else frozenset(u.lower() for u in udfs))
    try:
        result = parser.parse(text)
    except AdqlSyntaxError:
        raise
    except lark.exceptions.UnexpectedToken as exc:
        tok = exc.token
        expected = _expected(exc.expected)
        if tok.type == "$END":
            raise AdqlSyntaxError(
                f"unexpected end of query{_describe(expected)}",
                line=exc.line if exc.line and exc.line > 0 else None,
                column=exc.column if exc.column and exc.column > 0 else None,
                token=None,
                expected=expected,
            ) from None
        misspelt = _misspelt_keyword(text, tok.start_pos or 0)
        if misspelt is not None:
            word, keyword, line, column = misspelt
            raise AdqlSyntaxError(
                f"unexpected {word!r} (did you mean {keyword}?)",
                line=line,
                column=column,
                token=word,
                expected=(keyword,),
            ) from None
        hint = ""
        previous = _PREVIOUS_WORD.search(text, 0, tok.start_pos or 0)
        if previous is not None and previous.group(1).upper() in _RESERVED_FUNCTIONS and tok.value != "(":
            word = previous.group(1)
            hint = f'; {word} is a reserved ADQL function name: write "{word}" for a column of that name'
        raise AdqlSyntaxError(
            f"unexpected {tok.value!r}{_describe(expected)}{hint}",
            line=tok.line,
            column=tok.column,
            token=str(tok.value),
            expected=expected,
        ) from None
    except lark.exceptions.UnexpectedCharacters as exc:
        expected = _expected(exc.allowed or ())
        at = exc.pos_in_stream or 0
        char = text[at] if at < len(text) else ""
        word = char
        if char.isalnum() or char == "_":
            end = at
            while end < len(text) and (text[end].isalnum() or text[end] == "_"):
                end += 1
            word = text[at:end]
        hint = ""
        if char == '"':
            hint = "; a delimited identifier needs a closing double quote"
        elif char == "'":
            hint = "; a string needs a closing single quote"
        elif char == "_":
            hint = "; a name must start with a letter (quote it as a delimited identifier)"
        raise AdqlSyntaxError(
            f"unexpected {word!r}{_describe(expected)}{hint}",
            line=exc.line,
            column=exc.column,
            token=word,
            expected=expected,
        ) from None
    except lark.exceptions.UnexpectedEOF as exc:
        expected = _expected(exc.expected)
        raise AdqlSyntaxError(
            f"unexpected end of query{_describe(expected)}", token=None, expected=expected
        ) from None
    except lark.exceptions.VisitError as exc:  # pragma: no cover - callbacks raise directly
        if isinstance(exc.orig_exc, AdqlSyntaxError):
            raise exc.orig_exc from None
        raise
    finally:
        _DECLARED_UDFS.reset(udf_token)
    assert isinstance(result, n.Query)
    return result
