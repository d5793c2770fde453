"""Exceptions of the ADQL parser and translator.

Every error names where in the query it happened (1-based line and column) and, where it
can, what would have been accepted, because the TAP service hands the message straight
to the user in a VOTable error document.
"""

from __future__ import annotations

__all__ = ["AdqlError", "AdqlSemanticError", "AdqlSyntaxError"]


class AdqlError(Exception):
    """Base of all ADQL errors; ``str(error)`` is the message for the user."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        self.detail = message
        if line is not None and line > 0:
            message = f"line {line}, column {column}: {message}"
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)


class AdqlSyntaxError(AdqlError):
    """The query is not ADQL 2.1: ``token`` is the offending text (None at end of query)."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        token: str | None = None,
        expected: tuple[str, ...] = (),
    ) -> None:
        self.token = token
        self.expected = expected
        super().__init__(message, line=line, column=column)


class AdqlSemanticError(AdqlError):
    """The query parses but cannot run here: unknown table/column/function, wrong types."""
