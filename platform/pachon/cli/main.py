"""The ``pachon`` command: one entry point for every part of the platform.

Each area contributes its commands from a module in this package exposing
``register(app)`` (``catalog``, ``serve``, ``simulate``, ``up``, …); this module finds
them, so adding an area never means editing a central list. Errors that a user can fix
(bad settings, a missing repo, bad input) print one line and exit with status 2; bugs
still show a traceback.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer

import pachon
from pachon.core.settings import SettingsError

__all__ = ["app", "main"]

HELP = """\
Pachón: a Jupyter-centric science platform for a large optical sky survey.

Typical first session:

  pachon repo create demo/repo                    # a data repository
  pachon simulate --repo demo/repo --preset tiny  # visits with known truth
  pachon up --repo demo/repo                      # serve; prints where to look

Every command has --help with examples. Settings come from ./pachon.toml (or
$PACHON_CONFIG) and PACHON_* variables, e.g. PACHON_LOG_LEVEL=DEBUG.
"""

app = typer.Typer(
    name="pachon",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)

repo_app = typer.Typer(
    help="Create and inspect data repositories (LSST Butler repos with Pachón's conventions).",
    no_args_is_help=True,
)
app.add_typer(repo_app, name="repo")


@app.command()
def version() -> None:
    """Print Pachón's version and those of the libraries it stands on."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as pkg_version

    typer.echo(f"pachon {pachon.__version__}")
    for dist in ("lsst-daf-butler", "lsst-felis", "lsst-sdm-schemas", "astropy", "duckdb", "pyvo"):
        try:
            typer.echo(f"  {dist} {pkg_version(dist)}")
        except PackageNotFoundError:
            typer.echo(f"  {dist} (not installed)")


@repo_app.command("create")
def repo_create(
    repo: Annotated[Path, typer.Argument(help="Folder of the new data repository (created if missing).")],
    registry: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of a PostgreSQL registry; default SQLite inside the repo."),
    ] = None,
) -> None:
    """Create a data repository, or complete an existing one (idempotent).

    Registers the instrument Pachon (bands ugrizy, filters u_sim…y_sim), the dataset types
    every pipeline writes (raw, visit_image, difference_image, template_coadd, deep_coadd,
    source, object, …) and the collections notebooks use (Pachon/defaults).

    Example: pachon repo create demo/repo
    """
    from pachon.core.repo import DataRepository
    from pachon.core.settings import get_settings

    report = DataRepository.create(repo, registry_url=registry or get_settings().butler_registry_url)
    if report.created_repo:
        typer.echo(f"created data repository {repo} ({len(report.registered)} definitions registered)")
    elif report.registered:
        typer.echo(f"completed data repository {repo}: registered {', '.join(report.registered)}")
    else:
        typer.echo(f"data repository {repo} already exists and is complete; nothing changed")


@repo_app.command("info")
def repo_info(
    repo: Annotated[Path, typer.Argument(help="Folder of the data repository.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Summarise a data repository: detectors, exposures, nights, collections, datasets.

    Example: pachon repo info demo/repo
    """
    from pachon.core.repo import DataRepository

    info = DataRepository.open(repo).info()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"repository   {info['path']}")
    typer.echo(f"instrument   {info['instrument']} (bands {''.join(info['bands'])})")
    typer.echo(f"detectors    {info['detectors']}")
    nights = f" ({info['first_night']} … {info['last_night']})" if info["nights"] else ""
    typer.echo(f"exposures    {info['exposures']} over {info['nights']} nights{nights}")
    typer.echo("collections  " + ", ".join(info["collections"]))
    typer.echo("datasets")
    for name, count in info["datasets"].items():
        if count:
            typer.echo(f"  {name:<24} {count}")


_LATER = {
    "prompt": "Prompt processing: calibrate each visit, subtract templates, find DIA sources, send alerts.",
    "mops": "Moving objects: link tracklets of the night and fit orbits.",
    "drp": "Data release processing: coadds, catalogs, proper motions and parallaxes, metrics.",
}


def _not_yet(name: str, summary: str) -> typer.Typer:
    group = typer.Typer(help=f"{summary} (not available in this version yet)", invoke_without_command=True)

    @group.callback()
    def _callback(ctx: typer.Context) -> None:
        typer.echo(f"error: `pachon {name}` is not available in Pachón {pachon.__version__} yet", err=True)
        raise typer.Exit(2)

    return group


def _register_areas() -> None:
    """Add the commands of every module in pachon.cli that defines ``register(app)``."""
    import pachon.cli as cli_pkg

    for module_info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if module_info.name in ("main", "__main__") or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pachon.cli.{module_info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            register(app)
    existing = {group.name for group in app.registered_groups} | {
        cmd.name or (cmd.callback.__name__ if cmd.callback else "") for cmd in app.registered_commands
    }
    for name, summary in _LATER.items():
        if name not in existing:
            app.add_typer(_not_yet(name, summary), name=name)


_register_areas()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user-fixable errors print one line and return 2.

    Settings are validated before any command runs, so a bad ``pachon.toml`` or
    ``PACHON_*`` value stops every command with one line naming it.
    """
    from pachon.core.logging import configure_logging
    from pachon.core.repo import RepoError
    from pachon.core.settings import get_settings

    try:
        get_settings()
        configure_logging()
        app(args=argv, prog_name="pachon", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (SettingsError, RepoError) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except Exception as exc:
        if _is_user_error(exc):
            typer.echo(f"error: {exc}", err=True)
            return 2
        raise
    return 0


def _is_user_error(exc: BaseException) -> bool:
    """Errors from any area that carry a message meant for the user (marked by a class attribute)."""
    return bool(getattr(type(exc), "user_facing", False))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def run() -> None:
    """Console-script entry point (``pachon``)."""
    sys.exit(main())
