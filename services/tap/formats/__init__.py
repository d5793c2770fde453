"""TAP result writers (VOTable BINARY2/TABLEDATA, CSV, TSV, Parquet, FITS, HTML) and upload readers.

Pure functions over Arrow data, no web framework: the query service hands a writer the
result's column metadata (:class:`~pachon.core.catalog.model.ColumnInfo`, VOTable
vocabulary) and an iterator of :class:`pyarrow.RecordBatch`, and streams the ``bytes``
chunks it yields. Uploads go the other way: :func:`read_upload` turns a VOTable, CSV or
Parquet file into a :class:`pyarrow.Table` plus ``ColumnInfo`` list, and
:func:`fetch_upload_url` fetches ``http(s)`` uploads behind a server-side request forgery
guard.

Example
-------
>>> import pyarrow as pa
>>> from pachon.core.catalog.model import ColumnInfo
>>> from pachon.services.tap.formats import negotiate
>>> fmt = negotiate("votable")
>>> cols = [ColumnInfo("ra", "double", unit="deg", ucd="pos.eq.ra;meta.main")]
>>> batch = pa.record_batch([pa.array([10.5])], names=["ra"])
>>> doc = b"".join(fmt.write(cols, [batch]))
>>> doc.startswith(b"<?xml")
True
"""

from __future__ import annotations

from .errors import FormatError, ResultStreamError, UploadError
from .fetch import check_address, fetch_upload_url
from .negotiate import (
    DEFAULT_FORMAT,
    OUTPUT_FORMATS,
    FormatCapability,
    OutputFormat,
    capability_formats,
    negotiate,
)
from .rows import cursor_batches, rows_to_batches
from .tables import write_fits, write_parquet
from .text import write_csv, write_html, write_tsv
from .types import ResultMeta, Status, StatusCallback
from .uploads import ADQL_RESERVED_WORDS, UploadTable, read_upload
from .votable import error_votable, metadata_votable, write_binary2, write_tabledata

__all__ = [
    "ADQL_RESERVED_WORDS",
    "DEFAULT_FORMAT",
    "OUTPUT_FORMATS",
    "FormatCapability",
    "FormatError",
    "OutputFormat",
    "ResultMeta",
    "ResultStreamError",
    "Status",
    "StatusCallback",
    "UploadError",
    "UploadTable",
    "capability_formats",
    "check_address",
    "cursor_batches",
    "error_votable",
    "fetch_upload_url",
    "metadata_votable",
    "negotiate",
    "read_upload",
    "rows_to_batches",
    "write_binary2",
    "write_csv",
    "write_fits",
    "write_html",
    "write_parquet",
    "write_tabledata",
    "write_tsv",
]
