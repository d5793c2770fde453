"""Benchmark of the data-release pipeline: wall time and peak memory per detector-visit, 1 and 2 workers.

Usage::

    .venv/bin/python benchmarks/drp/bench_drp.py [--preset tiny] [--repo PATH] [--workers 1 2] [--out results.json]
    .venv/bin/python benchmarks/drp/bench_drp.py --scaling tiny.json small.json   # tiny → small summary

Simulates the preset once (or uses ``--repo``), then for each worker count runs a full release on
a fresh copy of the repo as release ``bench`` (so no quantum is skipped) in a child process, sampling the resident memory
of that process and all its children (the Dask workers) every 0.2 s. Reports total wall time,
wall time per detector-visit (and per megapixel, since presets differ in detector size), CPU time
of the whole process tree (``RUSAGE_CHILDREN``: the Dask workers are waited for), per-step times,
the peak of the summed RSS and the load average before and after (the machine is shared).

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


def run_once(repo: Path, workers: int, link: bool = True, tmp_root: str | None = None) -> dict[str, object]:
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
        proc = subprocess.Popen(
            [sys.executable, str(script), str(copy), str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
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
            raise RuntimeError(f"release run with {workers} workers failed (exit {proc.returncode})")
        result = json.loads(line[len("RESULT") :])
        n = int(result["quanta"])
        mp = _megapixels(repo)
        return {
            "workers": workers,
            "quanta": n,
            "detector_megapixels": mp,
            "wall_s": round(wall, 1),
            "wall_per_detector_visit_s": round(wall / n, 3),
            "wall_per_megapixel_s": round(wall / n / mp, 3) if mp == mp else None,
            "cpu_s": round(cpu, 1),
            "cpu_per_detector_visit_s": round(cpu / n, 3),
            "peak_rss_mib": round(peak[0] / 2**20, 1),
            "peak_rss_per_worker_mib": round(peak[0] / 2**20 / max(workers, 1), 1),
            "load_before": [round(x, 1) for x in load_before],
            "load_after": [round(x, 1) for x in os.getloadavg()],
            **result,
        }


def scaling(a_path: Path, b_path: Path) -> dict[str, object]:
    """Ratios small/tiny per worker count: per detector-visit, and per detector-visit per megapixel."""
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    out: dict[str, object] = {"from": a["preset"], "to": b["preset"], "per_workers": {}}
    for ra in a["runs"]:
        rb = next((r for r in b["runs"] if r["workers"] == ra["workers"]), None)
        if rb is None:
            continue
        mp = (rb.get("detector_megapixels") or 1.0) / (ra.get("detector_megapixels") or 1.0)
        out["per_workers"][str(ra["workers"])] = {  # type: ignore[index]
            "quanta": [ra["quanta"], rb["quanta"]],
            "wall_ratio": round(rb["wall_s"] / ra["wall_s"], 2),
            "wall_per_detector_visit_ratio": round(
                rb["wall_per_detector_visit_s"] / ra["wall_per_detector_visit_s"], 2
            ),
            "wall_per_detector_visit_per_megapixel_ratio": round(
                rb["wall_per_detector_visit_s"] / ra["wall_per_detector_visit_s"] / mp, 2
            ),
            "cpu_per_detector_visit_ratio": round(
                rb["cpu_per_detector_visit_s"] / ra["cpu_per_detector_visit_s"], 2
            )
            if ra.get("cpu_per_detector_visit_s")
            else None,
            "peak_rss_ratio": round(rb["peak_rss_mib"] / ra["peak_rss_mib"], 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--repo", type=Path, help="an already simulated repo (default: simulate the preset)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-link", action="store_true", help="copy the repo's files instead of hard-linking")
    ap.add_argument("--tmp", help="folder for the repo copies (default: the system's temporary folder)")
    ap.add_argument("--scaling", type=Path, nargs=2, metavar=("SMALLER.json", "LARGER.json"))
    args = ap.parse_args()
    if args.scaling:
        print(json.dumps(scaling(*args.scaling), indent=2))
        return
    tmp = None
    repo = args.repo
    if repo is None:
        from pachon.pipelines.sim import simulate

        tmp = tempfile.mkdtemp(prefix="bench_drp_sim_")
        repo = Path(tmp) / "repo"
        simulate(repo, args.preset, seed=1, workers=2, show_progress=False)
    results = [run_once(repo, w, link=not args.no_link, tmp_root=args.tmp) for w in args.workers]
    info = {"preset": args.preset, "machine": "2-core, 24 GiB", "runs": results}
    text = json.dumps(info, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
