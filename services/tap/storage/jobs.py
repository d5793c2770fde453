"""The UWS job store: one row per job in ``tap_job`` of the state database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from ..models.job import Job, Phase
from .schema import tap_job
from .util import as_utc

__all__ = ["JobStore"]


def _to_job(row: sa.Row[Any]) -> Job:
    data = dict(row._mapping)
    data["parameters"] = json.loads(data["parameters"] or "{}")
    for key in ("creation_time", "start_time", "end_time", "destruction"):
        data[key] = as_utc(data[key])
    return Job.model_validate(data)


class JobStore:
    """Create, read, update and delete jobs; phase changes are compare-and-set.

    Every method is a short transaction and safe to call from worker threads.
    """

    def __init__(self, *, engine: Engine) -> None:
        self._engine = engine

    def add(self, job: Job) -> None:
        values = job.model_dump()
        values["parameters"] = json.dumps(job.parameters)
        values["phase"] = job.phase.value
        with self._engine.begin() as conn:
            conn.execute(tap_job.insert().values(**values))

    def get(self, job_id: str) -> Job | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(tap_job).where(tap_job.c.job_id == job_id)).first()
        return _to_job(row) if row is not None else None

    def list_jobs(
        self,
        *,
        owner: str,
        phases: Sequence[Phase] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[Job]:
        """The owner's jobs, oldest first (UWS 1.1 §2.2.2.1: LAST gives the newest n, sorted)."""
        stmt = sa.select(tap_job).where(tap_job.c.owner == owner)
        if phases:
            stmt = stmt.where(tap_job.c.phase.in_([p.value for p in phases]))
        else:
            stmt = stmt.where(tap_job.c.phase != Phase.ARCHIVED.value)
        if after is not None:
            stmt = stmt.where(tap_job.c.creation_time > after)
        if last is not None:
            stmt = stmt.order_by(tap_job.c.creation_time.desc()).limit(last)
        else:
            stmt = stmt.order_by(tap_job.c.creation_time)
        with self._engine.connect() as conn:
            jobs = [_to_job(row) for row in conn.execute(stmt)]
        if last is not None:
            jobs.reverse()
        return jobs

    def update(self, job_id: str, **values: Any) -> None:
        if "parameters" in values:
            values["parameters"] = json.dumps(values["parameters"])
        if "phase" in values:
            values["phase"] = Phase(values["phase"]).value
        with self._engine.begin() as conn:
            conn.execute(tap_job.update().where(tap_job.c.job_id == job_id).values(**values))

    def transition(self, job_id: str, allowed: Iterable[Phase], phase: Phase, **values: Any) -> bool:
        """Set the phase only if the job is in one of ``allowed``; return whether it changed."""
        with self._engine.begin() as conn:
            result = conn.execute(
                tap_job.update()
                .where(tap_job.c.job_id == job_id, tap_job.c.phase.in_([p.value for p in allowed]))
                .values(phase=phase.value, **values)
            )
        return bool(result.rowcount)

    def delete(self, job_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(tap_job.delete().where(tap_job.c.job_id == job_id))

    def expired(self, now: datetime) -> list[Job]:
        """Jobs whose destruction time has passed."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(tap_job).where(tap_job.c.destruction <= now)).all()
        return [_to_job(row) for row in rows]

    def fail_interrupted(self, message: str, now: datetime) -> list[str]:
        """Turn jobs left QUEUED/EXECUTING by a dead process into ERROR; return their ids."""
        active = [Phase.QUEUED.value, Phase.EXECUTING.value]
        with self._engine.begin() as conn:
            ids = [
                row[0] for row in conn.execute(sa.select(tap_job.c.job_id).where(tap_job.c.phase.in_(active)))
            ]
            if ids:
                conn.execute(
                    tap_job.update()
                    .where(tap_job.c.job_id.in_(ids))
                    .values(phase=Phase.ERROR.value, error_message=message, end_time=now)
                )
        return ids
