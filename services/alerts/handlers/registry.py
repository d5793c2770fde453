"""Schema registry routes (Confluent API v1, GET only; writes answer 42205 read-only).

Readable without login, as Rubin's registry is: the schemas are public and consumers such as
``confluent_kafka.schema_registry.avro.AvroDeserializer`` must fetch them unauthenticated.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from pachon.services.alerts.exceptions import ReadOnlyError, RouteNotFoundError
from pachon.services.alerts.models import SchemaResponse, SubjectVersion, SubjectVersionResponse
from pachon.services.alerts.services.registry import SchemaRegistryService

__all__ = ["MEDIA_TYPE", "router"]

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"

router = APIRouter(tags=["schema registry"])


def _service(request: Request) -> SchemaRegistryService:
    service: SchemaRegistryService = request.app.state.registry
    return service


def _raw(text: str) -> Response:
    return Response(content=text, media_type=MEDIA_TYPE)


@router.get("/")
def root() -> dict[str, Any]:
    """Confluent answers ``{}`` at the root; clients use it as a liveness probe."""
    return {}


@router.get("/subjects")
def subjects(request: Request) -> list[str]:
    """Every subject: ``alert-packet`` and ``<topic prefix>-v<major>-value``."""
    return _service(request).subjects()


@router.get("/subjects/{subject}/versions")
def subject_versions(subject: str, request: Request) -> list[int]:
    return _service(request).versions(subject)


@router.get(
    "/subjects/{subject}/versions/{version}",
    response_model=SubjectVersionResponse,
    response_model_by_alias=True,
)
def subject_version(subject: str, version: str, request: Request) -> SubjectVersionResponse:
    number, schema = _service(request).version(subject, version)
    return SubjectVersionResponse(subject=subject, version=number, id=schema.schema_id, schema=schema.json)


@router.get("/subjects/{subject}/versions/{version}/schema")
def subject_version_schema(subject: str, version: str, request: Request) -> Response:
    _, schema = _service(request).version(subject, version)
    return _raw(schema.json)


@router.get("/schemas/ids/{schema_id}", response_model=SchemaResponse, response_model_by_alias=True)
def schema_by_id(schema_id: int, request: Request) -> SchemaResponse:
    """The schema of a message whose Confluent header names ``schema_id`` (e.g. 1101 for v11.1)."""
    return SchemaResponse(schema=_service(request).schema(schema_id).json)


@router.get("/schemas/ids/{schema_id}/schema")
def schema_by_id_raw(schema_id: int, request: Request) -> Response:
    return _raw(_service(request).schema(schema_id).json)


@router.get("/schemas/ids/{schema_id}/subjects")
def schema_subjects(schema_id: int, request: Request) -> list[str]:
    return sorted({subject for subject, _ in _service(request).subject_versions(schema_id)})


@router.get("/schemas/ids/{schema_id}/versions")
def schema_versions(schema_id: int, request: Request) -> list[SubjectVersion]:
    return [SubjectVersion(subject=s, version=v) for s, v in _service(request).subject_versions(schema_id)]


@router.get("/schemas/types")
def schema_types() -> list[str]:
    return ["AVRO"]


@router.get("/config")
def config() -> dict[str, str]:
    """Compatibility NONE, as Rubin's registry (major versions are not compatible)."""
    return {"compatibilityLevel": "NONE"}


@router.get("/mode")
def mode() -> dict[str, str]:
    return {"mode": "READONLY"}


@router.get("/{path:path}", include_in_schema=False)
def not_found(path: str) -> None:
    """Any other GET, e.g. ``/associations/resources/…`` (asked by confluent-kafka ≥ 2.13 deserializers).

    A 404 is what such clients expect from a registry without that feature: they fall back to
    the topic-name strategy (subject ``<topic>-value``).
    """
    raise RouteNotFoundError(f"HTTP 404 Not Found: /{path} is not part of this read-only registry")


@router.api_route("/{path:path}", methods=["POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
def read_only(path: str) -> None:
    """Any write: schemas come from lsst-alert-packet, not from clients."""
    raise ReadOnlyError(
        f"this schema registry is read-only (cannot change /{path}): the alert schemas come from the "
        "lsst-alert-packet package the platform is installed with"
    )
