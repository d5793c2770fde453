"""``pachon metrics show``: quality metrics of pipeline runs from the metrics store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]

SHOW_HELP = """\
Show the quality metrics (AM1, PA1, completeness, purity, pulls, …) of pipeline runs.

A table of the latest runs (one column per run, newest right); --json prints the latest run as {"AM1": {"value": …, "unit": "mas"}, …}; --plot DIR writes one PNG per metric across all runs.

Examples:

  pachon metrics show --repo demo/repo
  pachon metrics show --repo demo/repo --json
  pachon metrics show --repo demo/repo --release dp1 --plot metrics_png/
"""


def _state_url(repo: Path) -> str:
    try:
        from pachon.core.settings import get_settings

        configured = get_settings().state_db_url
    except Exception:
        configured = None
    return configured or f"sqlite:///{(repo / 'state' / 'pachon.sqlite3').resolve()}"


def register(app: typer.Typer) -> None:
    """Add the ``metrics`` group to the ``pachon`` app."""
    metrics = typer.Typer(help="Quality metrics of pipeline runs (the SQuaSH view).", no_args_is_help=True)

    @metrics.command("show", help=SHOW_HELP)
    def show_command(
        repo: Annotated[Path, typer.Option(help="Data repository (its state database holds the metrics).")],
        release: Annotated[str | None, typer.Option(help="Only runs of this release.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Latest run as JSON.")] = False,
        plot: Annotated[Path | None, typer.Option(help="Folder for one PNG per metric across runs.")] = None,
        last: Annotated[int, typer.Option(help="Runs shown in the table.")] = 5,
    ) -> None:
        from pachon.pipelines.metrics import load_metric_runs

        runs = load_metric_runs(_state_url(repo), release=release)
        if not runs:
            typer.echo(
                f"error: no metrics stored for {repo}; run `pachon drp run --repo {repo}` first", err=True
            )
            raise typer.Exit(1)
        latest = runs[-1]
        if as_json:
            typer.echo(
                json.dumps(
                    {k: {"value": v[0], "unit": v[1]} for k, v in latest.values.items()},
                    indent=2,
                    sort_keys=True,
                )
            )
        else:
            from rich.console import Console
            from rich.table import Table

            shown = runs[-last:]
            table = Table(title=f"metrics ({len(runs)} runs; latest {len(shown)})")
            table.add_column("metric")
            table.add_column("unit")
            for r in shown:
                table.add_column(f"#{r.run_id} {r.release or ''}\n{r.started_at[:19]}", justify="right")
            for name in sorted({m for r in shown for m in r.values}):
                unit = next((r.values[name][1] for r in shown if name in r.values), "")
                cells = []
                for r in shown:
                    v = r.values.get(name, (None, "", ""))[0]
                    cells.append("—" if v is None else f"{v:.4g}")
                table.add_row(name, unit, *cells)
            Console().print(table)
        if plot is not None:
            from pachon.pipelines.metrics.plot import plot_metric_history

            files = plot_metric_history(runs, plot)
            typer.echo(f"wrote {len(files)} plots to {plot}", err=as_json)

    app.add_typer(metrics, name="metrics")
