"""``pachon drp run``: process every visit of a repo into a data release loaded into the catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

HELP = """\
Data release processing: calibrate every visit, solve astrometry (proper motion, parallax) and photometry globally, measure forced photometry, load DP1 tables into the catalog, compute quality metrics.

Examples:

  pachon drp run --repo demo/repo                      # release dp1, one worker per core
  pachon drp run --repo demo/repo --release dp2 --workers 2
  pachon metrics show --repo demo/repo                 # the metrics of every run
"""

RUN_HELP = """\
Process every visit of REPO into release RELEASE (RUN collection Pachon/runs/RELEASE, catalog schema RELEASE).

Resumable: detector-visits already processed are skipped. Re-running a release replaces its catalog tables (idempotent); other releases stay queryable. Metrics go to the platform state database with the code version and configuration.

Examples:

  pachon drp run --repo demo/repo
  pachon drp run --repo demo/repo --release dp2 --workers 2 --json
"""


def register(app: typer.Typer) -> None:
    """Add the ``drp`` group to the ``pachon`` app."""
    drp = typer.Typer(help=HELP, no_args_is_help=True)

    @drp.command("run", help=RUN_HELP)
    def run_command(
        repo: Annotated[Path, typer.Option(help="Data repository with raws (see `pachon simulate`).")],
        release: Annotated[str, typer.Option(help="Release name: dp1, dp2, …")] = "dp1",
        workers: Annotated[
            int | None, typer.Option(help="Dask worker processes (default: settings.workers or CPU count).")
        ] = None,
        catalog: Annotated[
            str | None, typer.Option(help="Catalog URL (default: settings or duckdb:///REPO/catalog/).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run report as JSON.")] = False,
        quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    ) -> None:
        import os

        from pachon.core.settings import get_settings
        from pachon.pipelines.drp import run_release

        if not (repo / "butler.yaml").exists():
            typer.echo(f"error: {repo} is not a data repository (no butler.yaml); create one with "
                       "`pachon simulate --repo {repo}`", err=True)  # fmt: skip
            raise typer.Exit(2)
        try:
            settings = get_settings()
            scheduler = settings.dask_scheduler
            n = workers or settings.workers or os.cpu_count() or 1
            state_url = settings.state_db_url
        except Exception:
            scheduler, n, state_url = None, workers or os.cpu_count() or 1, None
        if not release.isidentifier() or not release.islower():
            raise typer.BadParameter(
                f"{release!r}: use a lower-case identifier such as dp1", param_hint="--release"
            )
        try:
            report = run_release(
                repo, release, workers=n, catalog_url=catalog, state_url=state_url, scheduler=scheduler,
                show_progress=not quiet,
            )  # fmt: skip
        except (FileNotFoundError, RuntimeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if as_json:
            typer.echo(json.dumps(report.to_dict(), default=str, indent=2))
            return
        typer.echo(
            f"release {release}: {report.processed} detector-visits processed, {report.skipped} skipped, "
            f"{len(report.failures)} failed; {report.n_objects} Objects, {report.n_sources} Sources, "
            f"{report.n_forced} ForcedSources, {report.n_visits} Visits → {report.catalog_url} "
            f"in {report.step_seconds.get('total', 0):.1f} s"
        )
        for f in report.failures[:10]:
            typer.echo(f"  failed: {f}")
        for name in ("AM1", "PA1", "AA1_truth", "purity", "star_galaxy_accuracy"):
            if name in report.metrics:
                v, unit, _ = report.metrics[name]
                typer.echo(f"  {name} = {v:.4g} {unit}")

    app.add_typer(drp, name="drp")
