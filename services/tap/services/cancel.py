"""Cancelling a running query from another thread.

A :class:`QueryHandle` holds the live DB-API connection of one query while it runs.
``cancel()`` interrupts it the way each back end allows: DuckDB's
``connection.interrupt()``, psycopg's ``connection.cancel()`` (which sends PostgreSQL's
cancel request, the same as ``pg_cancel_backend``). The reason (``timeout`` or ``abort``)
is kept so the runner turns the database's "interrupted" error into the right message.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["QueryHandle"]


class QueryHandle:
    """Cancellation token of one query; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any | None = None
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def attach(self, connection: Any) -> None:
        """Remember the connection the query runs on (cancels at once if already cancelled)."""
        with self._lock:
            self._connection = connection
            reason = self.reason
        if reason is not None:
            _interrupt(connection)

    def detach(self) -> None:
        with self._lock:
            self._connection = None

    def cancel(self, reason: str) -> None:
        """Stop the query (idempotent; the first reason wins)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            connection = self._connection
        if connection is not None:
            _interrupt(connection)


def _interrupt(connection: Any) -> None:
    raw = getattr(connection, "driver_connection", None) or getattr(connection, "connection", None)
    for candidate in (connection, raw):
        if candidate is None:
            continue
        if hasattr(candidate, "interrupt"):
            candidate.interrupt()
            return
        if hasattr(candidate, "cancel"):
            candidate.cancel()
            return
