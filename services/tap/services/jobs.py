"""UWS 1.1 job management for ``/async``.

Jobs live in the state database (so they survive a restart) and run in a small thread
pool of this process: no process per job, so a short async query completes in
milliseconds and ``WAIT`` returns as soon as the job finishes (the runner wakes waiters
through an :class:`asyncio.Event` per job). ``EXECUTIONDURATION`` is enforced by a timer
that cancels the running query on the database (:class:`~.cancel.QueryHandle`); ``ABORT``
does the same. A reaper deletes jobs and their files once ``DESTRUCTION`` has passed.
On start, jobs a dead process left QUEUED/EXECUTING become ERROR.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

from anyio import to_thread

from ..config import TapConfig
from ..exceptions import (
    ExecutionTimeoutError,
    JobAbortedError,
    JobNotFoundError,
    ParameterError,
    TapError,
    UwsStateError,
)
from ..models.job import ACTIVE_PHASES, Job, Phase
from ..models.params import TapParams, parse_uploads
from ..models.user import User
from ..storage.files import ResultFiles
from ..storage.jobs import JobStore
from ..storage.util import utcnow
from .cancel import QueryHandle
from .query import QueryService, UploadData
from .watchdog import Watchdog

__all__ = ["RESTART_MESSAGE", "JobService"]

RESTART_MESSAGE = "the TAP service restarted while the job ran; resubmit the job"


class JobService:
    """Create, run, wait for, abort and destroy UWS jobs of their owners."""

    def __init__(
        self,
        *,
        config: TapConfig,
        store: JobStore,
        files: ResultFiles,
        queries: QueryService,
        watchdog: Watchdog,
        logger: logging.Logger,
    ) -> None:
        self._watchdog = watchdog
        self._config = config
        self._store = store
        self._files = files
        self._queries = queries
        self._logger = logger
        self._executor = ThreadPoolExecutor(max_workers=config.async_workers, thread_name_prefix="tap-job")
        self._events: dict[str, asyncio.Event] = {}
        self._handles: dict[str, QueryHandle] = {}
        self._handles_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    # Lifecycle -------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Mark jobs that a previous process left running as ERROR (called at start)."""
        ids = self._store.fail_interrupted(RESTART_MESSAGE, utcnow())
        if ids:
            self._logger.warning("%d async job(s) were running when the service stopped: %s", len(ids), ids)
        return ids

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        with self._handles_lock:
            handles = list(self._handles.values())
        for handle in handles:
            handle.cancel("shutdown")
        self._executor.shutdown(wait=True, cancel_futures=True)

    # Queries ---------------------------------------------------------------------
    async def create(
        self,
        user: User,
        parameters: Mapping[str, list[str]],
        inline_uploads: Mapping[str, bytes],
    ) -> Job:
        """Create a PENDING job (and start it if PHASE=RUN was sent).

        Parameters are not validated here: UWS accepts the job and a bad LANG or QUERY
        makes it end in ERROR with the reason (taplint's QAS stage checks exactly that).
        """
        try:
            uploads = parse_uploads(parameters.get("upload", []))
        except ParameterError:
            uploads = []  # reported when the job runs
        runid = parameters.get("runid")
        now = utcnow()
        limits = self._config.limits
        job = Job(
            job_id=secrets.token_hex(8),
            owner=user.name,
            run_id=runid[-1][:64] if runid else None,
            phase=Phase.PENDING,
            parameters={
                name: ";".join(values) if name == "upload" else values[-1]
                for name, values in parameters.items()
                if name != "phase"
            },
            creation_time=now,
            destruction=now + timedelta(days=limits.destruction_days),
            execution_duration=limits.async_execution_duration_s,
        )

        def _persist() -> None:
            for spec in uploads:
                part = spec.inline_part
                if part is not None and part in inline_uploads:
                    self._files.save_upload(job.job_id, spec.name, inline_uploads[part])
            self._store.add(job)

        await to_thread.run_sync(_persist)
        phase = parameters.get("phase")
        if phase and phase[-1].upper() == "RUN":
            job = await self.run(user, job.job_id)
            if self._config.async_create_grace_s > 0:
                job = await self._settle(user, job, self._config.async_create_grace_s)
        return job

    async def _settle(self, user: User, job: Job, timeout_s: float) -> Job:
        """Give a just-started job a moment to finish, so a fast query is COMPLETED at the
        client's first look (saves it a polling round; UWS lets creation take its time)."""
        deadline = time.monotonic() + timeout_s
        while job.phase in ACTIVE_PHASES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            job = await self.wait(user, job.job_id, remaining, job.phase)
        return job

    async def get(self, user: User, job_id: str) -> Job:
        job = await to_thread.run_sync(self._store.get, job_id)
        if job is None or job.owner != user.name:
            # Another user's job answers exactly like a missing one: 404, so job ids do not
            # reveal that someone else's job exists.
            raise JobNotFoundError(
                f"no job {job_id!r} here: it may have been destroyed; list yours at /async"
            )
        return job

    async def list_jobs(
        self, user: User, *, phases: list[Phase], after: datetime | None, last: int | None
    ) -> list[Job]:
        return await to_thread.run_sync(
            lambda: self._store.list_jobs(owner=user.name, phases=phases, after=after, last=last)
        )

    async def wait(self, user: User, job_id: str, timeout_s: float, phase: Phase | None) -> Job:
        """UWS blocking: return when the phase changes (or differs from ``phase``) or time is up."""
        if timeout_s < 0 or timeout_s > self._config.max_wait_s:
            timeout_s = self._config.max_wait_s
        deadline = time.monotonic() + timeout_s
        while True:
            event = self._events.setdefault(job_id, asyncio.Event())
            job = await self.get(user, job_id)
            if job.phase not in ACTIVE_PHASES or (phase is not None and job.phase != phase):
                return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return job
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return await self.get(user, job_id)
            phase = job.phase if phase is None else phase

    async def run(self, user: User, job_id: str) -> Job:
        """PHASE=RUN: queue the job and hand it to the worker pool."""
        job = await self.get(user, job_id)
        if job.phase == Phase.PENDING:
            moved = await to_thread.run_sync(
                lambda: self._store.transition(job_id, [Phase.PENDING], Phase.QUEUED)
            )
            if moved:
                self._submit(job_id)
                job = job.model_copy(update={"phase": Phase.QUEUED})
        elif job.phase not in ACTIVE_PHASES:
            raise UwsStateError(f"job {job_id} is {job.phase.value} and cannot run again; create a new job")
        return job

    async def abort(self, user: User, job_id: str) -> Job:
        job = await self.get(user, job_id)
        if job.phase in (Phase.PENDING, Phase.QUEUED, Phase.HELD, Phase.SUSPENDED):
            await to_thread.run_sync(
                lambda: self._store.transition(
                    job_id,
                    [Phase.PENDING, Phase.QUEUED, Phase.HELD, Phase.SUSPENDED],
                    Phase.ABORTED,
                    end_time=utcnow(),
                )
            )
            self._notify(job_id)
        elif job.phase == Phase.EXECUTING:
            with self._handles_lock:
                handle = self._handles.get(job_id)
            if handle is not None:
                handle.cancel("abort")
        return await self.get(user, job_id)

    async def delete(self, user: User, job_id: str) -> None:
        job = await self.get(user, job_id)
        if job.phase == Phase.EXECUTING:
            await self.abort(user, job_id)
        await to_thread.run_sync(self._destroy, job_id)

    async def set_destruction(self, user: User, job_id: str, when: datetime) -> Job:
        await self.get(user, job_id)
        latest = utcnow() + timedelta(days=self._config.limits.destruction_days)
        await to_thread.run_sync(lambda: self._store.update(job_id, destruction=min(when, latest)))
        return await self.get(user, job_id)

    async def set_execution_duration(self, user: User, job_id: str, seconds: int) -> Job:
        job = await self.get(user, job_id)
        if job.phase != Phase.PENDING:
            raise UwsStateError(
                f"job {job_id} is {job.phase.value}; EXECUTIONDURATION can change only while PENDING"
            )
        hard = self._config.limits.async_max_execution_duration_s
        value = hard if seconds <= 0 else min(seconds, hard)
        await to_thread.run_sync(lambda: self._store.update(job_id, execution_duration=value))
        return await self.get(user, job_id)

    async def update_parameters(self, user: User, job_id: str, parameters: Mapping[str, list[str]]) -> Job:
        job = await self.get(user, job_id)
        if job.phase != Phase.PENDING:
            raise UwsStateError(
                f"job {job_id} is {job.phase.value}; parameters can change only while PENDING"
            )
        merged = dict(job.parameters)
        for name, values in parameters.items():
            merged[name] = values[-1]
        TapParams.from_mapping({name: [value] for name, value in merged.items()})
        await to_thread.run_sync(lambda: self._store.update(job_id, parameters=merged))
        return await self.get(user, job_id)

    async def reap(self) -> int:
        """Destroy every job whose destruction time has passed; return how many."""
        expired = await to_thread.run_sync(self._store.expired, utcnow())
        for job in expired:
            with self._handles_lock:
                handle = self._handles.get(job.job_id)
            if handle is not None:
                handle.cancel("abort")
            await to_thread.run_sync(self._destroy, job.job_id)
        if expired:
            self._logger.info("destroyed %d expired job(s)", len(expired))
        return len(expired)

    # Internals --------------------------------------------------------------------
    def _destroy(self, job_id: str) -> None:
        self._store.delete(job_id)
        self._files.remove(job_id)
        self._notify_threadsafe(job_id)  # wake (and forget) anyone waiting on it

    def _submit(self, job_id: str) -> None:
        assert self._loop is not None, "JobService.start() was not called"
        future = self._loop.run_in_executor(self._executor, self._execute, job_id)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)

    def _notify(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    def _notify_threadsafe(self, job_id: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._notify, job_id)

    def _execute(self, job_id: str) -> None:
        """Run one job in a worker thread, from QUEUED to COMPLETED, ERROR or ABORTED."""
        job = self._store.get(job_id)
        if job is None or not self._store.transition(
            job_id, [Phase.QUEUED], Phase.EXECUTING, start_time=utcnow()
        ):
            return
        self._notify_threadsafe(job_id)
        handle = QueryHandle()
        with self._handles_lock:
            self._handles[job_id] = handle
        timer = self._watchdog.call_later(job.execution_duration, lambda: handle.cancel("timeout"))
        try:
            params = TapParams.from_mapping(
                {
                    name: value.split(";") if name == "upload" else [value]
                    for name, value in job.parameters.items()
                }
            )
            uploads: dict[str, UploadData] = {}
            for spec in params.uploads:
                path = self._files.upload_path(job_id, spec.name)
                if spec.inline_part is not None and path.exists():
                    uploads[spec.name] = UploadData(path=path)
            outcome = self._queries.run_to_file(
                owner=job.owner,
                job_id=job_id,
                params=params,
                uploads=uploads,
                path_for=lambda ext: self._files.result_path(job_id, ext),
                handle=handle,
                execution_duration=job.execution_duration,
            )
            self._store.transition(
                job_id,
                [Phase.EXECUTING],
                Phase.COMPLETED,
                end_time=utcnow(),
                result_path=str(outcome.path),
                result_mime=outcome.mime,
                result_rows=outcome.rows,
                result_bytes=outcome.size,
            )
        except JobAbortedError as exc:
            self._store.transition(
                job_id, [Phase.EXECUTING], Phase.ABORTED, end_time=utcnow(), error_message=exc.message
            )
        except (TapError, ExecutionTimeoutError) as exc:
            self._store.transition(
                job_id, [Phase.EXECUTING], Phase.ERROR, end_time=utcnow(), error_message=exc.message
            )
        except Exception as exc:  # a bug: keep the job honest and log the traceback
            self._logger.exception("async job %s failed", job_id)
            self._store.transition(
                job_id,
                [Phase.EXECUTING],
                Phase.ERROR,
                end_time=utcnow(),
                error_message=f"internal error while running the query ({type(exc).__name__}: {exc}); "
                "please report it",
            )
        finally:
            timer.cancel()
            with self._handles_lock:
                self._handles.pop(job_id, None)
            if self._store.get(job_id) is None:  # deleted while it ran: drop what it wrote
                self._files.remove(job_id)
            self._notify_threadsafe(job_id)

    def result_file(self, job: Job) -> Path | None:
        return Path(job.result_path) if job.result_path else None
