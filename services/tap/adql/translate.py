"""Typed ADQL tree → SQL for DuckDB or PostgreSQL (pgsphere 1.2 + q3c 2.0).

The SQL is written only from the tree: every identifier is resolved against the catalog
and emitted double-quoted (so case and reserved words follow ADQL, not the database),
every string literal is re-escaped, every table gets a generated alias (``_t1``…), and
``SELECT *`` is expanded to the visible columns (never the hidden index columns). Output
columns get unique, stable names and VOTable metadata propagated from the catalog.

Geometry (ADQL §4.2) is rewritten so that indexes are used:

* DuckDB: a table with a position has ``pachon_hpx`` (nested HEALPix at depth
  ``HPX_DEPTH``, rows sorted by it) and unit-vector columns. A constant cone becomes
  ``pachon_hpx`` range predicates (computed here with cdshealpix; zone maps prune row
  groups) AND an exact chord-length test on the unit vectors. A crossmatch (a circle
  centred on another table's column) becomes an equality join on HEALPix cells: one side
  is expanded to the nine cells around its own (``unnest`` of a neighbours UDF) at a depth
  whose cells are wider than the radius, which DuckDB runs as a hash join, followed by the
  exact test. Other geometry goes through the UDFs installed by :mod:`.duckdb_functions`.
* PostgreSQL: ``q3c_radial_query`` for constant cones and ``q3c_join`` for crossmatches
  (index on ``q3c_ang2ipix(ra, dec)``), pgsphere (``spoint``/``scircle``/``spoly``, ``@``,
  ``&&``) for the rest, as GAVO DaCHS does; distances use the same haversine SQL on both
  back ends so that results agree to the last bits.

Translation traps handled (ADQL vs SQL): ``log`` is the natural logarithm; integer
division truncates on both back ends (DuckDB's ``/`` would return a double); ``mod`` and
``round``/``truncate`` on doubles go through ``numeric`` on PostgreSQL; ``LIKE`` stays
case-sensitive; ``ORDER BY`` on set operations uses column positions; ``TOP`` inside
subqueries and set operands becomes a parenthesised ``LIMIT``; ``OFFSET`` works alone.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pachon.core.catalog.model import HIDDEN_COLUMNS, HPX_DEPTH, ColumnInfo, TableInfo

from . import geometry
from . import nodes as n
from .errors import AdqlSemanticError
from .grammar import ADQL_FUNCTIONS
from .parser import parse
from .resolver import Resolver
from .safety import ALLOWED_WORDS, UnsafeSqlError, check_sql
from .udfs import lookup_udf

__all__ = ["DIALECTS", "Translation", "quote_ident", "quote_string", "translate"]

DIALECTS = ("duckdb", "postgresql")
_NOCONST = object()

_INT_KINDS = ("short", "int", "long")
_NUM_KINDS = (*_INT_KINDS, "float", "double")
_GEO_KINDS = ("point", "circle", "polygon")


def quote_ident(name: str) -> str:
    """Double-quote an identifier, doubling embedded quotes."""
    return '"' + name.replace('"', '""') + '"'


def quote_string(value: str) -> str:
    """A SQL string literal (standard escaping: ``'`` doubled; no backslash escapes)."""
    if "\x00" in value:
        raise AdqlSemanticError("string literals may not contain NUL characters")
    return "'" + value.replace("'", "''") + "'"


def _num(value: float | int) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        raise AdqlSemanticError("numeric constant out of range")
    text = repr(float(value))
    return text if ("e" in text or "." in text) else text + ".0"


@dataclass(frozen=True)
class Translation:
    """The result of :func:`translate`."""

    sql: str
    columns: list[ColumnInfo]
    top: int | None
    tables: list[TableInfo]
    dialect: str = "duckdb"


# ------------------------------------------------------------------ internal structures


@dataclass
class _SrcCol:
    name: str
    delimited: bool
    sql: str
    info: ColumnInfo
    kind: str


@dataclass(eq=False)
class _Source:
    sql_alias: str
    alias: n.Ident | None
    table: TableInfo | None
    columns: list[_SrcCol]
    sql_from: str  # what goes before AS alias: a table name or a parenthesised query
    names: tuple[str, ...] = ()  # lower-cased qualifier forms that match (table, schema.table)
    expand: str | None = None  # SQL computing this row's HEALPix cell for crossmatch expansion
    expand_depth: int = HPX_DEPTH

    def find(self, ident: n.Ident) -> _SrcCol | None:
        for col in self.columns:
            if col.name == ident.name:
                return col
        if not ident.quoted:
            low = ident.name.lower()
            for col in self.columns:
                if col.name.lower() == low and not col.delimited:
                    return col
        return None

    def has_hpx(self) -> bool:
        return bool(
            self.table is not None
            and self.table.position is not None
            and self.table.position.hpx_column
            and self.table.position.unit_vector
            and not self.sql_from.startswith("(")
        )


@dataclass
class _Scope:
    sources: list[_Source]
    parent: _Scope | None = None
    merged: dict[str, tuple[str, _SrcCol]] = field(default_factory=dict)  # USING/NATURAL columns
    aliases: dict[str, Val] = field(default_factory=dict)  # select-list aliases (GROUP BY)


@dataclass
class Geo:
    """A geometry value: its kind, its parts as SQL and its constant value when known."""

    kind: str
    ra: Val | None = None
    dec: Val | None = None
    radius: Val | None = None
    verts: list[tuple[Val, Val]] | None = None
    array: str | None = None  # SQL of the DALI array
    const: list[float] | None = None


@dataclass
class Val:
    """A translated value expression."""

    sql: str
    kind: str
    meta: ColumnInfo | None = None
    geo: Geo | None = None
    const: Any = _NOCONST
    agg: bool = False
    name: str | None = None
    ref: tuple[_Source, _SrcCol] | None = None


@dataclass
class _Out:
    name: str
    val: Val


def _kind_of(col: ColumnInfo) -> str:
    xtype = (col.xtype or "").lower()
    if xtype in _GEO_KINDS:
        return xtype
    if xtype in ("timestamp", "adql:timestamp"):
        return "timestamp"
    dt = col.datatype.lower()
    if dt in ("short", "int", "long", "float", "double", "boolean"):
        return {"boolean": "bool"}.get(dt, dt)
    if dt in ("unsignedbyte",):
        return "short"
    if dt in ("char", "unicodechar"):
        return "string"
    return "unknown"


def _votable(kind: str) -> tuple[str, str | None, str | None]:
    return {
        "short": ("short", None, None),
        "int": ("int", None, None),
        "long": ("long", None, None),
        "float": ("float", None, None),
        "double": ("double", None, None),
        "bool": ("boolean", None, None),
        "string": ("char", "*", None),
        "timestamp": ("char", "*", "timestamp"),
        "point": ("double", "2", "point"),
        "circle": ("double", "3", "circle"),
        "polygon": ("double", "*", "polygon"),
    }.get(kind, ("char", "*", None))


_MATH1 = {
    "abs": "abs",
    "ceiling": "ceil",
    "degrees": "degrees",
    "exp": "exp",
    "floor": "floor",
    "log": "ln",
    "log10": "log10",
    "radians": "radians",
    "sqrt": "sqrt",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "cot": "cot",
}

_CONST_FUNCS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "degrees": math.degrees,
    "radians": math.radians,
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "power": math.pow,
    "pi": lambda: math.pi,
}


class _Translator:
    def __init__(self, dialect: str, resolver: Resolver | None) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; use one of {DIALECTS}")
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        self.resolver = resolver
        self.counter = 0
        self.tables: list[TableInfo] = []
        self.ctes: dict[str, tuple[str, list[_Out]]] = {}
        self.xmatch: dict[int, tuple[_Source, _Source, Val, Val, Val, Val, float, int]] = {}

    # ------------------------------------------------------------ helpers
    def _alias(self) -> str:
        self.counter += 1
        return f"_t{self.counter}"

    def _fail(self, message: str, at: n.Node | None = None) -> AdqlSemanticError:
        if at is not None and at.line:
            return AdqlSemanticError(message, line=at.line, column=at.column)
        return AdqlSemanticError(message)

    def _dbl(self) -> str:
        return "double precision" if self.pg else "DOUBLE"

    def _array(self, items: Sequence[str]) -> str:
        inner = ", ".join(f"CAST({x} AS {self._dbl()})" for x in items)
        return f"ARRAY[{inner}]" if self.pg else f"[{inner}]"

    # ------------------------------------------------------------ queries
    def top_query(self, q: n.Query, limit: int | None) -> tuple[str, list[_Out], int | None]:
        with_sql = ""
        if q.ctes:
            parts = []
            for cte in q.ctes:
                sql, outs = self.query(cte.query, None)
                if cte.columns:
                    if len(cte.columns) != len(outs):
                        raise self._fail(
                            f"WITH {cte.name}: {len(cte.columns)} column names for {len(outs)} columns", cte
                        )
                    outs = [_Out(c.name, o.val) for c, o in zip(cte.columns, outs, strict=True)]
                    sql = self._rename(sql, outs)
                name = f"_cte_{len(self.ctes) + 1}"
                self.ctes[cte.name.key] = (name, outs)
                parts.append(f"{quote_ident(name)} AS ({sql})")
            with_sql = "WITH " + ", ".join(parts) + " "
        body_top = q.body.top if isinstance(q.body, n.Select) else None
        sql, outs = self.query(replace(q, ctes=()), None, limit=limit, outer=True)
        return with_sql + sql, outs, body_top

    def _rename(self, sql: str, outs: list[_Out]) -> str:
        cols = ", ".join(f"{quote_ident(f'c{i}')} AS {quote_ident(o.name)}" for i, o in enumerate(outs))
        inner = ", ".join(quote_ident(f"c{i}") for i in range(len(outs)))
        return f'SELECT {cols} FROM ({sql}) AS "_r"({inner})'

    def query(
        self, q: n.Query, parent: _Scope | None, *, limit: int | None = None, outer: bool = False
    ) -> tuple[str, list[_Out]]:
        if q.ctes:
            raise self._fail("WITH is only allowed at the top level of a query", q)
        if isinstance(q.body, n.Select):
            return self.select(q.body, parent, q.order_by, q.offset, limit)
        assert isinstance(q.body, n.SetOp)
        sql, outs = self.setop(q.body, parent)
        clauses = [sql]
        if q.order_by:
            keys = []
            for item in q.order_by:
                pos = self._order_position(item.expr, outs)
                if pos is None:
                    raise self._fail(
                        "ORDER BY of a UNION/INTERSECT/EXCEPT must name an output column or its position",
                        item,
                    )
                keys.append(f"{pos}{' DESC' if item.descending else ''}")
            clauses.append("ORDER BY " + ", ".join(keys))
        if limit is not None:
            clauses.append(f"LIMIT {int(limit)}")
        if q.offset is not None:
            clauses.append(f"OFFSET {int(q.offset)}")
        return " ".join(clauses), outs

    def _order_position(self, expr: n.Expr, outs: list[_Out]) -> int | None:
        if isinstance(expr, n.Literal) and expr.kind == "int":
            assert isinstance(expr.value, int)
            if not 1 <= expr.value <= len(outs):
                raise self._fail(f"ORDER BY position {expr.value} is not between 1 and {len(outs)}", expr)
            return expr.value
        if isinstance(expr, n.ColumnRef):
            name = expr.name
            for i, out in enumerate(outs, 1):
                if out.name == name.name or (not name.quoted and out.name.lower() == name.name.lower()):
                    return i
            for i, out in enumerate(outs, 1):  # qualified column names of the first operand
                if out.val.ref and out.val.ref[1].name.lower() == name.name.lower():
                    return i
        return None

    def setop(self, s: n.SetOp, parent: _Scope | None) -> tuple[str, list[_Out]]:
        lsql, louts = self.query(s.left, parent)
        rsql, routs = self.query(s.right, parent)
        if len(louts) != len(routs):
            raise self._fail(
                f"the operands of {s.op} have {len(louts)} and {len(routs)} columns; they must have as many",
                s.left.body,
            )
        op = s.op + (" ALL" if s.all else "")
        outs = []
        for lo, ro in zip(louts, routs, strict=True):
            kind = lo.val.kind if lo.val.kind == ro.val.kind else self._common_kind(lo.val.kind, ro.val.kind)
            outs.append(_Out(lo.name, replace(lo.val, kind=kind)))
        return f"({lsql}) {op} ({rsql})", outs

    @staticmethod
    def _common_kind(a: str, b: str) -> str:
        if a == "null":
            return b
        if b == "null":
            return a
        if a in _NUM_KINDS and b in _NUM_KINDS:
            return "double" if "double" in (a, b) or "float" in (a, b) else "long"
        return a

    # ------------------------------------------------------------ SELECT
    def select(
        self,
        sel: n.Select,
        parent: _Scope | None,
        order_by: tuple[n.OrderItem, ...],
        offset: int | None,
        limit: int | None,
    ) -> tuple[str, list[_Out]]:
        scope = _Scope([], parent)
        plans = [self._register(item, scope) for item in sel.from_]
        if not self.pg:
            self._plan_crossmatch(sel, plans, scope)

        outs: list[_Out] = []
        for item in sel.items:
            if isinstance(item.expr, n.Star):
                outs.extend(self._expand_star(item.expr, scope, plans))
                continue
            val = self.value(item.expr, scope)
            if val.kind == "bool":
                val = Val(f"CASE WHEN {val.sql} THEN 1 ELSE 0 END", "int", name=val.name)
            if item.alias is not None:
                name = item.alias.name
                scope.aliases[item.alias.key] = val
            elif val.name:
                name = val.name
            else:
                name = "expr"
            outs.append(_Out(name, val))
        outs = self._unique(outs)

        from_sql = ", ".join(self._emit_from(p, scope) for p in plans)
        where = self.condition(sel.where, scope) if sel.where is not None else None
        group = [self._group_key(g, scope) for g in sel.group_by]
        having = self.condition(sel.having, scope) if sel.having is not None else None

        cols = ", ".join(f"{o.val.sql} AS {quote_ident(o.name)}" for o in outs)
        parts = ["SELECT", "DISTINCT" if sel.distinct else "", cols, "FROM", from_sql]
        if where:
            parts += ["WHERE", where]
        if group:
            parts += ["GROUP BY", ", ".join(group)]
        if having:
            parts += ["HAVING", having]
        if order_by:
            parts += ["ORDER BY", ", ".join(self._order_key(o, scope, outs) for o in order_by)]
        top = sel.top
        if limit is not None:
            top = limit if top is None else min(top, limit)
        if top is not None:
            parts += ["LIMIT", str(int(top))]
        if offset is not None:
            parts += ["OFFSET", str(int(offset))]
        return " ".join(p for p in parts if p), outs

    def _unique(self, outs: list[_Out]) -> list[_Out]:
        seen: dict[str, int] = {}
        result = []
        for out in outs:
            base = out.name
            key = base.lower()
            if key in seen:
                count = seen[key] + 1
                while f"{key}_{count}" in seen:
                    count += 1
                seen[key] = count
                name = f"{base}_{count}"
                seen[name.lower()] = 1
            else:
                seen[key] = 1
                name = base
            result.append(_Out(name, out.val))
        return result

    def _group_key(self, expr: n.Expr, scope: _Scope) -> str:
        if isinstance(expr, n.ColumnRef) and len(expr.parts) == 1:
            try:
                return self.value(expr, scope).sql
            except AdqlSemanticError:
                alias = scope.aliases.get(expr.name.key)
                if alias is None:
                    raise
                return alias.sql
        if isinstance(expr, n.Literal) and expr.kind == "int":
            return str(expr.value)
        val = self.value(expr, scope)
        if val.const is not _NOCONST:
            # PostgreSQL rejects a bare literal in GROUP BY; a typed constant groups the same.
            return f"CAST({val.sql} AS {'VARCHAR' if val.kind == 'string' else self._dbl()})"
        return val.sql

    def _order_key(self, item: n.OrderItem, scope: _Scope, outs: list[_Out]) -> str:
        direction = " DESC" if item.descending else " ASC"
        expr = item.expr
        if isinstance(expr, n.Literal) and expr.kind == "int":
            pos = self._order_position(expr, outs)
            return f"{pos}{direction}"
        if isinstance(expr, n.ColumnRef) and len(expr.parts) == 1:
            for i, out in enumerate(outs, 1):
                if out.name == expr.name.name or (
                    not expr.name.quoted and out.name.lower() == expr.name.name.lower()
                ):
                    return f"{i}{direction}"
        val = self.value(expr, scope)
        return f"{val.sql}{direction}"

    # ------------------------------------------------------------ FROM
    def _register(self, item: n.FromItem, scope: _Scope) -> Any:
        """Create the sources of a FROM item (SQL comes later, after crossmatch planning)."""
        if isinstance(item, n.TableName):
            return ("source", self._table_source(item, scope))
        if isinstance(item, n.DerivedTable):
            sql, outs = self.query(item.query, scope.parent)
            src = self._derived_source(sql, outs, item.alias)
            scope.sources.append(src)
            return ("source", src)
        assert isinstance(item, n.Join)
        left = self._register(item.left, scope)
        right = self._register(item.right, scope)
        lsrcs, rsrcs = self._plan_sources(left), self._plan_sources(right)
        using: list[n.Ident] = list(item.using)
        if item.natural:
            rnames = {c.name.lower() for s in rsrcs for c in s.columns}
            using = [
                n.Ident(c.name, c.delimited) for s in lsrcs for c in s.columns if c.name.lower() in rnames
            ]
        merged = []
        for ident in using:
            lc = [(s, c) for s in lsrcs if (c := s.find(ident)) is not None]
            rc = [(s, c) for s in rsrcs if (c := s.find(ident)) is not None]
            if len(lc) != 1 or len(rc) != 1:
                raise self._fail(
                    f"USING column {ident} must exist exactly once on each side of the join", ident
                )
            (ls, lcol), (rs, rcol) = lc[0], rc[0]
            lsql = f"{quote_ident(ls.sql_alias)}.{quote_ident(lcol.sql)}"
            rsql = f"{quote_ident(rs.sql_alias)}.{quote_ident(rcol.sql)}"
            expr = {"RIGHT": rsql, "FULL": f"COALESCE({lsql}, {rsql})"}.get(item.kind, lsql)
            scope.merged[lcol.name.lower()] = (expr, lcol)
            merged.append((lsql, rsql, lcol))
        return ("join", item, left, right, merged)

    def _plan_sources(self, plan: Any) -> list[_Source]:
        if plan[0] == "source":
            return [plan[1]]
        return self._plan_sources(plan[2]) + self._plan_sources(plan[3])

    def _table_source(self, item: n.TableName, scope: _Scope) -> _Source:
        schema, table = item.schema, item.table
        if schema is None and table.key in self.ctes:
            name, outs = self.ctes[table.key]
            src = self._derived_source(quote_ident(name), outs, item.alias or table, is_cte=True)
            scope.sources.append(src)
            return src
        info = self.resolver.resolve(schema.name if schema else None, table.name) if self.resolver else None
        if info is not None and (
            (table.quoted and info.name != table.name)
            or (schema is not None and schema.quoted and info.schema != schema.name)
        ):
            info = None
        if info is None:
            shown = ".".join(str(p) for p in item.parts)
            hint = ""
            names = getattr(self.resolver, "names", None)
            if callable(names):
                close = difflib.get_close_matches(
                    shown.lower(), [x.lower() for x in names()], n=3, cutoff=0.6
                )
                if close:
                    hint = f"; did you mean {', '.join(close)}?"
            raise self._fail(f"unknown table {shown}{hint}", item)
        if info not in self.tables:
            self.tables.append(info)
        cols = [
            _SrcCol(c.name, c.delimited, c.sql_name, c, _kind_of(c))
            for c in info.columns
            if c.sql_name not in HIDDEN_COLUMNS and c.name not in HIDDEN_COLUMNS
        ]
        db_schema = info.db_schema if info.db_schema is not None else info.schema
        db_name = info.db_name or info.name
        sql_from = (quote_ident(db_schema) + "." if db_schema else "") + quote_ident(db_name)
        names = (info.name.lower(), f"{info.schema.lower()}.{info.name.lower()}")
        if item.alias is not None:
            names = ()
        src = _Source(self._alias(), item.alias, info, cols, sql_from, names)
        scope.sources.append(src)
        return src

    def _derived_source(self, sql: str, outs: list[_Out], alias: n.Ident, is_cte: bool = False) -> _Source:
        cols = []
        for out in outs:
            meta = out.val.meta
            kind_meta = _votable(out.val.kind)
            info = (
                replace(meta, name=out.name)
                if meta
                else ColumnInfo(out.name, kind_meta[0], kind_meta[1], kind_meta[2])
            )
            cols.append(_SrcCol(out.name, False, out.name, info, out.val.kind))
        sql_from = sql if is_cte else f"({sql})"
        return _Source(self._alias(), alias, None, cols, sql_from)

    def _emit_from(self, plan: Any, scope: _Scope) -> str:
        if plan[0] == "source":
            src: _Source = plan[1]
            if src.expand is not None:
                alias = quote_ident(src.sql_alias)
                cell = f"unnest(pachon_hpx_neighbours({src.expand}, {src.expand_depth}))"
                inner = f'SELECT {alias}.*, {cell} AS "_pachon_cell" FROM {src.sql_from} AS {alias}'
                return f"({inner}) AS {alias}"
            return f"{src.sql_from} AS {quote_ident(src.sql_alias)}"
        _, item, left, right, merged = plan
        lsql, rsql = self._emit_from(left, scope), self._emit_from(right, scope)
        if isinstance(right, tuple) and right[0] == "join":
            rsql = f"({rsql})"
        if item.kind == "CROSS":
            return f"{lsql} CROSS JOIN {rsql}"
        kind = {"INNER": "INNER", "LEFT": "LEFT OUTER", "RIGHT": "RIGHT OUTER", "FULL": "FULL OUTER"}[
            item.kind
        ]
        if merged:
            cond = " AND ".join(f"{a} = {b}" for a, b, _ in merged)
        elif item.on is not None:
            cond = self.condition(item.on, scope)
        else:
            cond = "TRUE"
        return f"{lsql} {kind} JOIN {rsql} ON {cond}"

    def _expand_star(self, star: n.Star, scope: _Scope, plans: list[Any]) -> list[_Out]:
        sources = scope.sources
        if star.qualifier:
            src = self._find_source(star.qualifier, scope, star)
            return [self._col_out(src, c) for c in src.columns]
        outs: list[_Out] = []
        for plan in plans:
            outs.extend(self._plan_star(plan))
        if not sources:
            raise self._fail("SELECT * needs a FROM clause", star)
        return outs

    def _plan_star(self, plan: Any) -> list[_Out]:
        if plan[0] == "source":
            return [self._col_out(plan[1], c) for c in plan[1].columns]
        _, item, left, right, merged = plan
        left_outs, right_outs = self._plan_star(left), self._plan_star(right)
        if not merged:
            return left_outs + right_outs
        names = {m[2].name.lower() for m in merged}
        first = []
        for lsql, rsql, col in merged:
            expr = {"RIGHT": rsql, "FULL": f"COALESCE({lsql}, {rsql})"}.get(item.kind, lsql)
            first.append(_Out(col.name, Val(expr, col.kind, meta=col.info, name=col.name)))
        rest = [o for o in left_outs + right_outs if o.name.lower() not in names]
        return first + rest

    def _col_out(self, src: _Source, col: _SrcCol) -> _Out:
        sql = f"{quote_ident(src.sql_alias)}.{quote_ident(col.sql)}"
        return _Out(
            col.name,
            Val(
                sql, col.kind, meta=col.info, name=col.name, ref=(src, col), geo=self._col_geo(sql, col.kind)
            ),
        )

    def _col_geo(self, sql: str, kind: str) -> Geo | None:
        if kind not in _GEO_KINDS:
            return None
        return Geo(kind, array=sql)

    def _find_source(self, qualifier: tuple[n.Ident, ...], scope: _Scope, at: n.Node) -> _Source:
        s: _Scope | None = scope
        while s is not None:
            for src in s.sources:
                if self._matches(src, qualifier):
                    return src
            s = s.parent
        shown = ".".join(str(p) for p in qualifier)
        known = [
            src.alias.name if src.alias else (src.table.name if src.table else "?") for src in scope.sources
        ]
        close = difflib.get_close_matches(shown, known, n=3, cutoff=0.5)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else (f"; tables in FROM: {', '.join(known)}" if known else "")
        )
        raise self._fail(f"unknown table or alias {shown}{hint}", at)

    @staticmethod
    def _matches(src: _Source, qualifier: tuple[n.Ident, ...]) -> bool:
        if src.alias is not None:
            return len(qualifier) == 1 and (
                qualifier[0].name == src.alias.name
                or (not qualifier[0].quoted and not src.alias.quoted and qualifier[0].key == src.alias.key)
            )
        if src.table is None:
            return False
        parts = qualifier[-2:]
        if parts[-1].key != src.table.name.lower() and parts[-1].name != src.table.name:
            return False
        if parts[-1].quoted and parts[-1].name != src.table.name:
            return False
        if len(parts) == 2:
            sch = parts[0]
            if sch.quoted:
                return sch.name == src.table.schema
            return sch.key == src.table.schema.lower()
        return True

    # ------------------------------------------------------------ column references
    def column(self, ref: n.ColumnRef, scope: _Scope) -> Val:
        name = ref.name
        if ref.qualifier:
            src = self._find_source(ref.qualifier, scope, ref)
            col = src.find(name)
            if col is None:
                raise self._fail(self._no_column(name, [src]), name)
            return self._col_out(src, col).val
        s: _Scope | None = scope
        while s is not None:
            if name.key in s.merged or name.name.lower() in s.merged:
                expr, col = s.merged.get(name.key) or s.merged[name.name.lower()]
                return Val(expr, col.kind, meta=col.info, name=col.name)
            found = [(src, c) for src in s.sources if (c := src.find(name)) is not None]
            if len(found) > 1:
                tables = ", ".join(self._src_label(src) for src, _ in found)
                raise self._fail(f"column {name} is ambiguous (in {tables}); qualify it", name)
            if found:
                return self._col_out(*found[0]).val
            s = s.parent
        alias = scope.aliases.get(name.key)
        if alias is not None:
            # A select-list alias used in HAVING or an ORDER BY expression: repeat its expression.
            return alias
        raise self._fail(self._no_column(name, scope.sources), name)

    @staticmethod
    def _src_label(src: _Source) -> str:
        if src.alias is not None:
            return src.alias.name
        return src.table.qualified if src.table else src.sql_alias

    def _no_column(self, name: n.Ident, sources: list[_Source]) -> str:
        candidates = [c.name for src in sources for c in src.columns]
        close = difflib.get_close_matches(name.name.lower(), [c.lower() for c in candidates], n=3, cutoff=0.6)
        where = ", ".join(self._src_label(s) for s in sources)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown column {name} in {where or 'the query'}{hint}"

    # ------------------------------------------------------------ conditions
    def condition(self, e: n.Expr, scope: _Scope) -> str:
        if isinstance(e, n.Logical):
            return "(" + f" {e.op} ".join(self.condition(x, scope) for x in e.items) + ")"
        if isinstance(e, n.Not):
            return f"(NOT {self.condition(e.operand, scope)})"
        if isinstance(e, n.Comparison):
            special = self._geo_comparison(e, scope)
            if special is not None:
                return special
            left, right = self.value(e.left, scope), self.value(e.right, scope)
            if (left.kind in _GEO_KINDS or right.kind in _GEO_KINDS) and e.op not in ("=", "<>"):
                raise self._fail("geometries can only be compared with = or <>", e)
            return f"({left.sql} {e.op} {right.sql})"
        if isinstance(e, n.Between):
            v, lo, hi = (self.value(x, scope) for x in (e.expr, e.low, e.high))
            return f"({v.sql} {'NOT ' if e.negated else ''}BETWEEN {lo.sql} AND {hi.sql})"
        if isinstance(e, n.Like):
            v, p = self.value(e.expr, scope), self.value(e.pattern, scope)
            op = ("NOT " if e.negated else "") + ("ILIKE" if e.case_insensitive else "LIKE")
            return f"({v.sql} {op} {p.sql})"
        if isinstance(e, n.InList):
            v = self.value(e.expr, scope)
            items = ", ".join(self.value(x, scope).sql for x in e.items)
            return f"({v.sql} {'NOT ' if e.negated else ''}IN ({items}))"
        if isinstance(e, n.InSubquery):
            v = self.value(e.expr, scope)
            sql, outs = self.query(e.query, scope)
            if len(outs) != 1:
                raise self._fail(f"the subquery of IN must return one column, not {len(outs)}", e.query.body)
            return f"({v.sql} {'NOT ' if e.negated else ''}IN ({sql}))"
        if isinstance(e, n.IsNull):
            v = self.value(e.expr, scope)
            return f"({v.sql} IS {'NOT ' if e.negated else ''}NULL)"
        if isinstance(e, n.Exists):
            sql, _ = self.query(e.query, scope)
            return f"(EXISTS ({sql}))"
        raise self._fail("this expression is not a condition", e)

    # ------------------------------------------------------------ geometry predicates
    @staticmethod
    def _circle_parts(e: n.Expr) -> tuple[n.Expr, n.Expr, n.Expr, n.Expr, n.Expr, bool] | None:
        """Match ``DISTANCE(p, c) < r`` / ``CONTAINS(POINT, CIRCLE) = 1|0`` and variants.

        Returns (point ra, point dec, centre ra, centre dec, radius, negated) or None.
        """
        if not isinstance(e, n.Comparison):
            return None

        def point_args(x: n.Expr) -> tuple[n.Expr, n.Expr] | None:
            if isinstance(x, n.FuncCall) and x.name == "point" and len(x.args) == 2:
                return x.args[0], x.args[1]
            return None

        def circle_args(x: n.Expr) -> tuple[n.Expr, n.Expr, n.Expr] | None:
            if isinstance(x, n.FuncCall) and x.name == "circle":
                if len(x.args) == 3:
                    return x.args[0], x.args[1], x.args[2]
                if len(x.args) == 2 and (p := point_args(x.args[0])) is not None:
                    return p[0], p[1], x.args[1]
            return None

        left, right, op = e.left, e.right, e.op
        flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}
        if isinstance(right, n.FuncCall) and right.name in ("distance", "contains", "intersects"):
            left, right, op = right, left, flipped[op]
        if not isinstance(left, n.FuncCall):
            return None
        if left.name == "distance" and op in ("<", "<="):
            if len(left.args) == 4:
                a, b, c, d = left.args
                return a, b, c, d, right, False
            p1, p2 = point_args(left.args[0]), point_args(left.args[1])
            if p1 and p2:
                return p1[0], p1[1], p2[0], p2[1], right, False
            return None
        if left.name in ("contains", "intersects") and op == "=":
            if not (isinstance(right, n.Literal) and right.kind == "int" and right.value in (0, 1)):
                return None
            a, b = left.args
            if left.name == "intersects" and point_args(a) is None:
                a, b = b, a
            pt, circ = point_args(a), circle_args(b)
            if pt and circ:
                return pt[0], pt[1], circ[0], circ[1], circ[2], right.value == 0
        return None

    def _geo_comparison(self, e: n.Comparison, scope: _Scope) -> str | None:
        parts = self._circle_parts(e)
        if parts is not None:
            pra, pdec, cra, cdec, rad, negated = parts
            vals = [self.value(x, scope) for x in (pra, pdec, cra, cdec, rad)]
            for v, x in zip(vals, (pra, pdec, cra, cdec, rad), strict=True):
                if v.kind not in (*_NUM_KINDS, "null", "unknown"):
                    raise self._fail("coordinates and radii must be numeric", x)
            sql = self._point_in_circle(vals[0], vals[1], vals[2], vals[3], vals[4], key=id(e))
            return f"(NOT {sql})" if negated else sql
        # CONTAINS/INTERSECTS(...) = 0|1 in general
        left, right = e.left, e.right
        if isinstance(right, n.FuncCall) and right.name in ("contains", "intersects"):
            left, right = right, left
        if (
            isinstance(left, n.FuncCall)
            and left.name in ("contains", "intersects")
            and e.op in ("=", "<>")
            and isinstance(right, n.Literal)
            and right.kind == "int"
            and right.value in (0, 1)
        ):
            cond = self._geo_predicate(left, scope)
            positive = (right.value == 1) == (e.op == "=")
            return cond if positive else f"(NOT {cond})"
        return None

    def _point_in_circle(self, pra: Val, pdec: Val, cra: Val, cdec: Val, rad: Val, key: int = 0) -> str:
        """SQL for "point within radius of centre", index-using where possible."""
        const_c = all(isinstance(v.const, (int, float)) for v in (cra, cdec, rad))
        const_p = all(isinstance(v.const, (int, float)) for v in (pra, pdec))
        if const_p and not const_c:
            pra, pdec, cra, cdec = cra, cdec, pra, pdec
            const_c, const_p = True, False
        if self.pg:
            if const_c or (isinstance(rad.const, (int, float)) and not const_p):
                # q3c_join/q3c_radial_query use the index on the last point's columns.
                if not const_c and self._q3c_indexed(cra, cdec) and not self._q3c_indexed(pra, pdec):
                    pra, pdec, cra, cdec = cra, cdec, pra, pdec
                r = f"CAST({rad.sql} AS double precision)"
                if const_c:
                    c1, c2 = (f"CAST({v.sql} AS double precision)" for v in (cra, cdec))
                    return f"q3c_radial_query({pra.sql}, {pdec.sql}, {c1}, {c2}, {r})"
                return f"q3c_join({cra.sql}, {cdec.sql}, {pra.sql}, {pdec.sql}, {r})"
            return f"({self._haversine(pra, pdec, cra, cdec)} <= {rad.sql})"
        # DuckDB
        if const_c:
            src = self._position_source(pra, pdec)
            ra0, dec0, r0 = float(cra.const), float(cdec.const), float(rad.const)
            if src is not None:
                assert src.table is not None and src.table.position is not None
                pos = src.table.position
                assert pos.unit_vector is not None and pos.hpx_column is not None
                alias = quote_ident(src.sql_alias)
                x, y, z = (f"{alias}.{quote_ident(c)}" for c in pos.unit_vector)
                exact = self._chord_test((x, y, z), ra0, dec0, r0)
                ranges = geometry.cone_ranges(ra0, dec0, r0)
                if ranges is None:
                    return exact
                if not ranges:
                    return "FALSE"
                hpx = f"{alias}.{quote_ident(pos.hpx_column)}"
                rsql = " OR ".join(f"{hpx} BETWEEN {lo} AND {hi}" for lo, hi in ranges)
                return f"(({rsql}) AND {exact})"
            return f"({self._haversine(pra, pdec, cra, cdec)} <= {_num(r0)})"
        plan = self.xmatch.get(key)
        if plan is not None:
            expanded, other, ora, odec, _, _, radius, depth = plan
            ocell = self._cell_sql(other, ora, odec, depth)
            cond = f'({ocell} = {quote_ident(expanded.sql_alias)}."_pachon_cell")'
            return f"({cond} AND {self._haversine(pra, pdec, cra, cdec)} <= {_num(radius)})"
        return f"({self._haversine(pra, pdec, cra, cdec)} <= {rad.sql})"

    def _chord_test(self, xyz: tuple[str, str, str], ra: float, dec: float, radius: float) -> str:
        a, d = math.radians(ra), math.radians(dec)
        cx, cy, cz = math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)
        chord2 = (2 * math.sin(math.radians(min(radius, 180.0)) / 2)) ** 2
        terms = " + ".join(
            f"({c} - {_num(v)}) * ({c} - {_num(v)})" for c, v in zip(xyz, (cx, cy, cz), strict=True)
        )
        return f"({terms} <= {_num(chord2)})"

    def _haversine(self, ra1: Val, dec1: Val, ra2: Val, dec2: Val) -> str:
        """Great-circle distance in degrees; the same SQL on both back ends."""
        r1, d1, r2, d2 = (f"radians({v.sql})" for v in (ra1, dec1, ra2, dec2))
        h = f"power(sin(({d2} - {d1}) / 2), 2) + cos({d1}) * cos({d2}) * power(sin(({r2} - {r1}) / 2), 2)"
        return f"degrees(2 * asin(least(1.0, sqrt({h}))))"

    def _position_source(self, ra: Val, dec: Val) -> _Source | None:
        """The source whose indexed position columns are exactly (ra, dec), if any."""
        if ra.ref is None or dec.ref is None or ra.ref[0] is not dec.ref[0]:
            return None
        src = ra.ref[0]
        if src.table is None or src.table.position is None:
            return None
        pos = src.table.position
        if ra.ref[1].info.name.lower() != pos.ra.lower() or dec.ref[1].info.name.lower() != pos.dec.lower():
            return None
        if not self.pg and not src.has_hpx():
            return None
        return src

    def _q3c_indexed(self, ra: Val, dec: Val) -> bool:
        """On PostgreSQL: do (ra, dec) carry a q3c index? Catalog tables do; uploads (temporary) do not."""
        src = self._position_source(ra, dec)
        return src is not None and src.table is not None and src.table.schema.upper() != "TAP_UPLOAD"

    def _cell_sql(self, src: _Source, ra: Val, dec: Val, depth: int) -> str:
        if self._position_source(ra, dec) is src and src.has_hpx():
            assert src.table is not None and src.table.position is not None
            hpx = f"{quote_ident(src.sql_alias)}.{quote_ident(src.table.position.hpx_column or '')}"
            shift = 2 * (HPX_DEPTH - depth)
            return f"({hpx} >> {shift})" if shift else hpx
        return f"pachon_healpix({ra.sql}, {dec.sql}, {depth})"

    def _plan_crossmatch(self, sel: n.Select, plans: list[Any], scope: _Scope) -> None:
        """Choose crossmatch predicates that can become HEALPix cell equi-joins (DuckDB)."""
        candidates: list[tuple[n.Expr, set[int] | None]] = []

        def conjuncts(e: n.Expr | None) -> list[n.Expr]:
            if e is None:
                return []
            if isinstance(e, n.Logical) and e.op == "AND":
                return [c for x in e.items for c in conjuncts(x)]
            return [e]

        for c in conjuncts(sel.where):
            candidates.append((c, None))

        def walk(plan: Any) -> None:
            if plan[0] != "join":
                return
            _, item, left, right, _ = plan
            walk(left)
            walk(right)
            if item.on is None or item.kind == "FULL":
                return
            allowed: set[int] | None = None
            if item.kind == "LEFT":
                allowed = {id(s) for s in self._plan_sources(right)}
            elif item.kind == "RIGHT":
                allowed = {id(s) for s in self._plan_sources(left)}
            for c in conjuncts(item.on):
                candidates.append((c, allowed))

        for plan in plans:
            walk(plan)
        for expr, allowed in candidates:
            parts = self._circle_parts(expr)
            if parts is None or parts[5]:
                continue
            pra, pdec, cra, cdec, rad, _ = parts
            try:
                vals = [self.value(x, scope) for x in (pra, pdec, cra, cdec, rad)]
            except AdqlSemanticError:
                continue
            vpra, vpdec, vcra, vcdec, vrad = vals
            if not isinstance(vrad.const, (int, float)):
                continue
            refs = [v.ref for v in (vpra, vpdec, vcra, vcdec)]
            if any(r is None for r in refs):
                continue
            psrc, csrc = refs[0][0], refs[2][0]  # type: ignore[index]
            if psrc is not refs[1][0] or csrc is not refs[3][0] or psrc is csrc:  # type: ignore[index]
                continue
            if psrc not in scope.sources or csrc not in scope.sources:
                continue
            depth = geometry.crossmatch_depth(float(vrad.const))
            if depth is None:
                continue
            # Expand the side without an index (an upload), else the smaller/second one.
            order = [csrc, psrc]
            if csrc.has_hpx() and not psrc.has_hpx():
                order = [psrc, csrc]
            elif csrc.has_hpx() and psrc.has_hpx():
                pc = psrc.table.row_count if psrc.table else None
                cc = csrc.table.row_count if csrc.table else None
                if pc is not None and cc is not None and pc < cc:
                    order = [psrc, csrc]
            for expanded in order:
                if expanded.expand is not None or (allowed is not None and id(expanded) not in allowed):
                    continue
                if expanded.sql_from.startswith("(") or expanded.table is None:
                    continue
                other = csrc if expanded is psrc else psrc
                era, edec = (vpra, vpdec) if expanded is psrc else (vcra, vcdec)
                ora, odec = (vcra, vcdec) if expanded is psrc else (vpra, vpdec)
                expanded.expand = self._cell_sql(expanded, era, edec, depth)
                expanded.expand_depth = depth
                self.xmatch[id(expr)] = (expanded, other, ora, odec, era, edec, float(vrad.const), depth)
                break

    # ------------------------------------------------------------ general geometry
    def _geo_value(self, v: Val, at: n.Node) -> Geo:
        if v.geo is not None:
            return v.geo
        if v.kind in _GEO_KINDS:
            return Geo(v.kind, array=v.sql)
        raise self._fail(f"expected a geometry (POINT, CIRCLE, POLYGON), got a {v.kind} value", at)

    def _geo_array(self, g: Geo) -> str:
        if g.array is not None:
            return g.array
        if g.const is not None:
            return self._array([_num(x) for x in g.const])
        if g.kind == "point":
            assert g.ra and g.dec
            return self._array([g.ra.sql, g.dec.sql])
        if g.kind == "circle":
            assert g.ra and g.dec and g.radius
            return self._array([g.ra.sql, g.dec.sql, g.radius.sql])
        assert g.verts is not None
        return self._array([x.sql for pair in g.verts for x in pair])

    def _pgsphere(self, g: Geo) -> str:
        """A pgsphere value for a geometry (PostgreSQL)."""
        if g.kind == "point":
            if g.ra is not None and g.dec is not None:
                return f"spoint(radians({g.ra.sql}), radians({g.dec.sql}))"
            return f"pachon_spoint({self._geo_array(g)})"
        if g.kind == "circle":
            if g.ra is not None and g.dec is not None and g.radius is not None:
                return f"scircle(spoint(radians({g.ra.sql}), radians({g.dec.sql})), radians({g.radius.sql}))"
            return f"pachon_scircle({self._geo_array(g)})"
        if g.const is not None:
            verts = ",".join(
                f"({_num(g.const[i])}d,{_num(g.const[i + 1])}d)" for i in range(0, len(g.const), 2)
            )
            return f"spoly({quote_string('{' + verts + '}')})"
        return f"pachon_spoly({self._geo_array(g)})"

    def _geo_predicate(self, f: n.FuncCall, scope: _Scope) -> str:
        a = self._geo_value(self.value(f.args[0], scope), f.args[0])
        b = self._geo_value(self.value(f.args[1], scope), f.args[1])
        if f.name == "contains" and a.kind == "point" and b.kind == "circle" and a.ra and b.ra:
            assert a.dec and b.dec and b.radius
            return self._point_in_circle(a.ra, a.dec, b.ra, b.dec, b.radius)
        if self.pg:
            pa, pb = self._pgsphere(a), self._pgsphere(b)
            if f.name == "contains":
                return f"({pa} @ {pb})"
            if a.kind == "point" and b.kind == "point":
                return f"({pa} = {pb})"
            if a.kind == "point":
                return f"({pa} @ {pb})"
            if b.kind == "point":
                return f"({pb} @ {pa})"
            return f"({pa} && {pb})"
        if f.name == "contains" and a.kind == "point" and b.kind == "polygon" and a.ra and a.dec:
            src = self._position_source(a.ra, a.dec)
            exact = f"pachon_geom_contains({self._geo_array(b)}, {self._geo_array(a)}) = 1"
            if src is not None and b.const is not None and src.table and src.table.position:
                ranges = geometry.polygon_ranges(b.const)
                if ranges:
                    hpx = f"{quote_ident(src.sql_alias)}.{quote_ident(src.table.position.hpx_column or '')}"
                    rsql = " OR ".join(f"{hpx} BETWEEN {lo} AND {hi}" for lo, hi in ranges)
                    return f"(({rsql}) AND {exact})"
            return f"({exact})"
        fn = "pachon_geom_contains" if f.name == "contains" else "pachon_geom_intersects"
        first, second = (b, a) if f.name == "contains" else (a, b)
        return f"({fn}({self._geo_array(first)}, {self._geo_array(second)}) = 1)"

    # ------------------------------------------------------------ values
    def value(self, e: n.Expr, scope: _Scope) -> Val:
        method = getattr(self, "_v_" + type(e).__name__, None)
        if method is None:
            raise self._fail("this condition cannot be used as a value", e)
        result: Val = method(e, scope)
        return result

    def _v_Literal(self, e: n.Literal, scope: _Scope) -> Val:
        if e.kind == "null":
            return Val("NULL", "null", const=None)
        if e.kind == "string":
            assert isinstance(e.value, str)
            return Val(quote_string(e.value), "string", const=e.value)
        if e.kind == "int":
            assert isinstance(e.value, int)
            kind = "int" if -(2**31) <= e.value < 2**31 else "long"
            if not -(2**63) <= e.value < 2**63:
                raise self._fail("integer literal out of the BIGINT range", e)
            return Val(str(e.value) if e.value >= 0 else f"({e.value})", kind, const=e.value)
        assert isinstance(e.value, float)
        if math.isinf(e.value):
            raise self._fail("numeric literal out of range", e)
        text = _num(e.value)
        sql = f"CAST({text} AS {self._dbl()})"
        return Val(sql if e.value >= 0 else f"({sql})", "double", const=e.value)

    def _v_ColumnRef(self, e: n.ColumnRef, scope: _Scope) -> Val:
        return self.column(e, scope)

    def _v_Unary(self, e: n.Unary, scope: _Scope) -> Val:
        v = self.value(e.operand, scope)
        if v.kind not in (*_NUM_KINDS, "null", "unknown"):
            raise self._fail(f"unary {e.op} needs a number", e)
        const = -v.const if e.op == "-" and isinstance(v.const, (int, float)) else v.const
        if e.op == "+":
            return replace(v, name=None)
        return Val(f"(- {v.sql})", v.kind, meta=v.meta, const=const, agg=v.agg)

    def _v_BinaryOp(self, e: n.BinaryOp, scope: _Scope) -> Val:
        left, right = self.value(e.left, scope), self.value(e.right, scope)
        agg = left.agg or right.agg
        if e.op == "||":
            for v, x in ((left, e.left), (right, e.right)):
                if v.kind in _GEO_KINDS:
                    raise self._fail("|| concatenates strings, not geometries", x)
            lsql = left.sql if left.kind in ("string", "null") else f"CAST({left.sql} AS VARCHAR)"
            rsql = right.sql if right.kind in ("string", "null") else f"CAST({right.sql} AS VARCHAR)"
            joined: Any = (
                left.const + right.const
                if isinstance(left.const, str) and isinstance(right.const, str)
                else _NOCONST
            )
            return Val(f"({lsql} || {rsql})", "string", agg=agg, const=joined)
        for v, x in ((left, e.left), (right, e.right)):
            if v.kind not in (*_NUM_KINDS, "null", "unknown"):
                raise self._fail(f"arithmetic ({e.op}) needs numbers, not a {v.kind} value", x)
        both_int = left.kind in _INT_KINDS and right.kind in _INT_KINDS
        kind = ("long" if "long" in (left.kind, right.kind) else "int") if both_int else "double"
        op = e.op
        if op == "/" and both_int and not self.pg:
            op = "//"
        const: Any = _NOCONST
        if isinstance(left.const, (int, float)) and isinstance(right.const, (int, float)):
            try:
                const = {
                    "+": lambda: left.const + right.const,
                    "-": lambda: left.const - right.const,
                    "*": lambda: left.const * right.const,
                    "/": lambda: int(left.const / right.const) if both_int else left.const / right.const,
                }[e.op]()
            except (ZeroDivisionError, OverflowError):
                const = _NOCONST
        unit = None
        if (e.op in "+-" and left.meta is not None and left.meta.unit) or (
            e.op in "*/" and isinstance(right.const, (int, float)) and left.meta is not None
        ):
            unit = left.meta.unit
        elif e.op == "*" and isinstance(left.const, (int, float)) and right.meta is not None:
            unit = right.meta.unit
        meta = ColumnInfo("expr", _votable(kind)[0], unit=unit) if unit else None
        return Val(f"({left.sql} {op} {right.sql})", kind, const=const, agg=agg, meta=meta)

    def _v_ScalarSubquery(self, e: n.ScalarSubquery, scope: _Scope) -> Val:
        sql, outs = self.query(e.query, scope)
        if len(outs) != 1:
            raise self._fail(f"a scalar subquery must return one column, not {len(outs)}", e)
        return Val(f"({sql})", outs[0].val.kind, meta=outs[0].val.meta)

    def _v_Case(self, e: n.Case, scope: _Scope) -> Val:
        parts = ["CASE"]
        kinds = []
        agg = False
        if e.operand is not None:
            op = self.value(e.operand, scope)
            parts.append(op.sql)
            agg = op.agg
        meta = None
        for cond, result in e.whens:
            c = self.value(cond, scope).sql if e.operand is not None else self.condition(cond, scope)
            r = self.value(result, scope)
            meta = meta or r.meta
            kinds.append(r.kind)
            agg = agg or r.agg
            parts += ["WHEN", c, "THEN", r.sql]
        if e.else_ is not None:
            r = self.value(e.else_, scope)
            kinds.append(r.kind)
            parts += ["ELSE", r.sql]
        parts.append("END")
        kind = kinds[0]
        for k in kinds[1:]:
            kind = self._common_kind(kind, k)
        return Val("(" + " ".join(parts) + ")", kind, agg=agg, meta=meta)

    def _v_Cast(self, e: n.Cast, scope: _Scope) -> Val:
        t = e.type
        if t.name.lower() in _GEO_KINDS:
            v = self.value(e.expr, scope)
            if v.kind == "null":
                return Val("NULL", t.name.lower())
            if not isinstance(v.const, str):
                raise self._fail(f"CAST to {t.name} needs a string literal of numbers", e.expr)
            try:
                nums = [float(x) for x in v.const.replace(",", " ").split()]
            except ValueError:
                raise self._fail(f"cannot read {v.const!r} as a {t.name}", e.expr) from None
            kind = t.name.lower()
            if geometry.shape_kind(nums) != kind:
                raise self._fail(f"{v.const!r} is not a valid {t.name}", e.expr)
            return self._const_geo(kind, nums)
        v = self.value(e.expr, scope)
        types = {
            "SMALLINT": ("SMALLINT", "short"),
            "INTEGER": ("INTEGER", "int"),
            "BIGINT": ("BIGINT", "long"),
            "REAL": ("REAL", "float"),
            "DOUBLE PRECISION": (self._dbl(), "double"),
            "TIMESTAMP": ("TIMESTAMP", "timestamp"),
            "CHAR": ("VARCHAR" if not self.pg else "CHAR", "string"),
            "VARCHAR": ("VARCHAR", "string"),
        }
        sqltype, kind = types[t.name]
        if t.length is not None:
            sqltype += f"({int(t.length)})"
        if v.kind in _GEO_KINDS:
            raise self._fail(f"cannot CAST a geometry to {t.name}", e.expr)
        meta = None
        if t.length is not None and kind == "string":
            meta = ColumnInfo("expr", "char", f"{t.length}" if t.name == "CHAR" else f"{t.length}*")
        if kind in _INT_KINDS and v.kind in ("float", "double") and not self.pg:
            # PostgreSQL rounds half away from zero when casting to integers; DuckDB rounds half to even.
            return Val(f"CAST(round({v.sql}) AS {sqltype})", kind, agg=v.agg, meta=meta)
        return Val(f"CAST({v.sql} AS {sqltype})", kind, agg=v.agg, meta=meta)

    def _const_geo(self, kind: str, nums: list[float]) -> Val:
        vals = [Val(f"CAST({_num(x)} AS {self._dbl()})", "double", const=x) for x in nums]
        if kind == "point":
            g = Geo("point", ra=vals[0], dec=vals[1], const=nums)
        elif kind == "circle":
            g = Geo("circle", ra=vals[0], dec=vals[1], radius=vals[2], const=nums)
        else:
            g = Geo("polygon", verts=[(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)], const=nums)
        g.array = self._geo_array(replace(g, array=None))
        return Val(g.array, kind, geo=g, name=kind)

    def _v_FuncCall(self, e: n.FuncCall, scope: _Scope) -> Val:
        name = e.name.lower()
        if name in ("count", "avg", "min", "max", "sum"):
            return self._aggregate(e, scope)
        handler = getattr(self, "_f_" + name, None)
        if handler is not None:
            result: Val = handler(e, scope)
            if result.name is None:
                result = replace(result, name=name)
            return result
        if name in _MATH1 or name in ("atan2", "power", "pi", "mod", "rand", "round", "truncate"):
            return self._math(e, scope)
        info = lookup_udf(e.name)
        if info is None:
            raise self._fail(
                f"unknown function {e.name}(); this service offers the ADQL 2.1 functions and "
                "ivo_healpix_index, ivo_healpix_center, ivo_hasword, ivo_nocasematch, ivo_string_agg, "
                "ivo_interval_overlaps, ivo_epoch_prop_pos and the scisql_* photometry functions",
                e,
            )
        return self._udf(info.name.lower(), e, scope)

    def _args(self, e: n.FuncCall, scope: _Scope, numeric: bool = True) -> list[Val]:
        vals = [self.value(a, scope) for a in e.args]
        if numeric:
            for v, a in zip(vals, e.args, strict=True):
                if v.kind not in (*_NUM_KINDS, "null", "unknown"):
                    raise self._fail(f"{e.name.upper()} needs numeric arguments, got a {v.kind} value", a)
        return vals

    def _aggregate(self, e: n.FuncCall, scope: _Scope) -> Val:
        name = e.name.lower()
        if e.star:
            return Val("count(*)", "long", agg=True, name="count")
        v = self.value(e.args[0], scope)
        if v.kind in _GEO_KINDS:
            raise self._fail(f"{name.upper()} of a geometry is not defined", e.args[0])
        distinct = "DISTINCT " if e.distinct else ""
        sql = f"{name}({distinct}{v.sql})"
        if name == "count":
            return Val(sql, "long", agg=True, name="count")
        if name == "avg":
            if v.kind not in (*_NUM_KINDS, "null", "unknown"):
                raise self._fail("AVG needs a numeric argument", e.args[0])
            return Val(f"avg({distinct}{v.sql})", "double", agg=True, name="avg", meta=self._keep_unit(v))
        if name == "sum":
            if v.kind not in (*_NUM_KINDS, "null", "unknown"):
                raise self._fail("SUM needs a numeric argument", e.args[0])
            kind = "long" if v.kind in _INT_KINDS else "double"
            cast = f"CAST({sql} AS {'BIGINT' if kind == 'long' else self._dbl()})"
            return Val(cast, kind, agg=True, name="sum", meta=self._keep_unit(v))
        return Val(sql, v.kind, agg=True, name=name, meta=self._keep_unit(v, keep_all=True))

    @staticmethod
    def _keep_unit(v: Val, keep_all: bool = False) -> ColumnInfo | None:
        if v.meta is None:
            return None
        if keep_all:
            return v.meta
        return ColumnInfo("expr", v.meta.datatype, unit=v.meta.unit, ucd=v.meta.ucd)

    def _math(self, e: n.FuncCall, scope: _Scope) -> Val:
        name = e.name.lower()
        vals = self._args(e, scope)
        agg = any(v.agg for v in vals)
        consts = [v.const for v in vals]
        const: Any = _NOCONST
        if name in _CONST_FUNCS and all(isinstance(c, (int, float)) for c in consts):
            try:
                const = _CONST_FUNCS[name](*consts)
            except (ValueError, OverflowError, ZeroDivisionError):
                const = _NOCONST
        if name in _MATH1:
            v = vals[0]
            kind = v.kind if name in ("abs",) and v.kind in _NUM_KINDS else "double"
            fn = _MATH1[name]
            sql = f"{fn}({v.sql})"
            if name in ("ceiling", "floor"):
                kind = "double" if v.kind not in _INT_KINDS else v.kind
                sql = v.sql if v.kind in _INT_KINDS else f"CAST({fn}({v.sql}) AS {self._dbl()})"
            elif name == "abs":
                sql = f"abs({v.sql})"
            else:
                sql = f"{fn}(CAST({v.sql} AS {self._dbl()}))"
            meta = v.meta if name == "abs" else None
            return Val(sql, kind, agg=agg, const=const, meta=meta)
        if name == "pi":
            return Val("pi()", "double", const=math.pi)
        if name == "atan2":
            return Val(f"atan2({vals[0].sql}, {vals[1].sql})", "double", agg=agg, const=const)
        if name == "power":
            return Val(
                f"power(CAST({vals[0].sql} AS {self._dbl()}), {vals[1].sql})", "double", agg=agg, const=const
            )
        if name == "mod":
            a, b = vals
            if a.kind in _INT_KINDS and b.kind in _INT_KINDS:
                return Val(f"mod({a.sql}, {b.sql})", "long" if "long" in (a.kind, b.kind) else "int", agg=agg)
            if self.pg:
                return Val(
                    f"CAST(mod(CAST({a.sql} AS numeric), CAST({b.sql} AS numeric)) AS double precision)",
                    "double",
                    agg=agg,
                )
            return Val(f"fmod(CAST({a.sql} AS DOUBLE), CAST({b.sql} AS DOUBLE))", "double", agg=agg)
        if name == "rand":
            # A seed cannot be applied per query portably; rand(seed) returns random values too.
            return Val("random()", "double")
        if name in ("round", "truncate"):
            v = vals[0]
            digits = vals[1].sql if len(vals) > 1 else "0"
            if len(vals) > 1 and vals[1].kind not in (*_INT_KINDS, "null"):
                raise self._fail(f"the second argument of {name.upper()} must be an integer", e.args[1])
            if v.kind in _INT_KINDS and len(vals) == 1:
                return Val(v.sql, v.kind, agg=agg)
            fn = "round" if name == "round" else "trunc"
            if self.pg:
                sql = f"CAST({fn}(CAST({v.sql} AS numeric), {digits}) AS double precision)"
            elif name == "round":
                sql = f"round(CAST({v.sql} AS DECIMAL(38, 12)), {digits})::DOUBLE"
            else:
                sql = f"trunc(CAST({v.sql} AS DECIMAL(38, 12)), {digits})::DOUBLE"
            return Val(sql, "double", agg=agg, meta=self._keep_unit(v))
        raise self._fail(f"unknown function {e.name}", e)  # pragma: no cover

    # -- strings and conditionals
    def _f_lower(self, e: n.FuncCall, scope: _Scope) -> Val:
        v = self.value(e.args[0], scope)
        return Val(f"lower({v.sql})", "string", agg=v.agg, meta=v.meta)

    def _f_upper(self, e: n.FuncCall, scope: _Scope) -> Val:
        v = self.value(e.args[0], scope)
        return Val(f"upper({v.sql})", "string", agg=v.agg, meta=v.meta)

    def _f_coalesce(self, e: n.FuncCall, scope: _Scope) -> Val:
        vals = [self.value(a, scope) for a in e.args]
        kind = vals[0].kind
        for v in vals[1:]:
            kind = self._common_kind(kind, v.kind)
        return Val(
            "COALESCE(" + ", ".join(v.sql for v in vals) + ")",
            kind,
            agg=any(v.agg for v in vals),
            meta=next((v.meta for v in vals if v.meta), None),
        )

    def _f_nullif(self, e: n.FuncCall, scope: _Scope) -> Val:
        a, b = (self.value(x, scope) for x in e.args)
        return Val(f"NULLIF({a.sql}, {b.sql})", a.kind, agg=a.agg or b.agg, meta=a.meta)

    def _f_in_unit(self, e: n.FuncCall, scope: _Scope) -> Val:
        v = self.value(e.args[0], scope)
        target = e.args[1]
        assert isinstance(target, n.Literal) and isinstance(target.value, str)
        unit = self._unit_of(v)
        if unit is None:
            raise self._fail("IN_UNIT needs a value with a known unit (a column with a unit)", e.args[0])
        try:
            import astropy.units as u

            factor = u.Unit(unit).to(u.Unit(target.value))
        except (ValueError, u.UnitsError) as exc:
            raise self._fail(f"IN_UNIT cannot convert {unit!r} to {target.value!r}: {exc}", target) from None
        meta = ColumnInfo("expr", "double", unit=target.value, ucd=v.meta.ucd if v.meta else None)
        return Val(f"({v.sql} * {_num(float(factor))})", "double", agg=v.agg, meta=meta)

    def _unit_of(self, v: Val) -> str | None:
        return v.meta.unit if v.meta is not None and v.meta.unit else None

    # -- geometry constructors and functions
    def _f_point(self, e: n.FuncCall, scope: _Scope) -> Val:
        ra, dec = self._args(e, scope)
        const = (
            [ra.const, dec.const] if all(isinstance(c, (int, float)) for c in (ra.const, dec.const)) else None
        )
        g = Geo("point", ra=ra, dec=dec, const=const)
        g.array = self._geo_array(replace(g, array=None, const=None))
        return Val(g.array, "point", geo=g, agg=ra.agg or dec.agg)

    def _f_circle(self, e: n.FuncCall, scope: _Scope) -> Val:
        if len(e.args) == 2:
            centre = self._geo_value(self.value(e.args[0], scope), e.args[0])
            if centre.kind != "point":
                raise self._fail("CIRCLE(centre, radius) needs a POINT centre", e.args[0])
            radius = self._args(n.FuncCall("circle", (e.args[1],)), scope)[0]
            ra, dec = self._point_parts(centre)
        else:
            ra, dec, radius = self._args(e, scope)
        consts = [ra.const, dec.const, radius.const]
        const = consts if all(isinstance(c, (int, float)) for c in consts) else None
        g = Geo("circle", ra=ra, dec=dec, radius=radius, const=const)
        g.array = self._geo_array(replace(g, array=None, const=None))
        return Val(g.array, "circle", geo=g)

    def _point_parts(self, g: Geo) -> tuple[Val, Val]:
        if g.ra is not None and g.dec is not None:
            return g.ra, g.dec
        arr = self._geo_array(g)
        return Val(f"({arr})[1]", "double"), Val(f"({arr})[2]", "double")

    def _f_box(self, e: n.FuncCall, scope: _Scope) -> Val:
        if len(e.args) == 3:
            raise self._fail("BOX(point, width, height) is not supported; use BOX(ra, dec, width, height)", e)
        ra, dec, w, h = self._args(e, scope)
        consts = [ra.const, dec.const, w.const, h.const]
        if all(isinstance(c, (int, float)) for c in consts):
            return self._const_geo("polygon", geometry.box_polygon(*[float(c) for c in consts]))
        hw, hh = f"({w.sql} / 2.0)", f"({h.sql} / 2.0)"
        corners = [
            (f"({ra.sql} - {hw})", f"({dec.sql} - {hh})"),
            (f"({ra.sql} - {hw})", f"({dec.sql} + {hh})"),
            (f"({ra.sql} + {hw})", f"({dec.sql} + {hh})"),
            (f"({ra.sql} + {hw})", f"({dec.sql} - {hh})"),
        ]
        verts = [(Val(a, "double"), Val(b, "double")) for a, b in corners]
        g = Geo("polygon", verts=verts)
        g.array = self._geo_array(replace(g, array=None))
        return Val(g.array, "polygon", geo=g)

    def _f_polygon(self, e: n.FuncCall, scope: _Scope) -> Val:
        if (len(e.args) >= 3 and len(e.args) < 6) or all(
            isinstance(a, n.FuncCall) and a.name == "point" for a in e.args
        ):
            verts = []
            for a in e.args:
                g = self._geo_value(self.value(a, scope), a)
                if g.kind != "point":
                    raise self._fail("POLYGON(p1, p2, p3, ...) needs POINT vertices", a)
                verts.append(self._point_parts(g))
        else:
            vals = self._args(e, scope)
            verts = [(vals[i], vals[i + 1]) for i in range(0, len(vals), 2)]
        flat = [c for pair in verts for c in (pair[0].const, pair[1].const)]
        if all(isinstance(c, (int, float)) for c in flat):
            return self._const_geo("polygon", [float(c) for c in flat])
        g = Geo("polygon", verts=verts)
        g.array = self._geo_array(replace(g, array=None))
        return Val(g.array, "polygon", geo=g)

    def _f_region(self, e: n.FuncCall, scope: _Scope) -> Val:
        arg = e.args[0]
        assert isinstance(arg, n.Literal) and isinstance(arg.value, str)
        try:
            kind, nums = geometry.parse_stcs(arg.value)
        except ValueError as exc:
            raise self._fail(str(exc), arg) from None
        return self._const_geo(kind, nums)

    def _f_distance(self, e: n.FuncCall, scope: _Scope) -> Val:
        if len(e.args) == 4:
            ra1, dec1, ra2, dec2 = self._args(e, scope)
        else:
            g1 = self._geo_value(self.value(e.args[0], scope), e.args[0])
            g2 = self._geo_value(self.value(e.args[1], scope), e.args[1])
            if g1.kind != "point" or g2.kind != "point":
                raise self._fail("DISTANCE is defined between two points", e)
            (ra1, dec1), (ra2, dec2) = self._point_parts(g1), self._point_parts(g2)
        meta = ColumnInfo("distance", "double", unit="deg", ucd="pos.angDistance")
        return Val(self._haversine(ra1, dec1, ra2, dec2), "double", meta=meta)

    def _f_contains(self, e: n.FuncCall, scope: _Scope) -> Val:
        return Val(f"CASE WHEN {self._geo_predicate(e, scope)} THEN 1 ELSE 0 END", "int")

    _f_intersects = _f_contains

    def _f_area(self, e: n.FuncCall, scope: _Scope) -> Val:
        g = self._geo_value(self.value(e.args[0], scope), e.args[0])
        meta = ColumnInfo("area", "double", unit="deg**2", ucd="phys.angArea")
        if g.const is not None:
            value = geometry.area(g.const)
            assert value is not None
            return Val(f"CAST({_num(value)} AS {self._dbl()})", "double", meta=meta)
        if self.pg:
            if g.kind == "point":
                return Val(f"CAST(0 AS {self._dbl()})", "double", meta=meta)
            return Val(f"(area({self._pgsphere(g)}) * {_num((180 / math.pi) ** 2)})", "double", meta=meta)
        return Val(f"pachon_geom_area({self._geo_array(g)})", "double", meta=meta)

    def _f_centroid(self, e: n.FuncCall, scope: _Scope) -> Val:
        g = self._geo_value(self.value(e.args[0], scope), e.args[0])
        if g.const is not None:
            c = geometry.centroid(g.const)
            assert c is not None
            return self._const_geo("point", c)
        if g.kind in ("point", "circle"):
            ra, dec = self._point_parts(g)
            pg = Geo("point", ra=ra, dec=dec)
            pg.array = self._geo_array(replace(pg, array=None))
            return Val(pg.array, "point", geo=pg)
        fn = "pachon_geom_centroid"
        return Val(f"{fn}({self._geo_array(g)})", "point")

    def _f_coord1(self, e: n.FuncCall, scope: _Scope) -> Val:
        g = self._geo_value(self.value(e.args[0], scope), e.args[0])
        if g.kind != "point":
            raise self._fail("COORD1 needs a POINT", e.args[0])
        ra, _ = self._point_parts(g)
        return Val(
            ra.sql, "double", meta=ColumnInfo("coord1", "double", unit="deg", ucd="pos.eq.ra"), const=ra.const
        )

    def _f_coord2(self, e: n.FuncCall, scope: _Scope) -> Val:
        g = self._geo_value(self.value(e.args[0], scope), e.args[0])
        if g.kind != "point":
            raise self._fail("COORD2 needs a POINT", e.args[0])
        _, dec = self._point_parts(g)
        return Val(
            dec.sql,
            "double",
            meta=ColumnInfo("coord2", "double", unit="deg", ucd="pos.eq.dec"),
            const=dec.const,
        )

    def _f_coordsys(self, e: n.FuncCall, scope: _Scope) -> Val:
        self._geo_value(self.value(e.args[0], scope), e.args[0])
        return Val(quote_string("ICRS"), "string", const="ICRS")

    # -- user-defined functions
    def _udf(self, name: str, e: n.FuncCall, scope: _Scope) -> Val:
        if name == "ivo_string_agg":
            a, b = (self.value(x, scope) for x in e.args)
            return Val(f"string_agg(CAST({a.sql} AS VARCHAR), {b.sql})", "string", agg=True, name=name)
        if name == "ivo_hasword":
            a, b = (self.value(x, scope) for x in e.args)
            return Val(f"pachon_hasword({a.sql}, {b.sql})", "int", name=name)
        if name == "ivo_nocasematch":
            a, b = (self.value(x, scope) for x in e.args)
            return Val(f"CASE WHEN ({a.sql} ILIKE {b.sql}) THEN 1 ELSE 0 END", "int", name=name)
        vals = self._args(e, scope)
        if name == "ivo_interval_overlaps":
            l1, h1, l2, h2 = (v.sql for v in vals)
            return Val(f"CASE WHEN ({h1} >= {l2} AND {h2} >= {l1}) THEN 1 ELSE 0 END", "int", name=name)
        if name == "ivo_healpix_index":
            order, ra, dec = vals
            if self.pg:
                return Val(
                    f"healpix_nest(CAST({order.sql} AS integer), spoint(radians({ra.sql}), radians({dec.sql})))",
                    "long",
                    name=name,
                )
            return Val(f"pachon_healpix({ra.sql}, {dec.sql}, {order.sql})", "long", name=name)
        if name == "ivo_healpix_center":
            order, index = vals
            if self.pg:
                sql = (
                    f"pachon_spoint_array(center_of_healpix_nest(CAST({order.sql} AS integer), {index.sql}))"
                )
            else:
                sql = f"pachon_healpix_center({order.sql}, {index.sql})"
            g = Geo("point", array=sql)
            return Val(sql, "point", geo=g, name=name)
        if name == "ivo_epoch_prop_pos":
            ra, dec, _plx, pmra, pmdec, _rv, ref, out = vals
            dt = f"({out.sql} - {ref.sql})"
            new_dec = f"({dec.sql} + {pmdec.sql} * {dt} / 3600000.0)"
            new_ra = f"({ra.sql} + {pmra.sql} * {dt} / 3600000.0 / cos(radians({dec.sql})))"
            g = Geo("point", ra=Val(new_ra, "double"), dec=Val(new_dec, "double"))
            g.array = self._geo_array(replace(g, array=None))
            return Val(g.array, "point", geo=g, name=name)
        if name == "scisql_nanojanskytoabmag":
            (f,) = vals
            meta = ColumnInfo(name, "double", unit="mag", ucd="phot.mag")
            return Val(
                f"CASE WHEN {f.sql} > 0 THEN -2.5 * log10(CAST({f.sql} AS {self._dbl()}) / 3631e9) END",
                "double",
                name=name,
                meta=meta,
            )
        if name == "scisql_nanojanskytoabmagsigma":
            f, s = vals
            meta = ColumnInfo(name, "double", unit="mag", ucd="stat.error;phot.mag")
            return Val(
                f"CASE WHEN {f.sql} > 0 THEN {_num(2.5 / math.log(10))} * {s.sql} / {f.sql} END",
                "double",
                name=name,
                meta=meta,
            )
        if name == "scisql_abmagtonanojansky":
            (m,) = vals
            meta = ColumnInfo(name, "double", unit="nJy", ucd="phot.flux.density")
            return Val(f"(3631e9 * power(10.0, -0.4 * {m.sql}))", "double", name=name, meta=meta)
        if name == "scisql_abmagtonanojanskysigma":
            m, s = vals
            meta = ColumnInfo(name, "double", unit="nJy", ucd="stat.error;phot.flux.density")
            return Val(
                f"({_num(math.log(10) / 2.5)} * {s.sql} * 3631e9 * power(10.0, -0.4 * {m.sql}))",
                "double",
                name=name,
                meta=meta,
            )
        raise self._fail(f"function {e.name} is not available on this back end", e)  # pragma: no cover


_REGULAR = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED = frozenset(w.upper() for w in ADQL_FUNCTIONS) | frozenset(w.upper() for w in ALLOWED_WORDS)


def _needs_quotes(name: str) -> bool:
    """Whether an output column name must be a delimited identifier in ADQL."""
    return _REGULAR.fullmatch(name) is None or name.upper() in _RESERVED


def _column_info(out: _Out, index: int) -> ColumnInfo:
    info = _column_info_raw(out, index)
    return replace(info, delimited=_needs_quotes(info.name))


def _column_info_raw(out: _Out, index: int) -> ColumnInfo:
    datatype, arraysize, xtype = _votable(out.val.kind)
    meta = out.val.meta
    if meta is not None and out.val.kind not in ("unknown",):
        same_type = _kind_of(meta) == out.val.kind
        return ColumnInfo(
            name=out.name,
            datatype=meta.datatype if same_type else datatype,
            arraysize=meta.arraysize if same_type else arraysize,
            xtype=meta.xtype if same_type else xtype,
            unit=meta.unit,
            ucd=meta.ucd,
            utype=meta.utype,
            description=meta.description,
            column_index=index,
        )
    return ColumnInfo(name=out.name, datatype=datatype, arraysize=arraysize, xtype=xtype, column_index=index)


def translate(
    tree: n.Query | str,
    dialect: str = "duckdb",
    resolver: Resolver | None = None,
    limit: int | None = None,
) -> Translation:
    """Translate a parsed ADQL query to SQL for ``dialect`` (``duckdb`` or ``postgresql``).

    ``resolver.resolve(schema, table)`` finds catalog tables (uploads are schema
    ``TAP_UPLOAD``). ``limit`` (e.g. MAXREC+1) caps the rows: the SQL gets
    ``LIMIT min(TOP, limit)``. Raises :class:`~.errors.AdqlSemanticError` for unknown
    tables, columns, functions and type errors, with the position in the query.

    >>> from pachon.core.catalog.model import ColumnInfo, TableInfo
    >>> from pachon.services.tap.adql.resolver import SimpleResolver
    >>> t = TableInfo("dp1", "Object", (ColumnInfo("objectId", "long"),))
    >>> translate("SELECT TOP 3 objectid FROM dp1.object", resolver=SimpleResolver([t])).sql
    'SELECT "_t1"."objectId" AS "objectId" FROM "dp1"."Object" AS "_t1" LIMIT 3'
    """
    if isinstance(tree, str):
        tree = parse(tree)
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    tr = _Translator(dialect, resolver)
    try:
        sql, outs, top = tr.top_query(tree, limit)
    except RecursionError:
        raise AdqlSemanticError(
            "the query is nested too deeply to translate (hundreds of levels); simplify the expression"
        ) from None
    try:
        check_sql(sql)
    except UnsafeSqlError as exc:  # pragma: no cover - a translator bug, never user error
        raise AdqlSemanticError(f"internal error, the query was refused: {exc}; please report it") from exc
    columns = [_column_info(o, i) for i, o in enumerate(outs)]
    return Translation(sql=sql, columns=columns, top=top, tables=list(tr.tables), dialect=dialect)
