"""Read-only Confluent Schema Registry semantics over the shipped alert schemas."""

from __future__ import annotations

from pachon.core.alerts.schema import AlertSchema
from pachon.services.alerts.exceptions import (
    InvalidVersionError,
    SchemaNotFoundError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from pachon.services.alerts.storage.schemas import SchemaStore

__all__ = ["SchemaRegistryService"]


class SchemaRegistryService:
    """Look-ups a Confluent client makes: subjects, their versions, schemas by ID."""

    def __init__(self, *, store: SchemaStore) -> None:
        self._store = store

    def subjects(self) -> list[str]:
        return sorted(self._store.subjects)

    def _subject(self, subject: str) -> list[AlertSchema]:
        try:
            return self._store.subjects[subject]
        except KeyError:
            known = ", ".join(self.subjects())
            raise SubjectNotFoundError(f"Subject '{subject}' not found. Known subjects: {known}") from None

    def versions(self, subject: str) -> list[int]:
        return list(range(1, len(self._subject(subject)) + 1))

    def version(self, subject: str, version: str) -> tuple[int, AlertSchema]:
        """``(version number, schema)`` for a version given as a number, ``latest`` or ``-1``."""
        schemas = self._subject(subject)
        if version in ("latest", "-1"):
            return len(schemas), schemas[-1]
        try:
            number = int(version)
        except ValueError:
            raise InvalidVersionError(
                f"The specified version '{version}' is not a valid version id. Allowed values are between "
                '[1, 2^31-1] and the string "latest"'
            ) from None
        if not 1 <= number <= len(schemas):
            raise VersionNotFoundError(
                f"Version {number} not found for subject '{subject}' (versions 1 to {len(schemas)} exist)."
            )
        return number, schemas[number - 1]

    def schema(self, schema_id: int) -> AlertSchema:
        try:
            return self._store.by_id[schema_id]
        except KeyError:
            known = ", ".join(str(i) for i in sorted(self._store.by_id))
            raise SchemaNotFoundError(
                f"Schema {schema_id} not found. IDs are major*100+minor of the alert schema; known: {known}"
            ) from None

    def subject_versions(self, schema_id: int) -> list[tuple[str, int]]:
        """Every ``(subject, version)`` under which schema ``schema_id`` is registered."""
        target = self.schema(schema_id)
        return [
            (subject, index + 1)
            for subject, schemas in sorted(self._store.subjects.items())
            for index, schema in enumerate(schemas)
            if schema.schema_id == target.schema_id
        ]
