"""The typed syntax tree of an ADQL 2.1 query.

The parser (:mod:`.parser`) builds these nodes; the translator (:mod:`.translate`) walks
them and is the only producer of SQL. Nodes are frozen dataclasses so that a tree can be
shared, hashed and compared in tests. Every node that a user can misspell carries the
``line``/``column`` where it starts, so that semantic errors (unknown column, wrong type)
point at the query text just like syntax errors do.

Identifiers keep whether they were delimited (``"Name"``): ADQL says undelimited names are
case-insensitive and delimited ones exact, and the translator resolves them against the
catalog with that rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Between",
    "BinaryOp",
    "Case",
    "Cast",
    "ColumnRef",
    "Comparison",
    "Cte",
    "DerivedTable",
    "Exists",
    "Expr",
    "FromItem",
    "FuncCall",
    "Ident",
    "InList",
    "InSubquery",
    "IsNull",
    "Join",
    "Like",
    "Literal",
    "Logical",
    "Node",
    "Not",
    "OrderItem",
    "Query",
    "QueryBody",
    "ScalarSubquery",
    "Select",
    "SelectItem",
    "SetOp",
    "Star",
    "TableName",
    "TypeSpec",
    "Unary",
]


@dataclass(frozen=True)
class Node:
    """Base of every node: where it starts in the query text (1-based)."""

    line: int = field(default=0, kw_only=True, compare=False, repr=False)
    column: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass(frozen=True)
class Ident(Node):
    """An identifier; ``quoted`` for a delimited identifier (exact case, any characters)."""

    name: str
    quoted: bool = False

    @property
    def key(self) -> str:
        """The name used for case-insensitive comparison (exact for delimited identifiers)."""
        return self.name if self.quoted else self.name.lower()

    def __str__(self) -> str:
        return '"' + self.name.replace('"', '""') + '"' if self.quoted else self.name


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expr(Node):
    """Base of value expressions and conditions."""


@dataclass(frozen=True)
class Literal(Expr):
    """A constant. ``kind`` is ``int``, ``float``, ``string`` or ``null``."""

    value: int | float | str | None
    kind: str
    text: str = ""


@dataclass(frozen=True)
class ColumnRef(Expr):
    """A column reference ``[[[catalog.]schema.]table.]column``."""

    parts: tuple[Ident, ...]

    @property
    def name(self) -> Ident:
        return self.parts[-1]

    @property
    def qualifier(self) -> tuple[Ident, ...]:
        return self.parts[:-1]


@dataclass(frozen=True)
class Star(Expr):
    """``*`` or ``qualifier.*`` in a select list."""

    qualifier: tuple[Ident, ...] = ()


@dataclass(frozen=True)
class Unary(Expr):
    """``-x`` or ``+x``."""

    op: str
    operand: Expr


@dataclass(frozen=True)
class BinaryOp(Expr):
    """Arithmetic (``+ - * /``) or string concatenation (``||``)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Comparison(Expr):
    """``left op right`` with op one of ``= <> < <= > >=`` (``!=`` is normalised to ``<>``)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Logical(Expr):
    """``AND``/``OR`` over two or more conditions."""

    op: str
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not(Expr):
    """``NOT condition``."""

    operand: Expr


@dataclass(frozen=True)
class Between(Expr):
    expr: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True)
class Like(Expr):
    """``LIKE`` (case-sensitive) or ``ILIKE`` (case-insensitive)."""

    expr: Expr
    pattern: Expr
    negated: bool = False
    case_insensitive: bool = False


@dataclass(frozen=True)
class InList(Expr):
    expr: Expr
    items: tuple[Expr, ...]
    negated: bool = False


@dataclass(frozen=True)
class InSubquery(Expr):
    expr: Expr
    query: Query
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Expr):
    expr: Expr
    negated: bool = False


@dataclass(frozen=True)
class Exists(Expr):
    query: Query


@dataclass(frozen=True)
class ScalarSubquery(Expr):
    query: Query


@dataclass(frozen=True)
class FuncCall(Expr):
    """Any function call: aggregates, math, string, geometry and user-defined functions.

    ``name`` is lower case for built-in functions (``point``, ``count``, ``log10``) and
    as written for user-defined ones (matched case-insensitively). ``coordsys`` is the
    deprecated optional first argument of the geometry constructors (kept, not used).
    ``star`` marks ``COUNT(*)``; ``distinct`` marks ``COUNT(DISTINCT x)`` and friends.
    """

    name: str
    args: tuple[Expr, ...] = ()
    distinct: bool = False
    star: bool = False
    coordsys: Expr | None = None


@dataclass(frozen=True)
class TypeSpec(Node):
    """An ADQL type in ``CAST``: ``name`` upper case, ``length`` for CHAR(n)/VARCHAR(n)."""

    name: str
    length: int | None = None


@dataclass(frozen=True)
class Cast(Expr):
    expr: Expr
    type: TypeSpec


@dataclass(frozen=True)
class Case(Expr):
    """``CASE [operand] WHEN .. THEN .. [ELSE ..] END`` (simple when ``operand`` is set)."""

    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    else_: Expr | None = None


# ---------------------------------------------------------------- FROM clause


@dataclass(frozen=True)
class FromItem(Node):
    """Base of the items of a FROM clause."""


@dataclass(frozen=True)
class TableName(FromItem):
    """``[catalog.][schema.]table [AS alias]``."""

    parts: tuple[Ident, ...]
    alias: Ident | None = None

    @property
    def schema(self) -> Ident | None:
        return self.parts[-2] if len(self.parts) > 1 else None

    @property
    def table(self) -> Ident:
        return self.parts[-1]


@dataclass(frozen=True)
class DerivedTable(FromItem):
    """``(subquery) AS alias``."""

    query: Query
    alias: Ident


@dataclass(frozen=True)
class Join(FromItem):
    """``left [NATURAL] [INNER|LEFT|RIGHT|FULL|CROSS] JOIN right [ON cond | USING (cols)]``."""

    kind: str
    left: FromItem
    right: FromItem
    natural: bool = False
    on: Expr | None = None
    using: tuple[Ident, ...] = ()
    alias: Ident | None = None


# ---------------------------------------------------------------- queries


@dataclass(frozen=True)
class SelectItem(Node):
    expr: Expr
    alias: Ident | None = None


@dataclass(frozen=True)
class OrderItem(Node):
    expr: Expr
    descending: bool = False


@dataclass(frozen=True)
class QueryBody(Node):
    """Base of a SELECT or a set operation."""


@dataclass(frozen=True)
class Select(QueryBody):
    items: tuple[SelectItem, ...]
    from_: tuple[FromItem, ...]
    distinct: bool = False
    top: int | None = None
    where: Expr | None = None
    group_by: tuple[Expr, ...] = ()
    having: Expr | None = None


@dataclass(frozen=True)
class SetOp(QueryBody):
    """``left UNION|INTERSECT|EXCEPT [ALL] right``; operands are full (parenthesised) queries."""

    op: str
    left: Query
    right: Query
    all: bool = False


@dataclass(frozen=True)
class Cte(Node):
    name: Ident
    query: Query
    columns: tuple[Ident, ...] = ()


@dataclass(frozen=True)
class Query(Node):
    """A query expression: optional WITH, a body, ORDER BY and OFFSET."""

    body: QueryBody
    order_by: tuple[OrderItem, ...] = ()
    offset: int | None = None
    ctes: tuple[Cte, ...] = ()
