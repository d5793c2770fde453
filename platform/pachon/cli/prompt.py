"""``pachon prompt``: build templates and run prompt processing (calibration → difference → alerts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

prompt_app = typer.Typer(
    help="""Prompt processing: per-visit calibration, image differencing, DIA sources, APDB association and alerts.

Typical session:

  pachon simulate --repo demo/repo --preset tiny
  pachon prompt templates --repo demo/repo        # per-band templates + real/bogus model
  pachon prompt run --repo demo/repo              # every visit not yet processed, in time order
  pachon prompt run --repo demo/repo --visits 20270114001 --visits 20270114002
  pachon prompt run --repo demo/repo --follow     # keep watching for new raw visits
""",
    no_args_is_help=True,
)


def _workers(workers: int | None) -> int:
    return workers if workers is not None else max(1, os.cpu_count() or 1)


@prompt_app.command("templates")
def templates(
    repo: Annotated[Path, typer.Option(help="Data repository with simulated or ingested raws.")],
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core; 1 = in-process).")
    ] = None,
    train: Annotated[
        bool, typer.Option(help="Also train the real/bogus classifier from simulator truth.")
    ] = True,
) -> None:
    """Build per-band template coadds from the best-seeing early visits (``template_coadd``).

    Example: pachon prompt templates --repo demo/repo
    """
    from pachon.pipelines.prompt.parallel import detector_map
    from pachon.pipelines.prompt.pipeline import build_templates

    with detector_map(_workers(workers)) as mapper:
        report = build_templates(repo, map_fn=mapper, log=typer.echo)
        for band, visits in report.visits.items():
            typer.echo(f"template {band}: visits {visits} → patches {report.patches.get(band, [])}")
        for failure in report.failures:
            typer.echo(f"  skipped {failure}")
        typer.echo(f"templates built in {report.seconds:.1f} s")
        if train:
            from pachon.pipelines.prompt.training import train_from_truth

            model = train_from_truth(repo, map_fn=mapper, log=typer.echo)
            if model is not None:
                typer.echo(
                    f"real/bogus model trained on {model.n_train} DIA sources (accuracy {model.train_accuracy:.3f})"
                )


@prompt_app.command("run")
def run(
    repo: Annotated[Path, typer.Option(help="Data repository with raws and templates.")],
    visits: Annotated[
        list[int] | None, typer.Option(help="Visit IDs to (re)process; default every unprocessed visit.")
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="After the backlog, keep watching for new raw visits (Ctrl-C stops).")
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks for new raws with --follow.")] = 2.0,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core; 1 = in-process).")
    ] = None,
    alerts: Annotated[bool, typer.Option(help="Build, archive and publish alerts.")] = True,
) -> None:
    """Process visits: calibrate, subtract templates, detect and associate DIA sources, send alerts.

    Examples:
      pachon prompt run --repo demo/repo
      pachon prompt run --repo demo/repo --visits 20270114001
      pachon prompt run --repo demo/repo --follow
    """
    from pachon.pipelines.prompt.parallel import detector_map
    from pachon.pipelines.prompt.pipeline import run_visits

    with detector_map(_workers(workers)) as mapper:
        reports = run_visits(repo, visits or None, map_fn=mapper, alerts=alerts, log=typer.echo)
        if not reports and not follow:
            typer.echo("nothing to do: every visit with raws is processed (use --visits to re-run one)")
        while follow:
            time.sleep(poll)
            run_visits(repo, None, map_fn=mapper, alerts=alerts, log=typer.echo)


def register(app: typer.Typer) -> None:
    """Add ``pachon prompt`` to the main CLI."""
    app.add_typer(prompt_app, name="prompt")
