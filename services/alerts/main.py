"""The alerts service's web application: the read-only Confluent-compatible schema registry.

``create_app()`` builds the schema store once per app and hands the
handlers a :class:`~pachon.services.alerts.services.registry.SchemaRegistryService`. Errors come
back in Confluent's shape (``{"error_code": 40403, "message": …}``) with its media type, so
Confluent clients raise their usual ``SchemaRegistryError``.

Run it alone with ``uvicorn --factory pachon.services.alerts.main:create_app``; normally
``pachon alerts broker`` runs it beside the broker.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pachon.services.alerts.exceptions import RegistryError
from pachon.services.alerts.handlers.registry import MEDIA_TYPE, router
from pachon.services.alerts.services.registry import SchemaRegistryService
from pachon.services.alerts.storage.schemas import SchemaStore

__all__ = ["create_app"]


def create_app(topic_prefix: str | None = None) -> FastAPI:
    """The registry app; subjects are named after ``topic_prefix`` (default settings ``alerts.topic_prefix``)."""
    if topic_prefix is None:
        from pachon.core.settings import get_settings

        topic_prefix = get_settings().alerts.topic_prefix
    app = FastAPI(
        title="Pachón alert schema registry",
        description="Read-only Confluent Schema Registry API serving the LSST alert schemas.",
    )
    # The store is immutable and cheap once the schemas are parsed (cached per process), so it is
    # built here rather than in a lifespan: ASGI test transports then need no lifespan driver.
    app.state.registry = SchemaRegistryService(store=SchemaStore.from_package(topic_prefix))

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(
            {"error_code": exc.error_code, "message": exc.message},
            status_code=exc.status,
            media_type=MEDIA_TYPE,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse(
            {"error_code": 42200, "message": f"invalid {where}: {first.get('msg', 'bad request')}"},
            status_code=422,
            media_type=MEDIA_TYPE,
        )

    app.include_router(router)
    return app
