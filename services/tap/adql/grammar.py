"""The ADQL 2.1 grammar in lark's EBNF, for an LALR(1) parser with a contextual lexer.

Why lark LALR with a basic (context-free) lexer: it builds a deterministic table-driven parser once per process, and with
the tree builder replaced by our own callbacks (see :mod:`.parser`) a typical TAP query
parses in well under a millisecond, which an Earley or PEG parser (pyparsing, Arpeggio)
cannot promise. LALR also forces the grammar to be unambiguous: every conflict is a
question about the language that had to be answered here rather than at run time.

Choices where ADQL's BNF and practice differ (we follow IVOA's lyonetia suite and peers):

* Keywords are reserved everywhere (the lexer does not look at the parser state, so
  ``SELECT from FROM t`` is an error, not a column named ``from``), but only the words the
  grammar needs are keywords. ADQL's function names (``DISTANCE``,
  ``POINT``, ``LOG`` …) are reserved where a value may start, so ``SELECT distance FROM t``
  is rejected but columns called ``ra``, ``dec``, ``name``, ``type`` or ``size``-like SQL-92
  words are fine, as lyonetia requires.
* Bitwise operators and hex literals were removed from ADQL 2.1 and are not accepted.
* ``WITH`` is allowed only at the top level (lyonetia marks nested CTEs invalid).
* Any ``name(args)`` parses as a user-defined function call; whether the function exists
  is decided by the parser's ``udfs`` option or, by default, by the translator.
"""

from __future__ import annotations

__all__ = ["ADQL_FUNCTIONS", "GRAMMAR", "TERMINAL_NAMES"]

# Reserved ADQL function names: they lex as FUNCNAME wherever a value can start.
ADQL_FUNCTIONS = [
    "ABS",
    "ACOS",
    "AREA",
    "ASIN",
    "ATAN2",
    "ATAN",
    "BOX",
    "CEILING",
    "CENTROID",
    "CIRCLE",
    "COALESCE",
    "CONTAINS",
    "COORD1",
    "COORD2",
    "COORDSYS",
    "COS",
    "COT",
    "DEGREES",
    "DISTANCE",
    "EXP",
    "FLOOR",
    "INTERSECTS",
    "IN_UNIT",
    "LOG10",
    "LOG",
    "LOWER",
    "MOD",
    "NULLIF",
    "PI",
    "POINT",
    "POLYGON",
    "POWER",
    "RADIANS",
    "RAND",
    "REGION",
    "ROUND",
    "SIN",
    "SQRT",
    "TAN",
    "TRUNCATE",
    "UPPER",
]

_FUNC_RE = "|".join(sorted(ADQL_FUNCTIONS, key=lambda s: (-len(s), s)))

GRAMMAR = (
    r"""
start: with_clause? query_expr

with_clause: _WITH cte ("," cte)*
cte: identifier ["(" ident_list ")"] _AS "(" query_expr ")"

query_expr: set_expr order_by? offset?

?set_expr: set_term
    | set_expr UNION ALL? set_term        -> set_union
    | set_expr EXCEPT ALL? set_term       -> set_except
?set_term: query_primary
    | set_term INTERSECT ALL? query_primary -> set_intersect
?query_primary: select_spec
    | "(" query_expr ")"

select_spec: _SELECT quantifier? top? select_list from_clause where_clause? group_by? having?
quantifier: DISTINCT | ALL
top: _TOP INT
select_list: select_item ("," select_item)*
select_item: STAR                         -> star
    | name_chain DOTSTAR                  -> qualified_star
    | value_expr alias?                   -> select_value
alias: _AS? identifier

from_clause: _FROM table_ref ("," table_ref)*
where_clause: _WHERE search_condition
group_by: _GROUP _BY value_expr ("," value_expr)*
having: _HAVING search_condition
order_by: _ORDER _BY order_item ("," order_item)*
order_item: value_expr (ASC | DESC)?
offset: _OFFSET INT

?table_ref: table_primary | joined_table
joined_table: table_ref join_type? _JOIN table_primary join_spec    -> qualified_join
    | table_ref _NATURAL join_type? _JOIN table_primary             -> natural_join
    | table_ref _CROSS _JOIN table_primary                          -> cross_join
join_type: INNER | LEFT _OUTER? | RIGHT _OUTER? | FULL _OUTER?
join_spec: _ON search_condition                                     -> join_on
    | _USING "(" ident_list ")"                                     -> join_using
table_primary: name_chain alias?                                    -> table_name
    | "(" query_expr ")" alias                                      -> derived_table
    | "(" joined_table ")" alias?                                   -> paren_join

name_chain: identifier ("." identifier)*
ident_list: identifier ("," identifier)*
identifier: NAME | DELIM

?search_condition: bool_term
    | search_condition _OR bool_term     -> or_
?bool_term: bool_factor
    | bool_term _AND bool_factor         -> and_
?bool_factor: bool_primary
    | NOT bool_primary                   -> not_
?bool_primary: predicate
    | "(" search_condition ")"
?predicate: value_expr COMP_OP value_expr                       -> comparison
    | value_expr NOT? _BETWEEN value_expr _AND value_expr      -> between
    | value_expr NOT? _IN "(" query_expr ")"                   -> in_query
    | value_expr NOT? _IN "(" value_expr ("," value_expr)* ")" -> in_list
    | value_expr NOT? LIKE value_expr                          -> like
    | value_expr _IS NOT? _NULL                                -> is_null
    | _EXISTS "(" query_expr ")"                               -> exists

?value_expr: add_expr
    | value_expr "||" add_expr           -> concat
?add_expr: mul_expr
    | add_expr PLUS mul_expr             -> arith
    | add_expr MINUS mul_expr            -> arith
?mul_expr: unary
    | mul_expr STAR unary                -> arith
    | mul_expr SLASH unary               -> arith
?unary: primary
    | MINUS unary                        -> neg
    | PLUS unary                         -> pos
?primary: literal
    | name_chain                         -> column_ref
    | "(" value_expr ")"
    | scalar_subquery
    | function
    | case_expr
    | cast_expr

scalar_subquery.2: "(" query_expr ")"

literal: INT                             -> int_lit
    | FLOAT                              -> float_lit
    | STRING+                            -> string_lit
    | _NULL                              -> null_lit

function: FUNCNAME "(" [value_expr ("," value_expr)*] ")"         -> builtin_call
    | NAME "(" [value_expr ("," value_expr)*] ")"                 -> udf_call
    | AGGREGATE "(" STAR ")"                                       -> count_star
    | AGGREGATE "(" quantifier? value_expr ")"                     -> aggregate

case_expr: _CASE when_search+ else_clause? _END                    -> searched_case
    | _CASE value_expr when_simple+ else_clause? _END              -> simple_case
when_search: _WHEN search_condition _THEN value_expr
when_simple: _WHEN value_expr _THEN value_expr
else_clause: _ELSE value_expr

cast_expr: CAST "(" value_expr _AS cast_type ")"
cast_type: (CASTTYPE | FUNCNAME) ["(" INT ")"]

FUNCNAME.3: /(?:"""
    + _FUNC_RE
    + r""")(?![A-Za-z0-9_])/i
AGGREGATE.3: /(?:COUNT|AVG|MIN|MAX|SUM)(?![A-Za-z0-9_])/i
CASTTYPE.3: /(?:SMALLINT|INTEGER|BIGINT|REAL|DOUBLE\s+PRECISION|CHAR|VARCHAR|TIMESTAMP)(?![A-Za-z0-9_])/i

_WITH: "WITH"i
_AS: "AS"i
_SELECT: "SELECT"i
_TOP: "TOP"i
DISTINCT: "DISTINCT"i
ALL: "ALL"i
_FROM: "FROM"i
_WHERE: "WHERE"i
_GROUP: "GROUP"i
_BY: "BY"i
_HAVING: "HAVING"i
_ORDER: "ORDER"i
ASC: "ASC"i
DESC: "DESC"i
_OFFSET: "OFFSET"i
UNION: "UNION"i
EXCEPT: "EXCEPT"i
INTERSECT: "INTERSECT"i
_JOIN: "JOIN"i
_NATURAL: "NATURAL"i
_CROSS: "CROSS"i
INNER: "INNER"i
LEFT: "LEFT"i
RIGHT: "RIGHT"i
FULL: "FULL"i
_OUTER: "OUTER"i
_ON: "ON"i
_USING: "USING"i
_OR: "OR"i
_AND: "AND"i
NOT: "NOT"i
_BETWEEN: "BETWEEN"i
_IN: "IN"i
LIKE.3: /I?LIKE(?![A-Za-z0-9_])/i
_IS: "IS"i
_NULL: "NULL"i
_EXISTS: "EXISTS"i
_CASE: "CASE"i
_WHEN: "WHEN"i
_THEN: "THEN"i
_ELSE: "ELSE"i
_END: "END"i
CAST: "CAST"i

DOTSTAR.2: /\.[ \t\f\r\n]*\*/
COMP_OP: "=" | "<>" | "!=" | "<=" | ">=" | "<" | ">"
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"

NAME: /[A-Za-z][A-Za-z0-9_]*/
DELIM: /"(?:[^"]|"")+"/
FLOAT.2: /(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+/
INT: /\d+/
STRING: /'(?:[^']|'')*'/

COMMENT: /--[^\n]*/
WS: /[ \t\f\r\n]+/
%ignore WS
%ignore COMMENT
"""
)

# How terminals are named in error messages ("expected FROM, ',' …").
TERMINAL_NAMES = {
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "COMP_OP": "a comparison operator",
    "NAME": "a name",
    "DELIM": "a delimited name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "FUNCNAME": "a function",
    "AGGREGATE": "an aggregate function",
    "CASTTYPE": "a type name",
    "$END": "end of query",
    "__ANON_0": "'||'",
}
