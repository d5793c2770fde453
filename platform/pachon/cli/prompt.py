"""``pachon prompt``: build templates and run prompt processing (calibration → difference → alerts)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

prompt_app = typer.Typer(
    help="""Prompt processing: per-visit calibration, image differencing, DIA sources, APDB association and alerts.

Typical session:

  pachon simulate --repo demo/repo --preset tiny
  pachon prompt templates --repo demo/repo        # per-band templates + real/bogus model
  pachon prompt train --repo demo/repo            # retrain only the real/bogus model
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
            _train(repo, mapper, n_visits=2)


def _train(repo: Path, mapper: Any, *, n_visits: int) -> None:
    from pachon.pipelines.prompt.training import train_from_truth

    t0 = time.perf_counter()
    model = train_from_truth(repo, map_fn=mapper, n_visits=n_visits, log=typer.echo)
    if model is not None:
        typer.echo(
            f"real/bogus model trained on {model.n_train} DIA sources (accuracy {model.train_accuracy:.3f}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )


@prompt_app.command("train")
def train(
    repo: Annotated[Path, typer.Option(help="Data repository with templates (`pachon prompt templates`).")],
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core; 1 = in-process).")
    ] = None,
    visits_per_band: Annotated[
        int, typer.Option(help="Non-template visits per band to inject fakes into and train on.")
    ] = 2,
) -> None:
    """(Re)train the real/bogus classifier from simulator truth, keeping the templates.

    What ``pachon prompt templates`` does after building templates; on its own after a classifier
    change. The model replaces ``real_bogus_model``; visits already processed keep their scores.

    Example: pachon prompt train --repo demo/repo
    """
    from pachon.pipelines.prompt.parallel import detector_map

    with detector_map(_workers(workers)) as mapper:
        _train(repo, mapper, n_visits=visits_per_band)


@prompt_app.command("run")
def run(
    repo: Annotated[Path, typer.Option(help="Data repository with raws and templates.")],
    visits: Annotated[
        list[int] | None, typer.Option(help="Visit IDs to (re)process; default every unprocessed visit.")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(help="After the backlog, keep processing new raw visits as they land (Ctrl-C stops)."),
    ] = False,
    poll: Annotated[float, typer.Option(help="Seconds between checks for new raws with --follow.")] = 2.0,
    settle: Annotated[
        float,
        typer.Option(
            help="With --follow, process a visit whose raws stopped landing for this many seconds even if "
            "some detectors are missing (a complete visit goes at once)."
        ),
    ] = 30.0,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core; 1 = in-process).")
    ] = None,
    alerts: Annotated[bool, typer.Option(help="Build, archive and publish alerts.")] = True,
    ppdb: Annotated[
        bool,
        typer.Option(
            help="After each visit, publish DiaObject/DiaSource/DiaForcedSource to TAP schema ppdb."
        ),
    ] = True,
    catalog: Annotated[
        str | None,
        typer.Option(help="Catalog URL for schema ppdb (default: settings catalog_url, else REPO/catalog/)."),
    ] = None,
) -> None:
    """Process visits: calibrate, subtract templates, detect and associate DIA sources, send alerts.

    After each visit its alerts are published (archived ones a broker missed too) and the APDB's
    DiaObject, DiaSource and DiaForcedSource are published to the catalog as schema ppdb, which a
    running TAP service serves after its next reload (within 30 s). SIGINT/SIGTERM finish the visit
    in progress and stop; a second signal stops at once (the visit is then re-run next time).

    Examples:
      pachon prompt run --repo demo/repo
      pachon prompt run --repo demo/repo --visits 20270114001
      pachon prompt run --repo demo/repo --follow
    """
    from pachon.pipelines.prompt.live import StopFlag, process_pending
    from pachon.pipelines.prompt.parallel import detector_map

    stop = StopFlag()
    with stop.handling_signals(), detector_map(_workers(workers)) as mapper:
        if follow:
            typer.echo(f"watching {repo} for new raw visits every {poll:g} s (Ctrl-C stops)")
        try:
            report = process_pending(
                repo,
                visits or None,
                follow=follow,
                poll=poll,
                settle_s=settle,
                map_fn=mapper,
                alerts=alerts,
                ppdb=ppdb,
                catalog_url=catalog,
                stop=stop,
                log=typer.echo,
            )
        except KeyboardInterrupt:
            typer.echo("interrupted: the visit in progress will be processed again by the next run")
            raise typer.Exit(130) from None
    if not report.visits and not follow and not stop.is_set():
        typer.echo("nothing to do: every visit with raws is processed (use --visits to re-run one)")
    if report.stopped_by:
        typer.echo(f"stopped by {report.stopped_by} after {len(report.visits)} visit(s)")


def register(app: typer.Typer) -> None:
    """Add ``pachon prompt`` to the main CLI."""
    app.add_typer(prompt_app, name="prompt")
