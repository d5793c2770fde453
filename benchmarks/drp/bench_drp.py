"""Benchmark of the data-release pipeline: wall time and peak memory per detector-visit, 1 and 2 workers.

Usage::

    .venv/bin/python benchmarks/drp/bench_drp.py [--preset tiny] [--repo PATH] [--workers 1 2] [--out results.json]
    .venv/bin/python benchmarks/drp/bench_drp.py --preset small --repo /work/small/repo --visits 6 12 --workers 1 2
    .venv/bin/python benchmarks/drp/bench_drp.py --scaling tiny.json small.json   # tiny → small summary

Simulates the preset once (or uses ``--repo``), then for each worker count runs a full release on
a fresh copy of the repo as release ``bench`` (so no quantum is skipped) in a child process, sampling the resident memory
of that process and all its children (the Dask workers) every 0.2 s. Reports total wall time,
wall time per detector-visit (and per megapixel, since presets differ in detector size), CPU time
of the whole process tree (``RUSAGE_CHILDREN``: the Dask workers are waited for), per-step times,
the peak of the summed RSS and the load average before and after (the machine is shared).

Memory per detector-visit: the release records, per step, the peak RSS of the whole process tree
and of the largest single process (``step_peak_worker_rss_mib``: one Dask worker, or the driver
with 1 worker); the single-visit step's figure is the peak memory a detector-visit needs, and
the coadd step's the peak a (patch, band) coadd needs. ``--visits N …`` runs partial releases of
N visits (evenly spaced in time, so every band and epoch range stays represented) to measure how
the release scales with the number of visits at a fixed detector size.

The copy hard-links the repo's files except its SQLite registry (``--link``, the default): the
Butler never rewrites a stored file in place, and a ``small`` repo is 8 GB. ``--scaling`` reads
two result files and prints how wall time, CPU time and peak memory per detector-visit scale
between them (linear in visits means constant per detector-visit at a fixed detector size).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
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
    visits = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    r = run_release(sys.argv[1], "bench", workers=int(sys.argv[2]), show_progress=False, visits=visits)
    print("RESULT" + json.dumps({"quanta": r.quanta, "processed": r.processed, "failures": len(r.failures),
          "visits": r.n_visits, "coadds": r.coadds_built, "patches": r.patches_measured,
          "objects": r.n_objects, "forced": r.n_forced,
          "steps": r.step_seconds, "step_peak_rss_mib": r.step_peak_rss_mib,
          "step_peak_worker_rss_mib": r.step_peak_worker_rss_mib,
          "AM1": r.metrics.get("AM1", [None])[0], "PA1": r.metrics.get("PA1", [None])[0]}))
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


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link stored files; copy the registry (SQLite is written in place)."""
    if src.endswith((".sqlite3", ".sqlite3-journal", ".sqlite3-wal", ".yaml")):
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def _megapixels(repo: Path) -> float:
    """Pixels of one detector (MP), from the repo's simulation config (NaN if unknown)."""
    try:
        from pachon.core.repo import COLLECTIONS, DataRepository

        sim = DataRepository.open(str(repo)).butler.get("sim_config", collections=COLLECTIONS["truth"])
        cam = sim.get("config", sim)["camera"]
        return float(cam["nx"]) * float(cam["ny"]) / 1e6
    except Exception:
        return float("nan")


def spaced_visits(repo: Path, n: int) -> list[int]:
    """``n`` of the repo's visits evenly spaced in time (first and last included)."""
    from pachon.core.repo import DataRepository
    from pachon.pipelines.prompt.pipeline import list_exposures

    ids = [e.id for e in list_exposures(DataRepository.open(str(repo)))]
    if n >= len(ids):
        return ids
    return [ids[round(i * (len(ids) - 1) / (n - 1))] for i in range(n)] if n > 1 else ids[:1]


def run_once(
    repo: Path,
    workers: int,
    link: bool = True,
    tmp_root: str | None = None,
    visits: list[int] | None = None,
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench_drp_", dir=tmp_root) as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(
            repo,
            copy,
            ignore=shutil.ignore_patterns("catalog", "state", "runs"),
            copy_function=_link_or_copy if link else shutil.copy2,
        )
        load_before = os.getloadavg()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        script = Path(tmp) / "child.py"
        script.write_text(CHILD)
        t0 = time.perf_counter()
        log = Path(tmp) / "child.err"
        argv = [sys.executable, str(script), str(copy), str(workers)]
        if visits is not None:
            argv.append(json.dumps(visits))
        with log.open("w") as err:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        stop, peak = threading.Event(), list[int]()
        sampler = threading.Thread(target=_peak_rss, args=(proc, stop, peak))
        sampler.start()
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        stop.set()
        sampler.join()
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        line = next((x for x in stdout.splitlines() if x.startswith("RESULT")), None)
        if proc.returncode != 0 or line is None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"release run with {workers} workers failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(line[len("RESULT") :])
        n = int(result["quanta"])
        mp = _megapixels(repo)
        steps = result["steps"]
        # one worker's peak per step: the largest Dask worker, or the driver itself when in-process
        worker_peak = result["step_peak_worker_rss_mib"] if workers > 1 else result["step_peak_rss_mib"]
        return {
            "workers": workers,
            "n_visits": len(visits) if visits is not None else None,
            "quanta": n,
            "detector_megapixels": mp,
            "wall_s": round(wall, 1),
            "wall_per_detector_visit_s": round(wall / n, 3),
            "wall_per_megapixel_s": round(wall / n / mp, 3) if mp == mp else None,
            "cpu_s": round(cpu, 1),
            "cpu_per_detector_visit_s": round(cpu / n, 3),
            "peak_rss_mib": round(peak[0] / 2**20, 1),
            "peak_rss_per_worker_mib": round(peak[0] / 2**20 / max(workers, 1), 1),
            "single_visit_s_per_detector_visit": round(steps.get("single_visit", 0) / n, 3),
            "single_visit_peak_worker_rss_mib": worker_peak.get("single_visit"),
            "coadd_s_per_coadd": round(steps.get("coadd", 0) / max(int(result["coadds"]), 1), 3),
            "coadd_peak_worker_rss_mib": worker_peak.get("coadd"),
            "forced_s_per_detector_visit": round(steps.get("forced", 0) / n, 3),
            "load_before": [round(x, 1) for x in load_before],
            "load_after": [round(x, 1) for x in os.getloadavg()],
            **result,
        }


def _ratio(x: object, y: object) -> float | None:
    if not isinstance(x, int | float) or not isinstance(y, int | float) or not y:
        return None
    return round(float(x) / float(y), 2)


def scaling(paths: list[Path]) -> dict[str, object]:
    """Per worker count, every run of ``paths`` and its ratios to the first (smallest) run.

    Linear in visits means the per-detector-visit figures stay constant (ratio ≈ 1) at a fixed
    detector size; between presets with different detector sizes the per-megapixel ratio is the
    one to read. Memory: the peak of one worker should not grow with the number of visits.
    """
    runs = []
    for path in paths:
        info = json.loads(path.read_text())
        for r in info["runs"]:
            runs.append({"preset": info["preset"], **r})
    out: dict[str, object] = {}
    for workers in sorted({int(r["workers"]) for r in runs}):
        rows = sorted(
            (r for r in runs if int(r["workers"]) == workers),
            key=lambda r: (r.get("detector_megapixels") or 0, r["quanta"]),
        )
        base = rows[0]
        mp0 = base.get("detector_megapixels") or 1.0
        table = []
        for r in rows:
            mp = (r.get("detector_megapixels") or 1.0) / mp0
            table.append(
                {
                    "preset": r["preset"],
                    "visits": r.get("n_visits") or r.get("visits"),
                    "quanta": r["quanta"],
                    "wall_s": r["wall_s"],
                    "wall_per_detector_visit_s": r["wall_per_detector_visit_s"],
                    "cpu_per_detector_visit_s": r.get("cpu_per_detector_visit_s"),
                    "peak_rss_mib": r["peak_rss_mib"],
                    "single_visit_peak_worker_rss_mib": r.get("single_visit_peak_worker_rss_mib"),
                    "coadd_peak_worker_rss_mib": r.get("coadd_peak_worker_rss_mib"),
                    "load_before": r.get("load_before"),
                    "wall_ratio": _ratio(r["wall_s"], base["wall_s"]),
                    "quanta_ratio": _ratio(r["quanta"], base["quanta"]),
                    "wall_per_detector_visit_ratio": _ratio(
                        r["wall_per_detector_visit_s"], base["wall_per_detector_visit_s"]
                    ),
                    "cpu_per_detector_visit_ratio": _ratio(
                        r.get("cpu_per_detector_visit_s"), base.get("cpu_per_detector_visit_s")
                    ),
                    "cpu_per_detector_visit_per_megapixel_ratio": _ratio(
                        r.get("cpu_per_detector_visit_s"), (base.get("cpu_per_detector_visit_s") or 0) * mp
                    ),
                    "peak_rss_ratio": _ratio(r["peak_rss_mib"], base["peak_rss_mib"]),
                }
            )
        out[str(workers)] = table
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--repo", type=Path, help="an already simulated repo (default: simulate the preset)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-link", action="store_true", help="copy the repo's files instead of hard-linking")
    ap.add_argument("--tmp", help="folder for the repo copies (default: the system's temporary folder)")
    ap.add_argument(
        "--visits", type=int, nargs="+", help="partial releases of N evenly spaced visits (default: all)"
    )
    ap.add_argument("--scaling", type=Path, nargs="+", metavar="RESULTS.json", help="summarise result files")
    args = ap.parse_args()
    if args.scaling:
        print(json.dumps(scaling(args.scaling), indent=2))
        return
    tmp = None
    repo = args.repo
    if repo is None:
        from pachon.pipelines.sim import simulate

        tmp = tempfile.mkdtemp(prefix="bench_drp_sim_")
        repo = Path(tmp) / "repo"
        simulate(repo, args.preset, seed=1, workers=2, show_progress=False)
    subsets: list[list[int] | None] = [spaced_visits(repo, n) for n in args.visits] if args.visits else [None]
    results = []
    for visits in subsets:
        for w in args.workers:
            results.append(run_once(repo, w, link=not args.no_link, tmp_root=args.tmp, visits=visits))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress: one line per run
    info = {"preset": args.preset, "machine": "2-core, 24 GiB", "runs": results}
    text = json.dumps(info, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
