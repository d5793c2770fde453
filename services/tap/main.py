"""The TAP service application: ``create_app(config)``.

The lifespan builds the process singletons once (:class:`~.factory.ProcessContext`),
starts the job runner, a reaper that destroys jobs past DESTRUCTION, and a cheap periodic
catalog refresh (new releases and ingested tables appear without a restart). Every error,
including 404/405/422/500 from the framework, is answered as a DALI error VOTable, never
HTML (pyvo#403).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import formats
from .config import TapConfig
from .exceptions import TapError
from .factory import ProcessContext
from .handlers import tap, uws

__all__ = ["create_app"]

VOTABLE = "application/x-votable+xml"


def _error(message: str, status_code: int) -> Response:
    return Response(formats.error_votable(message), status_code=status_code, media_type=VOTABLE)


async def _periodic(interval: float, action: object, name: str, context: ProcessContext) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await action()  # type: ignore[operator]
        except Exception:
            context.logger.exception("periodic %s failed", name)


def create_app(config: TapConfig) -> FastAPI:
    """Build the TAP application serving ``/tap`` for ``config``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = await to_thread.run_sync(ProcessContext.create, config)
        context.jobs.start()
        app.state.tap = context

        async def _refresh() -> None:
            await to_thread.run_sync(context.catalog.refresh)

        tasks = [
            asyncio.create_task(_periodic(config.reaper_interval_s, context.jobs.reap, "reaper", context)),
            asyncio.create_task(_periodic(config.reload_interval_s, _refresh, "catalog refresh", context)),
        ]
        await context.jobs.reap()
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await to_thread.run_sync(context.close)

    app = FastAPI(
        title="Pachón TAP",
        description="IVOA TAP 1.1 with ADQL 2.1",
        lifespan=lifespan,
        docs_url="/tap/docs",
        openapi_url="/tap/openapi.json",
        redoc_url=None,
    )
    app.include_router(tap.router, prefix="/tap")
    app.include_router(uws.router, prefix="/tap")

    @app.exception_handler(TapError)
    async def _tap_error(request: Request, exc: TapError) -> Response:
        return _error(exc.message, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return _error(f"invalid request: {problems}", 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = f"nothing at {request.url.path}; the TAP endpoints are under /tap (see /tap for a list)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        response = _error(message, exc.status_code)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> Response:
        context: ProcessContext | None = getattr(request.app.state, "tap", None)
        if context is not None:
            context.logger.exception("internal error on %s", request.url.path)
        return _error(f"internal error ({type(exc).__name__}: {exc}); please report it", 500)

    return app
