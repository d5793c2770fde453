"""Alert stream benchmark: producer throughput with real packets, packet sizes, end-to-end latency.

Run:  .venv/bin/python benchmarks/alerts/bench_alert_stream.py [--alerts 2000] [--json out.json]

What is measured (embedded Tansu broker on loopback, started here on free ports):

1. **Packet building** (not the producer's cost, reported for the prompt pipeline's budget):
   ``make_cutouts`` (three FITS stamps) and ``build_alert`` per alert.
2. **Packet size**: the framed Kafka value (Confluent header + Avro with 3 FITS cutouts, 5
   previous DiaSources and 5 forced points), p50/p95/max bytes. Footprints are drawn from a
   mix (70% 30 px, 20% 50 px, 10% 102 px) so the distribution is not one number.
3. **Producer throughput**: ``AlertProducer.publish`` of the prebuilt packets in per-detector
   batches, with the archive (fsynced Parquet before publishing, as in production) and without.
4. **End-to-end latency**: a consumer in another process (``AlertConsumer``, already assigned)
   receives alerts published at a steady pace (``--latency-batch`` alerts every 0.25 s, default
   200 alerts/s, near Rubin's ~250/s nightly average, DMTN-028); latency
   is consumer receipt time minus the ``producer_timestamp`` header (set when the producer
   enqueues the message), p50/p95.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pachon.core.alerts import AlertArchive, AlertConsumer, AlertProducer, encode_alert
from pachon.core.alerts.broker import EmbeddedBroker, ensure_topic, free_port
from pachon.core.alerts.samples import sample_visit

BBOX_MIX = (30,) * 7 + (50,) * 2 + (102,)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _consumer_process(bootstrap: str, topic: str, expected: int, ready: Any, out: Any) -> None:
    consumer = AlertConsumer(bootstrap, topic, group="bench-latency", user="bench", from_beginning=False)
    # Join the group and get partitions before the producer starts (Tansu: ~session timeout / 2).
    consumer.poll(8.0)
    ready.set()
    latencies: list[float] = []
    deadline = time.monotonic() + 120
    while len(latencies) < expected and time.monotonic() < deadline:
        received = consumer.poll(1.0)
        if received is not None and received.latency_s is not None:
            latencies.append(received.latency_s)
    consumer.close()
    out.send(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=2000, help="alerts per throughput run (default 2000)")
    parser.add_argument("--per-detector", type=int, default=250, help="alerts per publish batch")
    parser.add_argument("--latency-alerts", type=int, default=1000)
    parser.add_argument(
        "--latency-batch",
        type=int,
        default=50,
        help="alerts published every 0.25 s in the latency run (default 50 = 200/s)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    detectors = max(1, args.alerts // args.per_detector)
    t0 = time.perf_counter()
    visits = [
        sample_visit(args.per_detector, detector=d, history=5, cutouts=True, bbox_sizes=BBOX_MIX)
        for d in range(detectors)
    ]
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    batches = [v.alerts() for v in visits]
    t_build = time.perf_counter() - t0
    alerts = [a for batch in batches for a in batch]
    sizes = [len(encode_alert(a)) for a in alerts]

    figures: dict[str, Any] = {
        "machine": f"{platform.machine()}, {mp.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_1min_at_start": os.getloadavg()[0],  # other work on the machine skews figures
        "alerts": len(alerts),
        "cutouts_ms_per_alert": 1000 * t_sample / len(alerts),  # includes the synthetic images
        "build_alert_ms_per_alert": 1000 * t_build / len(alerts),
        "packet_bytes_p50": _pct(sizes, 50),
        "packet_bytes_p95": _pct(sizes, 95),
        "packet_bytes_max": max(sizes),
        "packet_bytes_mean": statistics.fmean(sizes),
    }

    with tempfile.TemporaryDirectory() as tmp:
        broker = EmbeddedBroker(free_port(), log_path=Path(tmp) / "tansu.log")
        broker.start()
        try:
            for label, archive in (
                ("no_archive", None),
                ("with_archive", AlertArchive(Path(tmp) / "archive")),
            ):
                topic = f"bench-{label}-v11"
                ensure_topic(broker.bootstrap, topic, partitions=4, retention_ms=3_600_000)
                producer = AlertProducer(broker.bootstrap, topic, archive=archive, create_topic=False)
                producer.publish(batches[0][:20])  # connect, metadata
                t0 = time.perf_counter()
                delivered = 0
                for batch in batches:
                    report = producer.publish(batch)
                    assert report.ok, report.failed[:3]
                    delivered += report.delivered
                elapsed = time.perf_counter() - t0
                producer.close()
                figures[f"producer_{label}_alerts_per_s"] = delivered / elapsed
                figures[f"producer_{label}_MB_per_s"] = sum(sizes) / elapsed / 1e6

            # End-to-end latency at a paced rate, consumer in another process.
            topic = "bench-latency-v11"
            ensure_topic(broker.bootstrap, topic, partitions=4, retention_ms=3_600_000)
            ctx = mp.get_context("spawn")
            ready = ctx.Event()
            parent, child = ctx.Pipe()
            n_latency = min(args.latency_alerts, len(alerts))
            proc = ctx.Process(
                target=_consumer_process, args=(broker.bootstrap, topic, n_latency, ready, child)
            )
            proc.start()
            if not ready.wait(60):
                raise SystemExit("the latency consumer did not start")
            time.sleep(1.0)
            producer = AlertProducer(broker.bootstrap, topic, create_topic=False)
            sent = 0
            step = args.latency_batch
            while sent < n_latency:
                started = time.perf_counter()
                producer.publish(alerts[sent : min(sent + step, n_latency)])
                sent += step
                time.sleep(max(0.0, 0.25 - (time.perf_counter() - started)))
            producer.close()
            latencies = parent.recv() if parent.poll(130) else []
            proc.join(10)
            figures["latency_alerts"] = len(latencies)
            figures["latency_offered_alerts_per_s"] = step / 0.25
            if latencies:
                figures["latency_ms_p50"] = 1000 * _pct(latencies, 50)
                figures["latency_ms_p95"] = 1000 * _pct(latencies, 95)
                figures["latency_ms_max"] = 1000 * max(latencies)
        finally:
            broker.stop()

    width = max(len(k) for k in figures)
    for key, value in figures.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
