"""How the translator finds tables: any object with ``resolve(schema, table)``.

The TAP service passes a resolver over its catalog (plus the request's uploads as schema
``TAP_UPLOAD``). :class:`SimpleResolver` is the plain in-memory one, used by tests and by
callers that already hold the :class:`~pachon.core.catalog.model.TableInfo` objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from pachon.core.catalog.model import TableInfo

__all__ = ["Resolver", "SimpleResolver"]


class Resolver(Protocol):
    """Finds a table by its ADQL schema and table name (case-insensitively; None if absent)."""

    def resolve(self, schema: str | None, table: str) -> TableInfo | None: ...


class SimpleResolver:
    """Resolve among a fixed set of tables.

    Names match case-insensitively (the translator itself enforces exact case for
    delimited identifiers). A table name without schema matches when it is unique across
    schemas.

    >>> SimpleResolver([]).resolve(None, "x") is None
    True
    """

    def __init__(self, tables: Iterable[TableInfo]) -> None:
        self.tables = list(tables)
        self._by_name: dict[tuple[str, str], TableInfo] = {}
        self._by_table: dict[str, list[TableInfo]] = {}
        for table in self.tables:
            self._by_name[(table.schema.lower(), table.name.lower())] = table
            self._by_table.setdefault(table.name.lower(), []).append(table)

    def resolve(self, schema: str | None, table: str) -> TableInfo | None:
        if schema is not None:
            return self._by_name.get((schema.lower(), table.lower()))
        candidates = self._by_table.get(table.lower(), [])
        return candidates[0] if len(candidates) == 1 else None

    def names(self) -> list[str]:
        """Qualified names of all tables (for "did you mean" hints)."""
        return [t.qualified for t in self.tables]
