#!/usr/bin/env python3
"""End-to-end alert latency: a visit's raws land → ``pachon prompt run --follow`` → a notebook consumer.

What runs (all real, on loopback; machine: 2 cores, 24 GiB):

* the repo's alert broker and schema registry (``BrokerSupervisor``, what ``pachon alerts broker`` runs);
* a notebook-style consumer in its own process (:class:`pachon.core.alerts.AlertConsumer`, user-
  prefixed group, already assigned before the first raw lands), recording when each alert arrives;
* ``pachon prompt run --follow --workers 2`` (the real CLI) watching the repo;
* the simulator releasing ``--visits`` tiny visits (4 detectors of 1k², seed 1) at ``--pace`` seconds
  per visit, detector by detector, as ``pachon simulate --release-pace`` does for live processing.

Figures:

* per alert, **receive time − landing time of its detector's raw file** (file mtime), and
  **receive time − landing time of the visit's last raw** (the visit is complete then; Rubin's
  60 s budget counts from the end of readout): p50, p95, max;
* per visit, **last alert published − last raw landed** (``producer_timestamp`` header), to compare
  with the issue's "a tiny visit's alerts published ≤ 60 s after its raw data lands", and the
  pipeline's own per-stage seconds from ``prompt_visit_summary``;
* load average and CPU seconds of the children (other work on the machine slows everything).

Producer throughput with real packets (≥ 500 alerts/s) and the packet size distribution are measured
by ``benchmarks/alerts/bench_alert_stream.py``; not repeated here.

The templates and the real/bogus model are built once into ``--workdir`` (``base``; reused by later
runs); each run copies it, marks the visits before the benchmark window as not to be processed,
removes the raws of the last ``--visits`` visits, and lets the simulator release them again.

Usage: python benchmarks/prompt/bench_latency.py [--visits 3] [--pace 20] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def prepare_base(base: Path) -> None:
    """Simulate ``tiny`` (seed 1), build its templates and train real/bogus, once."""
    marker = base / ".bench-ready"
    if marker.exists():
        return
    shutil.rmtree(base, ignore_errors=True)
    from pachon.pipelines.prompt.parallel import detector_map
    from pachon.pipelines.prompt.pipeline import build_templates
    from pachon.pipelines.prompt.training import train_from_truth
    from pachon.pipelines.sim import simulate

    t0 = time.perf_counter()
    simulate(base, "tiny", seed=1, workers=2, show_progress=False)
    with detector_map(2) as mapper:
        build_templates(base, map_fn=mapper)
        train_from_truth(base, map_fn=mapper, n_visits=1)
    marker.write_text(f"prepared in {time.perf_counter() - t0:.0f} s\n")
    print(f"prepared {base} in {time.perf_counter() - t0:.0f} s", flush=True)


def prepare_run(base: Path, dest: Path, n: int) -> list[int]:
    """Copy the base; earlier visits marked as outside the window; the last ``n`` visits made to land again.

    Works from a freshly prepared base and from an already processed repo (``--base``): the APDB,
    the alert archive and the catalog are left behind, and the window's summaries, prompt products
    and raws are removed, so the simulator writes the raws again and the follower processes them.
    """
    from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
    from pachon.pipelines.prompt.pipeline import SUMMARY_RUN, ensure_dataset_types, list_exposures

    def link_or_copy(src: str, dst: str) -> str:  # dataset files are immutable: share them with the base
        if src.endswith((".fits", ".parquet")):
            os.link(src, dst)
            return dst
        return str(shutil.copy2(src, dst))

    shutil.copytree(
        base,
        dest,
        ignore=shutil.ignore_patterns("apdb", "alerts", "catalog", "state"),
        copy_function=link_or_copy,
    )
    repo = DataRepository.open(dest, writeable=True)
    ensure_dataset_types(repo)
    ids = [e.id for e in list_exposures(repo)]
    window = ids[-n:]
    butler = repo.butler
    summaries = {
        int(r.dataId["visit"]): r
        for r in butler.registry.queryDatasets("prompt_visit_summary", collections=SUMMARY_RUN, instrument=INSTRUMENT)
    } if SUMMARY_RUN in set(butler.collections.query("*")) else {}  # fmt: skip
    for visit in ids[:-n]:
        if visit not in summaries:
            repo.put({"visit": visit, "skipped": "before the benchmark window"}, "prompt_visit_summary",
                     run=SUMMARY_RUN, visit=visit)  # fmt: skip
    drop = [summaries[v] for v in window if v in summaries]
    for name in ("visit_image", "source", "difference_image", "dia_source"):
        try:
            refs = butler.registry.queryDatasets(name, collections="Pachon/prompt/*", instrument=INSTRUMENT)
            drop += [r for r in refs if int(r.dataId["visit"]) in window]
        except Exception:  # never processed: nothing to drop
            pass
    drop += [
        r
        for r in butler.registry.queryDatasets("raw", collections=COLLECTIONS["raw"], instrument=INSTRUMENT)
        if int(r.dataId["exposure"]) in window
    ]
    butler.pruneDatasets(drop, disassociate=True, unstore=True, purge=True)
    return window


def consume(bootstrap: str, topic: str, registry: str, out: str, ready: Any, stop: Any) -> None:
    """The notebook: receive alerts as they come, note when (wall clock), write them at the end."""
    from pachon.core.alerts import AlertConsumer

    consumer = AlertConsumer(
        bootstrap, topic, group=f"bench-latency-{os.getpid()}", user="bench", from_beginning=True,
        registry_url=registry,
    )  # fmt: skip
    rows = []
    if not consumer.wait_until_assigned(60):
        raise RuntimeError(f"the consumer got no partitions of {topic} within 60 s")
    ready.set()
    while not stop.is_set():
        received = consumer.poll(0.2)
        if received is None:
            continue
        src = received.alert["diaSource"]
        rows.append(
            {
                "diaSourceId": received.diaSourceId,
                "visit": int(src["visit"]),
                "detector": int(src["detector"]),
                "received_at": received.received_at,
                "producer_timestamp_ms": received.producer_timestamp_ms,
            }
        )
    consumer.close()
    Path(out).write_text(json.dumps(rows))


def landing_times(repo_path: Path, visits: list[int]) -> dict[tuple[int, int], float]:
    """When each raw file of the window landed (mtime of the Butler's file)."""
    from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository

    repo = DataRepository.open(repo_path)
    out = {}
    for ref in repo.butler.registry.queryDatasets(
        "raw", collections=COLLECTIONS["raw"], instrument=INSTRUMENT
    ):
        visit, det = int(ref.dataId["exposure"]), int(ref.dataId["detector"])
        if visit in visits:
            out[(visit, det)] = Path(repo.butler.getURI(ref).ospath).stat().st_mtime
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=3, help="visits released and measured")
    parser.add_argument("--pace", type=float, default=20.0, help="seconds between released visits")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pachon-bench-latency")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="a tiny repo with templates (e.g. processed); default: prepared here",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args()

    from pachon.core.alerts.broker import free_port
    from pachon.services.alerts.supervisor import BrokerSupervisor

    base = args.base or args.workdir / "base"
    if args.base is None:
        prepare_base(base)
    args.workdir.mkdir(parents=True, exist_ok=True)
    run = args.workdir / f"run-{int(time.time())}"
    window = prepare_run(base, run, args.visits)
    print(f"benchmark window: visits {window} released every {args.pace:g} s into {run}", flush=True)

    supervisor = BrokerSupervisor(run, port=free_port(), registry_port=free_port())
    supervisor.start()
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    received_file = run / "received.json"
    consumer = ctx.Process(
        target=consume,
        args=(
            supervisor.bootstrap,
            supervisor.topic,
            supervisor.registry_url,
            str(received_file),
            ready,
            stop,
        ),
    )
    consumer.start()
    env = {k: v for k, v in os.environ.items() if k not in ("PACHON_KAFKA_BOOTSTRAP", "PACHON_CATALOG_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    follow_log = run / "follow.log"
    load_before = os.getloadavg()
    wall0 = time.perf_counter()
    follower = simulator = None
    try:
        assert ready.wait(60), "the consumer was not assigned partitions within 60 s"
        with follow_log.open("w") as out:
            follower = subprocess.Popen(
                [sys.executable, "-m", "pachon.cli", "prompt", "run", "--repo", str(run), "--follow",
                 "--poll", "0.5", "--workers", "2"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + args.timeout
        while "watching" not in follow_log.read_text():
            assert follower.poll() is None and time.monotonic() < deadline, follow_log.read_text()[-2000:]
            time.sleep(0.2)
        simulator = subprocess.Popen(
            [sys.executable, "-m", "pachon.cli", "simulate", "--repo", str(run), "--preset", "tiny", "--seed", "1",
             "--workers", "1", "--release-pace", str(args.pace), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        while follow_log.read_text().count("ppdb: ") < len(window):
            assert follower.poll() is None, follow_log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"not done within {args.timeout:.0f} s"
            time.sleep(0.5)
        simulator.wait(60)
        time.sleep(3.0)  # the last alerts reach the consumer
    finally:
        if follower is not None and follower.poll() is None:
            follower.send_signal(signal.SIGINT)
            try:
                follower.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(follower.pid, signal.SIGKILL)
        if simulator is not None and simulator.poll() is None:
            simulator.kill()
        stop.set()
        consumer.join(60)
        supervisor.stop()
    wall = time.perf_counter() - wall0
    load_after = os.getloadavg()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)

    landed = landing_times(run, window)
    visit_landed = {v: max(t for (vv, _), t in landed.items() if vv == v) for v in window}
    rows = json.loads(received_file.read_text())
    per_detector = [r["received_at"] - landed[(r["visit"], r["detector"])] for r in rows]
    per_visit = [r["received_at"] - visit_landed[r["visit"]] for r in rows]
    ids = [r["diaSourceId"] for r in rows]

    from pachon.core.repo import DataRepository

    repo = DataRepository.open(run)
    visits_out = []
    for v in window:
        mine = [r for r in rows if r["visit"] == v]
        summary = repo.get("prompt_visit_summary", visit=v, collections="Pachon/prompt/summaries")
        published = max((r["producer_timestamp_ms"] or 0) / 1000 for r in mine) if mine else float("nan")
        visits_out.append(
            {
                "visit": v,
                "alerts_received": len(mine),
                "alerts_built": (summary.get("alerts") or {}).get("built"),
                "last_alert_published_after_last_raw_s": published - visit_landed[v],
                "last_alert_received_after_last_raw_s": max(r["received_at"] for r in mine) - visit_landed[v]
                if mine
                else float("nan"),
                "pipeline_seconds": summary.get("seconds"),
                "stage_seconds": summary.get("stage_seconds"),
            }
        )
    figures = {
        "machine": "2 cores, 24 GiB",
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "visits": len(window),
        "pace_s": args.pace,
        "alerts": len(rows),
        "duplicates_received": len(ids) - len(set(ids)),
        "latency_from_detector_raw_s": {
            "p50": _pct(per_detector, 50), "p95": _pct(per_detector, 95), "max": max(per_detector, default=float("nan")),
        },
        "latency_from_visit_complete_s": {
            "p50": _pct(per_visit, 50), "p95": _pct(per_visit, 95), "max": max(per_visit, default=float("nan")),
        },
        "per_visit": visits_out,
        "all_visits_published_within_60s": all(
            v["last_alert_published_after_last_raw_s"] <= 60 for v in visits_out if v["alerts_received"]
        ),
        "wall_s": wall,
        "children_cpu_s": children.ru_utime + children.ru_stime,
    }  # fmt: skip
    print(json.dumps(figures, indent=2, default=str))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    print(
        f"\n{len(rows)} alerts from {len(window)} tiny visits; raw landed → notebook received: "
        f"p50 {figures['latency_from_visit_complete_s']['p50']:.1f} s, "
        f"p95 {figures['latency_from_visit_complete_s']['p95']:.1f} s (from the visit's last raw); "
        f"p95 {figures['latency_from_detector_raw_s']['p95']:.1f} s (from the alert's own detector raw). "
        f"Load average {load_before[0]:.1f} → {load_after[0]:.1f}."
    )
    shutil.rmtree(run, ignore_errors=True)
    return 0 if rows and not figures["duplicates_received"] else 1


if __name__ == "__main__":
    sys.exit(main())
