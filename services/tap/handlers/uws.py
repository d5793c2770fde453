"""UWS 1.1 routes under ``/async``.

Every state change answers 303 See Other to the job (or to the job list after a delete),
as UWS 1.1 says; simple child resources answer ``text/plain``; ``/error`` answers the
DALI error VOTable with HTTP 200 (UWS 1.1 §2.2.3.6, as pyvo expects).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from .. import formats
from ..dependencies import context_dependency
from ..exceptions import JobNotFoundError, ParameterError
from ..factory import RequestContext
from ..models.job import Phase
from ..render.uws import isoformat, job_list_xml, job_xml, parameters_fragment, results_fragment
from .params import read_parameters

__all__ = ["router"]

router = APIRouter(prefix="/async")
XML = "text/xml"
Context = Annotated[RequestContext, Depends(context_dependency)]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _parse_time(value: str, what: str) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ParameterError(
            f"{what}={value!r} is not an ISO 8601 time; write e.g. 2026-12-01T00:00:00Z"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _phase(value: str) -> Phase:
    try:
        return Phase(value.strip().upper())
    except ValueError:
        raise ParameterError(
            f"PHASE={value!r} is not a UWS phase; use one of {', '.join(p.value for p in Phase)}"
        ) from None


@router.get("")
async def list_jobs(context: Context) -> Response:
    """The caller's jobs, filtered by PHASE (repeatable), AFTER and LAST (UWS 1.1 §2.2.2.1)."""
    params, _ = await read_parameters(context.request)
    phases = [_phase(v) for v in params.get("phase", [])]
    after = _one(params, "after")
    last_text = _one(params, "last")
    last = None
    if last_text is not None:
        try:
            last = int(last_text)
        except ValueError:
            raise ParameterError(f"LAST={last_text!r} is not a positive integer") from None
        if last <= 0:
            raise ParameterError(f"LAST={last_text!r} is not a positive integer")
    jobs = await context.jobs.list_jobs(
        context.user, phases=phases, after=_parse_time(after, "AFTER") if after else None, last=last
    )
    return Response(job_list_xml(jobs, context.async_url), media_type=XML)


@router.post("")
async def create_job(context: Context) -> RedirectResponse:
    """Create a job from TAP parameters (``PHASE=RUN`` starts it at once); 303 to the job."""
    params, files = await read_parameters(context.request)
    job = await context.jobs.create(context.user, params, files)
    return _see_other(context.job_url(job.job_id))


@router.get("/{job_id}")
async def get_job(job_id: str, context: Context) -> Response:
    """The job document; ``WAIT=n`` (and ``PHASE=``) block while the job is active."""
    params, _ = await read_parameters(context.request)
    wait = _one(params, "wait")
    if wait is not None:
        try:
            seconds = float(wait)
        except ValueError:
            raise ParameterError(
                f"WAIT={wait!r} is not a number of seconds (-1 waits as long as allowed)"
            ) from None
        phase_text = _one(params, "phase")
        job = await context.jobs.wait(
            context.user, job_id, seconds, _phase(phase_text) if phase_text else None
        )
    else:
        job = await context.jobs.get(context.user, job_id)
    return Response(job_xml(job, context.job_url(job_id)), media_type=XML)


@router.post("/{job_id}")
async def post_job(job_id: str, context: Context) -> RedirectResponse:
    """``ACTION=DELETE`` destroys the job; other parameters belong on ``/parameters``."""
    params, _ = await read_parameters(context.request)
    action = (_one(params, "action") or "").upper()
    if action == "DELETE":
        await context.jobs.delete(context.user, job_id)
        return _see_other(context.async_url)
    await context.jobs.get(context.user, job_id)
    raise ParameterError(
        "POST to a job accepts only ACTION=DELETE; change parameters at /parameters, the phase at /phase"
    )


@router.delete("/{job_id}")
async def delete_job(job_id: str, context: Context) -> RedirectResponse:
    await context.jobs.delete(context.user, job_id)
    return _see_other(context.async_url)


@router.get("/{job_id}/phase")
async def get_phase(job_id: str, context: Context) -> PlainTextResponse:
    job = await context.jobs.get(context.user, job_id)
    return PlainTextResponse(job.phase.value)


@router.post("/{job_id}/phase")
async def post_phase(job_id: str, context: Context) -> RedirectResponse:
    """``PHASE=RUN`` starts the job, ``PHASE=ABORT`` stops it."""
    params, _ = await read_parameters(context.request)
    value = (_one(params, "phase") or "").upper()
    if value == "RUN":
        await context.jobs.run(context.user, job_id)
    elif value == "ABORT":
        await context.jobs.abort(context.user, job_id)
    else:
        await context.jobs.get(context.user, job_id)
        raise ParameterError(
            f"PHASE={value or '(missing)'} is not allowed here; send PHASE=RUN or PHASE=ABORT"
        )
    return _see_other(context.job_url(job_id))


@router.get("/{job_id}/executionduration")
async def get_execution_duration(job_id: str, context: Context) -> PlainTextResponse:
    job = await context.jobs.get(context.user, job_id)
    return PlainTextResponse(str(job.execution_duration))


@router.post("/{job_id}/executionduration")
async def post_execution_duration(job_id: str, context: Context) -> RedirectResponse:
    params, _ = await read_parameters(context.request)
    value = _one(params, "executionduration")
    try:
        seconds = int(float(value)) if value is not None else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise ParameterError(f"EXECUTIONDURATION={value!r} is not a number of seconds")
    await context.jobs.set_execution_duration(context.user, job_id, seconds)
    return _see_other(context.job_url(job_id))


@router.get("/{job_id}/destruction")
async def get_destruction(job_id: str, context: Context) -> PlainTextResponse:
    job = await context.jobs.get(context.user, job_id)
    return PlainTextResponse(isoformat(job.destruction))


@router.post("/{job_id}/destruction")
async def post_destruction(job_id: str, context: Context) -> RedirectResponse:
    params, _ = await read_parameters(context.request)
    value = _one(params, "destruction")
    if value is None:
        raise ParameterError("missing DESTRUCTION=<ISO 8601 time>")
    await context.jobs.set_destruction(context.user, job_id, _parse_time(value, "DESTRUCTION"))
    return _see_other(context.job_url(job_id))


@router.get("/{job_id}/quote")
async def get_quote(job_id: str, context: Context) -> PlainTextResponse:
    """No completion estimate: UWS allows an empty quote (never ``-1``, vollt#127)."""
    await context.jobs.get(context.user, job_id)
    return PlainTextResponse("")


@router.get("/{job_id}/owner")
async def get_owner(job_id: str, context: Context) -> PlainTextResponse:
    job = await context.jobs.get(context.user, job_id)
    return PlainTextResponse(job.owner)


@router.get("/{job_id}/error")
async def get_error(job_id: str, context: Context) -> Response:
    """The DALI error document of a failed job, with HTTP 200."""
    job = await context.jobs.get(context.user, job_id)
    if job.phase not in (Phase.ERROR, Phase.ABORTED) or not job.error_message:
        raise JobNotFoundError(f"job {job_id} is {job.phase.value} and has no error")
    return Response(formats.error_votable(job.error_message), media_type="application/x-votable+xml")


@router.get("/{job_id}/parameters")
async def get_parameters(job_id: str, context: Context) -> Response:
    job = await context.jobs.get(context.user, job_id)
    return Response(parameters_fragment(job, standalone=True), media_type=XML)


@router.post("/{job_id}/parameters")
async def post_parameters(job_id: str, context: Context) -> RedirectResponse:
    params, _ = await read_parameters(context.request)
    await context.jobs.update_parameters(context.user, job_id, params)
    return _see_other(context.job_url(job_id))


@router.get("/{job_id}/results")
async def get_results(job_id: str, context: Context) -> Response:
    job = await context.jobs.get(context.user, job_id)
    return Response(results_fragment(job, context.job_url(job_id), standalone=True), media_type=XML)


@router.get("/{job_id}/results/result")
async def get_result(job_id: str, context: Context) -> FileResponse:
    job = await context.jobs.get(context.user, job_id)
    path = context.jobs.result_file(job)
    if job.phase != Phase.COMPLETED or path is None or not path.exists():
        raise JobNotFoundError(
            f"job {job_id} is {job.phase.value} and has no result; see /async/{job_id}/error"
            if job.phase != Phase.COMPLETED
            else f"the result of job {job_id} is gone"
        )
    return FileResponse(path, media_type=job.result_mime or "application/x-votable+xml")
