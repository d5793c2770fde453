"""Quality metrics (SRD: AM1, PA1, …) computed on releases against simulator truth, and their store."""

from pachon.pipelines.metrics.compute import am1, compute_release_metrics, pa1, pulls
from pachon.pipelines.metrics.store import MetricRun, load_metric_runs, store_metrics

__all__ = ["MetricRun", "am1", "compute_release_metrics", "load_metric_runs", "pa1", "pulls", "store_metrics"]
