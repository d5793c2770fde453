"""``pachon simulate``: write a simulated survey (raws, flats, refcat, truth) into a data repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

HELP = """\
Simulate a survey with known truth into a data repository (created if missing).

Writes raw detector images (ADU, with overscan, nominal WCS), imperfect flats, a Gaia-like reference catalog and the truth tables (stars, galaxies, variables, transients, asteroid orbits, per-visit sources and ephemerides). Same seed, same bytes; an interrupted run resumes where it stopped.

Presets: tiny (4×1k² detectors, 20 visits, ~25 s), small (9×2k² over ~1°, 24 visits, ~8 GB), medium (4×4k², 30 visits, ~16 GB).

Examples:

  pachon simulate --repo demo/repo --preset tiny
  pachon simulate --repo demo/repo --preset small --seed 7 --workers 2
  pachon simulate --repo demo/repo --plot 20270306001,0 --out visit.png
  pachon simulate --repo demo/repo --release-pace 30   # one visit every 30 s, for live prompt processing
"""


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the ``pachon`` app."""

    @app.command("simulate", help=HELP)
    def simulate_command(
        repo: Annotated[Path, typer.Option(help="Data repository folder (created if missing).")],
        preset: Annotated[str, typer.Option(help="tiny, small or medium.")] = "tiny",
        seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 1,
        workers: Annotated[
            int | None, typer.Option(help="Worker processes rendering detectors (default: CPU count).")
        ] = None,
        plot: Annotated[
            str | None,
            typer.Option(
                help="Instead of simulating, plot EXPOSURE[,DETECTOR] with truth overlaid (needs --out)."
            ),
        ] = None,
        out: Annotated[Path | None, typer.Option(help="PNG file for --plot.")] = None,
        release_pace: Annotated[
            float | None,
            typer.Option(help="Seconds to wait after each complete visit (drives live prompt processing)."),
        ] = None,
        quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    ) -> None:
        from pachon.core.repo import RepoError

        if plot is not None:
            if out is None:
                raise typer.BadParameter("--plot needs --out FILE.png", param_hint="--out")
            parts = plot.split(",")
            try:
                exposure = int(parts[0])
                detector = int(parts[1]) if len(parts) > 1 else 0
            except ValueError:
                raise typer.BadParameter(
                    f"{plot!r}: expected EXPOSURE[,DETECTOR] as integers, e.g. 20270306001,0",
                    param_hint="--plot",
                ) from None
            from pachon.pipelines.sim.plot import plot_visit

            try:
                plot_visit(repo, exposure, detector, out)
            except RepoError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            except LookupError as exc:
                typer.echo(
                    f"error: no raw for exposure {exposure} detector {detector} in {repo} ({exc}); "
                    "list exposures with `pachon repo info`",
                    err=True,
                )
                raise typer.Exit(2) from None
            typer.echo(f"wrote {out}")
            return

        from pachon.pipelines.sim.config import PRESETS
        from pachon.pipelines.sim.run import simulate

        if preset not in PRESETS:
            raise typer.BadParameter(f"{preset!r}: choose one of {', '.join(PRESETS)}", param_hint="--preset")
        try:
            summary = simulate(
                repo, preset, seed, workers=workers, show_progress=not quiet, release_pace=release_pace
            )
        except RepoError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(
            f"{summary.repo}: {summary.preset} survey, seed {summary.seed}: {summary.visits} visits × "
            f"{summary.detectors} detectors; rendered {summary.rendered}, already present {summary.skipped}, "
            f"in {summary.seconds:.1f} s"
        )
