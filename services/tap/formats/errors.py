"""Errors of the format layer.

They subclass the service's domain errors (:mod:`pachon.services.tap.exceptions`) so the
handlers turn them into DALI error documents without a translation step: an unknown
RESPONSEFORMAT is a parameter error, a bad upload an upload error.
"""

from __future__ import annotations

from ..exceptions import ParameterError
from ..exceptions import UploadError as _ServiceUploadError

__all__ = ["FormatError", "ResultStreamError", "UploadError"]


class FormatError(ParameterError):
    """RESPONSEFORMAT names a format the service does not offer."""


class UploadError(_ServiceUploadError):
    """An uploaded table cannot be used; the message names the table, row and column.

    ``table``, ``row`` (1-based data row) and ``column`` are kept as attributes so a
    caller can build its own message or a structured answer.
    """

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        segments = [f"upload {table!r}"] if table is not None else []
        place = ([f"row {row}"] if row is not None else []) + (
            [f"column {column!r}"] if column is not None else []
        )
        if place:
            segments.append(", ".join(place))
        super().__init__(": ".join([*segments, message]))
        self.table = table
        self.row = row
        self.column = column


class ResultStreamError(RuntimeError):
    """A result in a format without an in-band error channel (CSV, TSV, Parquet, FITS,
    HTML) failed after output had started.

    Raised at the end of the stream so the HTTP layer aborts the response (the client
    sees a truncated transfer, not a silently short table). VOTable writers never raise
    it: they end the document with a ``QUERY_STATUS=ERROR`` INFO instead (DALI §4.4).
    """
