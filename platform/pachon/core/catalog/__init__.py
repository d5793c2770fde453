"""The catalog layer: Felis schemas, catalog databases (DuckDB, PostgreSQL), TAP_SCHEMA and ingest.

It lives in the core because both the TAP service (which reads it) and the pipelines
(which load releases through it) use it; see ARCHITECTURE.md.
"""

from pachon.core.catalog.database import (
    CatalogDatabase,
    CatalogError,
    IngestReport,
    default_catalog_url,
    open_catalog,
)
from pachon.core.catalog.model import (
    HIDDEN_COLUMNS,
    HPX_COLUMN,
    HPX_DEPTH,
    UNIT_VECTOR_COLUMNS,
    ColumnInfo,
    ForeignKeyInfo,
    PositionInfo,
    SchemaInfo,
    TableInfo,
)
from pachon.core.catalog.readers import IngestError

__all__ = [
    "HIDDEN_COLUMNS",
    "HPX_COLUMN",
    "HPX_DEPTH",
    "UNIT_VECTOR_COLUMNS",
    "CatalogDatabase",
    "CatalogError",
    "ColumnInfo",
    "ForeignKeyInfo",
    "IngestError",
    "IngestReport",
    "PositionInfo",
    "SchemaInfo",
    "TableInfo",
    "default_catalog_url",
    "open_catalog",
]
