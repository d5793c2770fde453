"""Benchmark of the data-release pipeline: wall time and peak memory per detector-visit, 1 and 2 workers.

Usage::

    .venv/bin/python benchmarks/drp/bench_drp.py [--preset tiny] [--repo PATH] [--workers 1 2] [--out results.json]

Simulates the preset once (or uses ``--repo``), then for each worker count runs a full release on
a fresh copy of the repo as release ``bench`` (so no quantum is skipped) in a child process, sampling the resident memory
of that process and all its children (the Dask workers) every 0.2 s. Reports total wall time,
wall time per detector-visit, per-step times and the peak of the summed RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

CHILD = """
import json, sys
from pachon.pipelines.drp import run_release
if __name__ == "__main__":
    r = run_release(sys.argv[1], "bench", workers=int(sys.argv[2]), show_progress=False)
    print("RESULT" + json.dumps({"quanta": r.quanta, "processed": r.processed,
          "steps": r.step_seconds, "AM1": r.metrics["AM1"][0], "PA1": r.metrics["PA1"][0]}))
"""


def _peak_rss(proc: subprocess.Popen[str], stop: threading.Event, out: list[int]) -> None:
    peak = 0
    try:
        parent = psutil.Process(proc.pid)
        while not stop.is_set():
            total = 0
            try:
                for p in [parent, *parent.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            except psutil.Error:
                break
            peak = max(peak, total)
            time.sleep(0.2)
    finally:
        out.append(peak)


def run_once(repo: Path, workers: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench_drp_") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("catalog", "state"))
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(script), str(copy), str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        stop, peak = threading.Event(), []
        sampler = threading.Thread(target=_peak_rss, args=(proc, stop, peak))
        sampler.start()
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        line = next((x for x in stdout.splitlines() if x.startswith("RESULT")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"release run with {workers} workers failed (exit {proc.returncode})")
        result = json.loads(line[len("RESULT") :])
        n = int(result["quanta"])
        return {
            "workers": workers,
            "wall_s": round(wall, 1),
            "wall_per_detector_visit_s": round(wall / n, 3),
            "peak_rss_mib": round(peak[0] / 2**20, 1),
            "peak_rss_per_worker_mib": round(peak[0] / 2**20 / max(workers, 1), 1),
            **result,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--repo", type=Path, help="an already simulated repo (default: simulate the preset)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tmp = None
    repo = args.repo
    if repo is None:
        from pachon.pipelines.sim import simulate

        tmp = tempfile.mkdtemp(prefix="bench_drp_sim_")
        repo = Path(tmp) / "repo"
        simulate(repo, args.preset, seed=1, workers=2, show_progress=False)
    results = [run_once(repo, w) for w in args.workers]
    info = {"preset": args.preset, "machine": "2-core, 24 GiB", "runs": results}
    text = json.dumps(info, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
