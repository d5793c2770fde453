"""The query history API's logic: a user's recent queries."""

from __future__ import annotations

from anyio import to_thread

from ..models.history import HistoryList
from ..models.user import User
from ..storage.history import HistoryStore

__all__ = ["HistoryService"]


class HistoryService:
    """Lists the caller's own queries, newest first."""

    MAX_LIMIT = 1000

    def __init__(self, *, store: HistoryStore) -> None:
        self._store = store

    async def recent(self, user: User, limit: int) -> HistoryList:
        limit = max(1, min(limit, self.MAX_LIMIT))
        entries = await to_thread.run_sync(lambda: self._store.recent(owner=user.name, limit=limit))
        return HistoryList(user=user.name, queries=entries)
