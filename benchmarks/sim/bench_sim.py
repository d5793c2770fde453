#!/usr/bin/env python3
"""Benchmark the survey simulator: wall time, peak memory and disk for the ``tiny`` and ``small`` presets.

Each preset runs in a fresh subprocess (``pachon simulate``) into a temporary repo that
is deleted afterwards; peak memory is the largest *sum* of resident memory over the whole
process tree (main process and worker processes), sampled every 0.2 s. Usage::

    python benchmarks/sim/bench_sim.py              # tiny and small
    python benchmarks/sim/bench_sim.py tiny medium  # chosen presets
    python benchmarks/sim/bench_sim.py --workers 2 --keep /tmp/bench_repo tiny
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(preset: str, workers: int, keep: Path | None) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix=f"bench_sim_{preset}_"))
    repo = keep if keep is not None else base / "repo"
    command = [
        sys.executable, "-m", "pachon.cli", "simulate", "--repo", str(repo), "--preset", preset,
        "--seed", "1", "--workers", str(workers), "--quiet",
    ]  # fmt: skip
    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(ps))
        time.sleep(0.2)
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        print(output)
        raise SystemExit(f"pachon simulate --preset {preset} failed with exit code {proc.returncode}")
    size = disk_usage(repo)
    from pachon.pipelines.sim import preset as get_preset

    cfg = get_preset(preset)
    n_dv = cfg.camera.n_detectors * cfg.n_visits
    mpix = n_dv * cfg.camera.nx * cfg.camera.ny / 1e6
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak / 2**20, "disk_gb": size / 2**30, "detector_visits": n_dv,
            "mpix": mpix, "s_per_detector_visit": wall / n_dv}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("presets", nargs="*", default=["tiny", "small"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--keep", type=Path, default=None, help="write the (single) preset's repo here and keep it"
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; workers {args.workers}"
    )
    print(
        f"load average before: {os.getloadavg()[0]:.1f} (CPU s = whole process tree; wall s suffers under load)"
    )
    print(
        f"{'preset':8} {'det-visits':>10} {'Mpix':>8} {'wall s':>8} {'CPU s':>8} {'s/det-visit':>11} "
        f"{'peak RSS MB':>11} {'disk GB':>8}"
    )
    for name in args.presets:
        r = run(name, args.workers, args.keep)
        print(
            f"{name:8} {r['detector_visits']:>10.0f} {r['mpix']:>8.0f} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
            f"{r['s_per_detector_visit']:>11.2f} {r['peak_rss_mb']:>11.0f} {r['disk_gb']:>8.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
