"""The query history: one row per query in ``tap_query`` of the state database."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from ..models.history import HistoryEntry
from .schema import tap_query
from .util import as_utc

__all__ = ["HistoryStore"]


class HistoryStore:
    """Append and list query history entries."""

    def __init__(self, *, engine: Engine) -> None:
        self._engine = engine

    def record(
        self,
        *,
        owner: str,
        mode: str,
        query: str,
        started_at: datetime,
        duration_s: float | None,
        row_count: int | None,
        status: str,
        error_message: str | None = None,
        job_id: str | None = None,
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                tap_query.insert().values(
                    owner=owner,
                    mode=mode,
                    job_id=job_id,
                    started_at=started_at,
                    duration_s=duration_s,
                    row_count=row_count,
                    status=status,
                    query=query,
                    error_message=error_message,
                )
            )

    def recent(self, *, owner: str, limit: int) -> list[HistoryEntry]:
        stmt = (
            sa.select(tap_query)
            .where(tap_query.c.owner == owner)
            .order_by(tap_query.c.started_at.desc(), tap_query.c.query_id.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        entries = []
        for row in rows:
            data = dict(row._mapping)
            data["started_at"] = as_utc(data["started_at"])
            entries.append(HistoryEntry.model_validate(data))
        return entries
