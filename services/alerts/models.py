"""Response models of the schema registry endpoints (Confluent Schema Registry API v1 shapes)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorResponse", "SchemaResponse", "SubjectVersion", "SubjectVersionResponse"]


class SchemaResponse(BaseModel):
    """``GET /schemas/ids/{id}``: the schema as a JSON string (AVRO, so no ``schemaType``)."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(alias="schema", description="The Avro schema as a JSON string.")


class SubjectVersionResponse(BaseModel):
    """``GET /subjects/{subject}/versions/{version}``."""

    model_config = ConfigDict(populate_by_name=True)

    subject: str
    version: int
    id: int = Field(description="Registry ID, major*100+minor of the alert schema version.")
    schema_: str = Field(alias="schema")


class SubjectVersion(BaseModel):
    """One entry of ``GET /schemas/ids/{id}/versions``."""

    subject: str
    version: int


class ErrorResponse(BaseModel):
    """Every error body, as Confluent's: ``{"error_code": 40403, "message": "..."}``."""

    error_code: int
    message: str
