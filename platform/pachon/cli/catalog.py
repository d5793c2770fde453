"""``pachon catalog``: create Felis schemas, ingest user catalogs, list what a catalog holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

CatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="Catalog database URL: duckdb:///path/folder/ (one file per schema), duckdb:///path/cat.duckdb "
        "or postgresql://user@host:port/db. Default: the settings' catalog_url, else duckdb:///<repo>/catalog/.",
    ),
]

group = typer.Typer(
    help="Catalog databases: Felis schemas (DP1, ObsCore, PPDB), ingest of user tables, listing.\n\n"
    "Examples:\n\n"
    "  pachon catalog create --schema dp1\n\n"
    "  pachon catalog ingest stars.parquet --table mine.stars --ra ra --dec dec\n\n"
    "  pachon catalog list --catalog duckdb:///data/cat.duckdb      (relative; duckdb:////abs/path for absolute)",
    no_args_is_help=True,
)


def _url(catalog: str | None) -> str:
    from pachon.core.catalog import default_catalog_url

    return catalog or default_catalog_url()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@group.command("ingest")
def ingest(
    file: Annotated[Path, typer.Argument(help="Parquet, FITS (binary table), VOTable or CSV file.")],
    table: Annotated[str, typer.Option("--table", help="Target as SCHEMA.TABLE, e.g. mine.stars.")],
    catalog: CatalogOption = None,
    ra: Annotated[str | None, typer.Option("--ra", help="Right ascension column (ICRS, deg).")] = None,
    dec: Annotated[str | None, typer.Option("--dec", help="Declination column (ICRS, deg).")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet|fits|votable|csv; default from the suffix.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Table description for TAP_SCHEMA.")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace an existing table of that name.")
    ] = False,
    sort_by: Annotated[
        str | None,
        typer.Option(
            "--sort-by", help="Store rows sorted by this column (default: position, else object id)."
        ),
    ] = None,
) -> None:
    """Load FILE as a new table SCHEMA.TABLE, with its TAP_SCHEMA rows and spatial index.

    Column types come from the file; units, UCDs and descriptions too where the format
    carries them (VOTable, FITS, Parquet). With --ra/--dec the table can be cone-searched
    and crossmatched fast (HEALPix on DuckDB, q3c on PostgreSQL). A running TAP service
    sees the new table after its next refresh, without a restart.

    Examples:

      pachon catalog ingest object.parquet --table bench.object --ra ra --dec dec --catalog duckdb:///cat.duckdb

      pachon catalog ingest lc.csv --table mine.lightcurves --replace
    """
    from pachon.core.catalog import CatalogError, IngestError, open_catalog
    from pachon.core.catalog.readers import open_source
    from pachon.core.progress import progress

    url = _url(catalog)
    try:
        source = open_source(file, fmt)
        with open_catalog(url, read_only=False) as cat, progress() as bar:
            task = bar.add_task(f"ingest {file.name}", total=source.num_rows)
            report = cat.ingest(
                source,
                table,
                ra=ra,
                dec=dec,
                fmt=fmt,
                description=description,
                replace=replace,
                sort_by=sort_by,
                progress=lambda n: bar.update(task, completed=n),
            )
            bar.update(task, completed=report.rows, total=report.rows)
    except (CatalogError, IngestError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(report.summary())


@group.command("create")
def create(
    schema: Annotated[str, typer.Option("--schema", help="dp1 | obscore | ppdb")],
    name: Annotated[
        str | None, typer.Option("--name", help="Schema name to serve it as (e.g. dp2); default per kind.")
    ] = None,
    catalog: CatalogOption = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Empty the schema's tables even if they hold rows.")
    ] = False,
) -> None:
    """Create the empty tables of a Felis schema and their TAP_SCHEMA rows.

    dp1 is Rubin's DP1 schema with our DPDD proper-motion/parallax extension of Object;
    obscore is ivoa.ObsCore (ObsCore 1.1); ppdb the prompt products. A later release uses
    the DP1 tables under its own name.

    Examples:

      pachon catalog create --schema dp1

      pachon catalog create --schema dp1 --name dp2 --catalog postgresql://postgres@127.0.0.1:5432/pachon
    """
    from pachon.core.catalog import CatalogError, open_catalog
    from pachon.core.catalog.felis_schemas import SCHEMA_KINDS

    if schema not in SCHEMA_KINDS:
        raise _fail(f"unknown schema {schema!r}; choose one of {', '.join(SCHEMA_KINDS)}")
    try:
        with open_catalog(_url(catalog), read_only=False) as cat:
            info = cat.create_schema(schema, name, replace=replace)  # type: ignore[arg-type]
    except CatalogError as exc:
        raise _fail(str(exc)) from None
    columns = sum(len(t.columns) for t in info.tables)
    typer.echo(f"created schema {info.name} ({schema}): {len(info.tables)} tables, {columns} columns")


@group.command("list")
def list_(catalog: CatalogOption = None) -> None:
    """List schemas, tables and row counts.

    Example:

      pachon catalog list --catalog duckdb:///data/catalog/
    """
    from pachon.core.catalog import CatalogError, open_catalog

    try:
        with open_catalog(_url(catalog), read_only=True) as cat:
            for schema in cat.schemas():
                typer.echo(f"{schema.name}: {schema.description or ''}".rstrip(": "))
                for table in schema.tables:
                    count = table.row_count if table.row_count is not None else _count(cat, table)
                    rows = "?" if count is None else f"{count:,}"
                    pos = f"  position ({table.position.ra}, {table.position.dec})" if table.position else ""
                    typer.echo(f"  {table.qualified:<40} {rows:>14} rows  {len(table.columns)} columns{pos}")
    except CatalogError as exc:
        raise _fail(str(exc)) from None


def _count(cat: object, table: object) -> int | None:
    """COUNT(*) of a table whose metadata has no row count (TAP_SCHEMA's own tables)."""
    from pachon.core.catalog import CatalogDatabase, TableInfo
    from pachon.core.catalog.identifiers import quote_identifier as q

    assert isinstance(cat, CatalogDatabase) and isinstance(table, TableInfo)
    sql = f"SELECT count(*) FROM {q(table.db_schema or table.schema)}.{q(table.db_name or table.name)}"
    try:
        with cat.connection() as conn:
            cur = conn.cursor() if cat.dialect == "postgresql" else conn
            cur.execute(sql)
            return int(cur.fetchone()[0])
    except Exception:
        return None


def register(app: typer.Typer) -> None:
    """Add the ``catalog`` group to the ``pachon`` CLI."""
    app.add_typer(group, name="catalog")
