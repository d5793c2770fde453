"""Errors of the alerts service, shaped as Confluent Schema Registry errors.

Confluent clients branch on ``error_code`` (e.g. 40403 "schema not found"), so every error
carries the same code a Confluent registry would send, with a message saying what exists.
"""

from __future__ import annotations

__all__ = [
    "ReadOnlyError",
    "RegistryError",
    "SchemaNotFoundError",
    "SubjectNotFoundError",
    "VersionNotFoundError",
]


class RegistryError(Exception):
    """A request the registry cannot answer; ``status`` and ``error_code`` as Confluent's."""

    status = 500
    error_code = 50001

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SubjectNotFoundError(RegistryError):
    status = 404
    error_code = 40401


class VersionNotFoundError(RegistryError):
    status = 404
    error_code = 40402


class SchemaNotFoundError(RegistryError):
    status = 404
    error_code = 40403


class InvalidVersionError(RegistryError):
    status = 422
    error_code = 42202


class RouteNotFoundError(RegistryError):
    status = 404
    error_code = 404


class ReadOnlyError(RegistryError):
    status = 422
    error_code = 42205
