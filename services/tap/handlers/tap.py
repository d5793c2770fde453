"""Routes of the TAP base URL other than ``/async``: landing page, ``/sync``, VOSI, examples,
history, health and reload."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from ..dependencies import context_dependency, process_context
from ..factory import ProcessContext, RequestContext, public_base_url
from ..models.history import HistoryList
from ..models.params import TapParams
from ..services.query import UploadData
from .params import read_parameters

__all__ = ["router"]

router = APIRouter()
XML = "text/xml"


@router.get("", response_class=HTMLResponse, include_in_schema=False)
@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def landing(
    request: Request, process: Annotated[ProcessContext, Depends(process_context)]
) -> HTMLResponse:
    """A human-readable page with the endpoints and tables (anonymous, like the VOSI resources)."""
    return HTMLResponse(await process.metadata.landing_html(public_base_url(request, process.config)))


@router.api_route("/sync", methods=["GET", "POST"])
async def sync_query(context: Annotated[RequestContext, Depends(context_dependency)]) -> Response:
    """Run a query and answer with its result inline (no redirect: taplint and TapPlus need that)."""
    params, files = await read_parameters(context.request)
    tap_params = TapParams.from_mapping(params)
    uploads = {
        spec.name: UploadData(data=files[spec.inline_part])
        for spec in tap_params.uploads
        if spec.inline_part is not None and spec.inline_part in files
    }
    answer = await to_thread.run_sync(
        lambda: context.queries.run_sync(owner=context.user.name, params=tap_params, uploads=uploads)
    )
    if answer.body is not None:
        return Response(answer.body, media_type=answer.mime)
    assert answer.chunks is not None
    return StreamingResponse(answer.chunks, media_type=answer.mime)


@router.get("/availability")
async def availability(process: Annotated[ProcessContext, Depends(process_context)]) -> Response:
    """VOSI availability (anonymous)."""
    return Response(await process.metadata.availability(), media_type=XML)


@router.get("/capabilities")
async def capabilities(
    request: Request, process: Annotated[ProcessContext, Depends(process_context)]
) -> Response:
    """VOSI capabilities with TAPRegExt (anonymous)."""
    base = public_base_url(request, process.config)
    return Response(process.metadata.capabilities(base), media_type=XML)


@router.get("/tables")
async def tables(
    context: Annotated[RequestContext, Depends(context_dependency)],
    detail: Annotated[str, Query()] = "max",
    only_tables: Annotated[str | None, Query()] = None,
) -> Response:
    """VOSI 1.1 tables (``detail=min`` lists tables without columns).

    ``only_tables=true`` is the ESA TAP+ spelling of ``detail=min`` that astroquery's
    ``TapPlus.load_tables(only_names=True)`` sends.
    """
    if only_tables is not None and only_tables.lower() == "true":
        detail = "min"
    return Response(await context.metadata.tableset(detail), media_type=XML)


@router.get("/tables/{qualified}")
async def table(qualified: str, context: Annotated[RequestContext, Depends(context_dependency)]) -> Response:
    """One table of the VOSI tables document."""
    return Response(await context.metadata.table(qualified), media_type=XML)


@router.get("/examples")
async def examples(context: Annotated[RequestContext, Depends(context_dependency)]) -> Response:
    """DALI examples (XHTML with RDFa)."""
    return Response(await context.metadata.examples_html(), media_type="application/xhtml+xml")


@router.get("/history", response_model=HistoryList)
async def history(
    context: Annotated[RequestContext, Depends(context_dependency)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> HistoryList:
    """The caller's most recent queries (sync and async), newest first."""
    return await context.history.recent(context.user, limit)


@router.get("/health")
async def health(process: Annotated[ProcessContext, Depends(process_context)]) -> JSONResponse:
    """Liveness and a cheap readiness check of the catalog."""
    try:
        schemas = await process.metadata.schemas()
        status, code = {"status": "ok", "schemas": [s.name for s in schemas]}, 200
    except Exception as exc:
        status, code = {"status": "error", "error": str(exc)}, 503
    status["catalog_dialect"] = process.catalog.dialect
    status["up_since"] = process.started_at.isoformat()
    return JSONResponse(status, status_code=code)


@router.post("/admin/reload")
async def reload_catalog(context: Annotated[RequestContext, Depends(context_dependency)]) -> JSONResponse:
    """Re-read the catalog's schemas so new releases and tables appear without a restart."""
    await to_thread.run_sync(context.process.catalog.refresh)
    schemas = await context.metadata.schemas()
    return JSONResponse(
        {
            "status": "reloaded",
            "tables": sum(len(s.tables) for s in schemas),
            "schemas": [s.name for s in schemas],
        }
    )
