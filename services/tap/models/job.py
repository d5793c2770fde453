"""A UWS 1.1 job as the service stores and describes it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

__all__ = ["ACTIVE_PHASES", "FINAL_PHASES", "Job", "Phase"]


class Phase(StrEnum):
    """UWS execution phases (UWS 1.1 §2.1.3)."""

    PENDING = "PENDING"
    QUEUED = "QUEUED"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    ERROR = "ERROR"
    ABORTED = "ABORTED"
    UNKNOWN = "UNKNOWN"
    HELD = "HELD"
    SUSPENDED = "SUSPENDED"
    ARCHIVED = "ARCHIVED"


ACTIVE_PHASES = frozenset({Phase.PENDING, Phase.QUEUED, Phase.EXECUTING})
"""Phases in which WAIT blocks (UWS 1.1 §2.2.1.1)."""
FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.ERROR, Phase.ABORTED, Phase.ARCHIVED})


class Job(BaseModel):
    """One async TAP query and its outcome.

    ``parameters`` keeps every parameter the client sent (names lower-cased), so
    ``/parameters`` echoes them; ``result_path`` is the file of the result named ``result``.
    """

    job_id: str
    owner: str
    run_id: str | None = None
    phase: Phase
    parameters: dict[str, str] = Field(default_factory=dict)
    creation_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    destruction: datetime
    execution_duration: int
    error_message: str | None = None
    result_path: str | None = None
    result_mime: str | None = None
    result_rows: int | None = None
    result_bytes: int | None = None

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES
