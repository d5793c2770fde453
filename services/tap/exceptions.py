"""Domain errors of the TAP service.

Each carries the message a user reads (in the VOTable error document's QUERY_STATUS
INFO) and the HTTP status the handlers answer with. Messages say what was wrong, where
and how to fix it. Handlers never build error text themselves: they raise these.
"""

from __future__ import annotations

__all__ = [
    "ExecutionTimeoutError",
    "JobAbortedError",
    "JobNotFoundError",
    "NotAuthenticatedError",
    "ParameterError",
    "PermissionDeniedError",
    "QueryError",
    "TapError",
    "UploadError",
    "UwsStateError",
]


class TapError(Exception):
    """Base class: ``message`` is shown to the user, ``status_code`` is the HTTP status."""

    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class ParameterError(TapError):
    """A request parameter is missing or has a value the service does not accept."""


class QueryError(TapError):
    """The ADQL could not be parsed, translated or executed."""


class UploadError(TapError):
    """A TAP_UPLOAD table could not be read (bad name, format, size, or URL)."""


class ExecutionTimeoutError(QueryError):
    """The query ran longer than its time limit and was cancelled."""


class JobAbortedError(QueryError):
    """The job was aborted by its owner while it ran."""


class JobNotFoundError(TapError):
    """No job with this id (it may have been destroyed)."""

    status_code = 404


class PermissionDeniedError(TapError):
    """The job belongs to someone else."""

    status_code = 403


class NotAuthenticatedError(TapError):
    """The request carries no user identity and anonymous access is off."""

    status_code = 401


class UwsStateError(TapError):
    """A UWS action that the job's phase does not allow (e.g. changing parameters while it runs)."""

    status_code = 409
