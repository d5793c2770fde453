"""The metrics store: ``metric_run``/``metric_value`` in the platform state database (the "SQuaSH" view).

Each pipeline run writes one ``metric_run`` row (pipeline, release, code version, configuration as
JSON, start time) and one ``metric_value`` row per metric, so ``pachon metrics show`` can list which
run changed which metric.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from pachon._version import __version__
from pachon.core.state import state_engine, upgrade_state

__all__ = ["MetricRun", "load_metric_runs", "store_metrics"]


@dataclass
class MetricRun:
    """One run's metrics as read back from the store."""

    run_id: int
    pipeline: str
    release: str | None
    code_version: str
    started_at: str
    config: dict[str, Any]
    values: dict[str, tuple[float | None, str, str]] = field(default_factory=dict)


def store_metrics(
    metrics: dict[str, tuple[float, str, str]],
    *,
    pipeline: str,
    release: str | None,
    config: dict[str, Any],
    state_url: str,
    code_version: str = __version__,
) -> int:
    """Write one run's metrics; returns its ``run_id``. NaN values are stored as NULL (not measurable)."""
    upgrade_state(state_url)
    engine = state_engine(state_url)
    with engine.begin() as conn:
        result = conn.execute(
            text(
                "INSERT INTO metric_run (pipeline, release, code_version, config_json, started_at) "
                "VALUES (:p, :r, :v, :c, :t)"
            ),
            {
                "p": pipeline,
                "r": release,
                "v": code_version,
                "c": json.dumps(config, sort_keys=True, default=str),
                "t": dt.datetime.now(dt.UTC),
            },
        )
        run_id = result.lastrowid
        if run_id is None:  # PostgreSQL's driver does not report lastrowid
            run_id = conn.execute(text("SELECT max(run_id) FROM metric_run")).scalar_one()
        for name, (value, unit, description) in metrics.items():
            v = (
                None
                if value is None or (isinstance(value, float) and not math.isfinite(value))
                else float(value)
            )
            conn.execute(
                text(
                    "INSERT INTO metric_value (run_id, metric, value, unit, description) VALUES (:i, :m, :v, :u, :d)"
                ),
                {"i": run_id, "m": name, "v": v, "u": unit, "d": description},
            )
    return int(run_id)


def load_metric_runs(
    state_url: str, *, pipeline: str | None = None, release: str | None = None
) -> list[MetricRun]:
    """Every stored run (oldest first) with its metric values."""
    upgrade_state(state_url)
    engine = state_engine(state_url)
    where, params = [], {}
    if pipeline:
        where.append("pipeline = :p")
        params["p"] = pipeline
    if release:
        where.append("release = :r")
        params["r"] = release
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT run_id, pipeline, release, code_version, started_at, config_json FROM metric_run "
                f"{clause} ORDER BY run_id"
            ),
            params,
        ).all()
        runs = {
            int(r[0]): MetricRun(int(r[0]), r[1], r[2], r[3], str(r[4]), json.loads(r[5] or "{}"))
            for r in rows
        }
        if runs:
            for run_id, metric, value, unit, desc in conn.execute(
                text(
                    "SELECT run_id, metric, value, unit, description FROM metric_value ORDER BY run_id, metric"
                )
            ).all():
                if int(run_id) in runs:
                    runs[int(run_id)].values[metric] = (value, unit or "", desc or "")
    return list(runs.values())
