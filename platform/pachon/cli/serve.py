"""``pachon serve``: run one of the platform's web services in the foreground.

``serve`` is a group so that later services (images, portal, files…) add their own
subcommands next to ``tap``.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register", "serve_app"]

serve_app = typer.Typer(
    help="Run one of the platform's web services in the foreground (Ctrl-C stops it).",
    no_args_is_help=True,
)


@serve_app.command("tap")
def serve_tap(
    catalog: Annotated[
        str | None,
        typer.Option(
            "--catalog",
            help="SQLAlchemy URL of the catalog database, e.g. duckdb:///cat.duckdb or "
            "postgresql://user@host/db; default: the repo's catalog from settings.",
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8090,
    host: Annotated[
        str, typer.Option(help="Address to bind (keep 127.0.0.1 unless behind a proxy).")
    ] = "127.0.0.1",
    anonymous: Annotated[
        bool,
        typer.Option(
            "--anonymous",
            help="Serve everybody as the user 'anonymous' (local use and benchmarks only).",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Serve the IVOA TAP service at http://HOST:PORT/tap.

    Examples:

      pachon serve tap --catalog duckdb:///cat.duckdb --port 8091 --anonymous

      pachon serve tap --catalog postgresql://tap@dbhost/catalog --port 8090

    Then, from Python: pyvo.dal.TAPService("http://127.0.0.1:8091/tap").search("SELECT TOP 5 * FROM TAP_SCHEMA.tables")

    Jobs and query history go to the platform state database (setting state_db_url);
    async results to tap-results/ beside it. Limits (MAXREC, time limits, uploads) come
    from the tap section of the settings, e.g. PACHON_TAP__MAXREC_HARD=1000000.
    """
    import uvicorn

    from pachon.core.logging import configure_logging
    from pachon.services.tap.config import TapConfig
    from pachon.services.tap.main import create_app

    configure_logging()
    config = TapConfig.from_settings(catalog_url=catalog, anonymous=anonymous)
    typer.echo(f"TAP service at http://{host}:{port}/tap (catalog {config.catalog_url})", err=True)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        timeout_graceful_shutdown=5,
    )


def register(app: typer.Typer) -> None:
    """Add the ``serve`` group to the ``pachon`` command."""
    app.add_typer(serve_app, name="serve")
