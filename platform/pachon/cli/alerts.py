"""``pachon alerts``: run the alert broker, watch the stream, replay a night from the archive."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

alerts_app = typer.Typer(
    help="""The alert stream: an embedded Kafka broker with a schema registry, and its archive.

Examples:

  pachon alerts broker --repo demo/repo                    # broker on 9092, registry on 8081
  pachon alerts tail --repo demo/repo --from-beginning --max 10
  pachon alerts replay --repo demo/repo --night 2026-11-23

Producers and consumers find the broker through PACHON_KAFKA_BOOTSTRAP, else through
<repo>/state/kafka.json written by `pachon alerts broker`.
""",
    no_args_is_help=True,
)


def _default_repo() -> Path:
    from pachon.core.settings import get_settings

    return get_settings().repo


RepoOption = Annotated[
    Path | None, typer.Option("--repo", help="The data repository (default settings `repo`).")
]


@alerts_app.command("broker")
def broker(
    repo: RepoOption = None,
    port: Annotated[int, typer.Option(help="Kafka port on 127.0.0.1.")] = 9092,
    registry_port: Annotated[int, typer.Option(help="Schema registry HTTP port on 127.0.0.1.")] = 8081,
    max_memory_gb: Annotated[
        float, typer.Option(help="Rotate the in-memory broker when it uses more than this (GB).")
    ] = 4.0,
) -> None:
    """Run the embedded Kafka broker (Tansu) and the read-only schema registry until Ctrl-C.

    Creates the topic `<alerts.topic_prefix>-v<major>` (settings alerts.partitions,
    alerts.retention_ms), writes <repo>/state/kafka.json so `pachon prompt run`, notebooks and
    `pachon alerts tail` find it, and restarts the broker if it dies, re-publishing the alerts
    archived within the retention period (the broker keeps messages in memory only).
    Retention is enforced by rotation: after alerts.retention_ms, or above --max-memory-gb,
    the broker is replaced by a fresh one holding only the alerts archived within retention;
    consumers (pachon.core.alerts.AlertConsumer) notice and deduplicate.

    Example:

      pachon alerts broker --repo demo/repo --port 9092 --registry-port 8081

    Then in Python:

      from confluent_kafka.schema_registry import SchemaRegistryClient
      SchemaRegistryClient({"url": "http://127.0.0.1:8081"}).get_schema(1101)
    """
    from pachon.core.alerts.broker import read_broker_info
    from pachon.services.alerts.supervisor import BrokerSupervisor

    repo = repo or _default_repo()
    if not repo.is_dir():
        typer.echo(
            f"error: no data repository at {repo}; create it with `pachon repo create {repo}`", err=True
        )
        raise typer.Exit(2)
    running = read_broker_info(repo)
    if running is not None:
        typer.echo(
            f"error: an alert broker already runs for {repo} at {running.bootstrap} (pid {running.pid})",
            err=True,
        )
        raise typer.Exit(2)
    supervisor = BrokerSupervisor(
        repo, port=port, registry_port=registry_port, max_memory_bytes=int(max_memory_gb * 1e9)
    )

    def _stop(signum: int, frame: Any) -> None:
        supervisor._stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    supervisor.start()
    typer.echo(
        f"alert broker   {supervisor.bootstrap}  (topic {supervisor.topic}, {supervisor.partitions} partitions)"
    )
    typer.echo(f"schema registry {supervisor.registry_url}/subjects")
    typer.echo(f"state          {repo / 'state' / 'kafka.json'}   (Ctrl-C to stop)")
    try:
        supervisor.wait()
    finally:
        supervisor.stop()
        typer.echo("alert broker stopped")


@alerts_app.command("tail")
def tail(
    repo: RepoOption = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest retained alert, not at new ones.")
    ] = False,
    max_alerts: Annotated[int | None, typer.Option("--max", help="Stop after N alerts.")] = None,
    group: Annotated[str, typer.Option(help="Consumer group suffix; your user name is prefixed.")] = "tail",
    idle: Annotated[float | None, typer.Option(help="Stop after this many seconds without an alert.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per alert (without cutouts).")
    ] = False,
) -> None:
    """Print alerts as they arrive, decoded with the schema registry, one line each.

    Examples:

      pachon alerts tail --repo demo/repo                       # new alerts, until Ctrl-C
      pachon alerts tail --repo demo/repo --from-beginning --max 20
      pachon alerts tail --json --max 1 | jq .diaSource.psfFlux
    """
    from pachon.core.alerts.consumer import AlertConsumer

    repo = repo or _default_repo()
    consumer = AlertConsumer(repo=repo, group=group, from_beginning=from_beginning)
    if not as_json:
        typer.echo(f"# {consumer.topic} on {consumer.bootstrap}, group {consumer.group_id}", err=True)
        typer.echo(
            f"{'diaSourceId':>20} {'band':>4} {'ra':>10} {'dec':>10} {'psfFlux[nJy]':>13} {'snr':>7} "
            f"{'reliab':>6} {'latency':>8}"
        )
    try:
        for received in consumer.stream(max_alerts=max_alerts, idle_timeout=idle):
            alert = received.alert
            if as_json:
                slim = {k: v for k, v in alert.items() if not k.startswith("cutout")}
                typer.echo(json.dumps(slim, default=str))
                continue
            src = alert["diaSource"]
            latency = received.latency_s
            typer.echo(
                f"{alert['diaSourceId']:>20} {src.get('band') or '-':>4} {src['ra']:>10.5f} {src['dec']:>10.5f} "
                f"{_fmt(src.get('psfFlux'), 13, 1)} {_fmt(src.get('snr'), 7, 1)} {_fmt(src.get('reliability'), 6, 2)} "
                f"{_fmt(latency, 7, 2)}s"
            )
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


@alerts_app.command("replay")
def replay(
    night: Annotated[
        str, typer.Option(help="Observing night YYYY-MM-DD (the date of TAI − 12 h at the site).")
    ],
    repo: RepoOption = None,
) -> None:
    """Re-publish every archived alert of one night (consumers deduplicate on diaSourceId).

    Example:

      pachon alerts replay --repo demo/repo --night 2026-11-23
    """
    from datetime import date

    from pachon.core.alerts.producer import AlertProducer

    try:
        date.fromisoformat(night)
    except ValueError:
        typer.echo(f"error: --night {night!r} is not a date YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
    repo = repo or _default_repo()
    started = time.perf_counter()
    producer = AlertProducer.for_repo(repo)
    report = producer.replay(night)
    producer.close()
    typer.echo(f"night {night}: {report} (total {time.perf_counter() - started:.1f} s)")
    if report.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``pachon alerts …`` to the main CLI."""
    app.add_typer(alerts_app, name="alerts")
