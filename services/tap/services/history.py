"""The query history: recorded off the request path, listed per user.

Every sync and async query is recorded (user, time, duration, rows, status, ADQL). The
insert goes through a queue to one writer thread, so a query's answer never waits for the
state database (on SQLite a commit costs milliseconds on a busy machine). Reading the
history first waits until the queue is drained, so a user always sees their last query.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from anyio import to_thread

from ..models.history import HistoryList
from ..models.user import User
from ..storage.history import HistoryStore

__all__ = ["HistoryService", "HistoryWriter"]


class HistoryWriter:
    """Queue of history entries and the thread that writes them."""

    def __init__(self, *, store: HistoryStore, logger: logging.Logger) -> None:
        self._store = store
        self._logger = logger
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tap-history", daemon=True)
        self._thread.start()

    def record(self, **entry: Any) -> None:
        """Queue one entry (same keywords as :meth:`HistoryStore.record`)."""
        self._queue.put(entry)

    def flush(self) -> None:
        """Wait until every queued entry is written."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    return
                self._store.record(**entry)
            except Exception:  # history must never break the service
                self._logger.exception("could not record a query in the history")
            finally:
                self._queue.task_done()


class HistoryService:
    """Lists the caller's own queries, newest first."""

    MAX_LIMIT = 1000

    def __init__(self, *, store: HistoryStore, writer: HistoryWriter) -> None:
        self._store = store
        self._writer = writer

    async def recent(self, user: User, limit: int) -> HistoryList:
        limit = max(1, min(limit, self.MAX_LIMIT))

        def _read() -> HistoryList:
            self._writer.flush()
            return HistoryList(user=user.name, queries=self._store.recent(owner=user.name, limit=limit))

        return await to_thread.run_sync(_read)
