"""PNG plots of each metric across runs (the SQuaSH view: which run changed which metric)."""

from __future__ import annotations

import re
from pathlib import Path

from pachon.pipelines.metrics.store import MetricRun

__all__ = ["plot_metric_history"]


def plot_metric_history(runs: list[MetricRun], out_dir: str | Path) -> list[Path]:
    """One PNG per metric: value vs run (x labels: run id, release, code version); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted({m for r in runs for m in r.values})
    files = []
    for name in names:
        xs, ys, labels = [], [], []
        unit = ""
        for i, r in enumerate(runs):
            if name in r.values and r.values[name][0] is not None:
                xs.append(i)
                ys.append(float(r.values[name][0]))  # type: ignore[arg-type]
                unit = r.values[name][1]
            labels.append(f"#{r.run_id}\n{r.release or ''}\n{r.code_version}")
        fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(runs) + 2), 3.2))
        ax.plot(xs, ys, "o-", color="tab:blue")
        ax.set_xticks(range(len(runs)), labels, fontsize=7)
        ax.set_ylabel(f"{name} [{unit}]" if unit else name)
        ax.set_title(f"{name} across runs")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)
    return files
