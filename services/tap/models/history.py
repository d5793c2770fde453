"""Query history entries (``GET /tap/history``), read by the notebook extension."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

__all__ = ["HistoryEntry", "HistoryList"]


class HistoryEntry(BaseModel):
    """One query a user ran, sync or async."""

    query_id: int
    owner: str
    mode: str
    job_id: str | None = None
    started_at: datetime
    duration_s: float | None = None
    row_count: int | None = None
    status: str
    query: str
    error_message: str | None = None


class HistoryList(BaseModel):
    """The caller's most recent queries, newest first."""

    user: str
    queries: list[HistoryEntry]
