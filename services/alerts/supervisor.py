"""``pachon alerts broker``: run and watch the embedded broker and the schema registry.

The supervisor

1. starts Tansu on 127.0.0.1:``port`` (in-memory storage, a fresh cluster ID per start);
2. creates the alert topic (settings ``alerts.partitions``, ``alerts.retention_ms``) and
   publishes the alerts archived within the retention period (including any archived while no
   broker ran);
3. serves the read-only schema registry on 127.0.0.1:``registry_port`` (uvicorn in a thread);
4. writes ``<repo>/state/kafka.json`` (bootstrap, registry URL, topic, cluster ID, pid) so
   producers and consumers of the repo find them;
5. checks the broker every ``check_interval`` seconds; when it has died it is started again on
   the same port, the topic recreated, and every alert archived within the retention window
   re-published from the archive, since the new broker remembers nothing. Consumers notice
   the new cluster ID and re-read; they deduplicate on ``diaSourceId``.

6. enforces the topic's **retention**, which Tansu's in-memory engine does not (measured: it
   keeps records past ``retention.ms`` and answers DeleteRecords with a dropped connection): once
   the broker has run longer than the retention period, or its resident memory exceeds
   ``max_memory_bytes``, it is *rotated*, i.e. replaced by a fresh broker holding only the alerts
   archived within the retention period. The broker therefore holds between one and two
   retention periods of alerts, and consumers see a rotation exactly as a restart.

``stop()`` (or SIGINT/SIGTERM in the CLI) stops both and removes ``kafka.json``.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pachon.core.alerts.archive import AlertArchive
from pachon.core.alerts.broker import BrokerInfo, EmbeddedBroker, ensure_topic, write_broker_info
from pachon.core.alerts.producer import AlertProducer, PublishReport
from pachon.core.alerts.schema import topic_name
from pachon.core.logging import get_logger

__all__ = ["BrokerSupervisor"]

log = get_logger(__name__)


class BrokerSupervisor:
    """The embedded broker, the registry and the restart-with-replay loop (see the module docstring).

    Examples
    --------
    >>> supervisor = BrokerSupervisor(Path("demo/repo"), port=9092, registry_port=8081)
    >>> supervisor.start()
    >>> supervisor.bootstrap, supervisor.registry_url
    ('127.0.0.1:9092', 'http://127.0.0.1:8081')
    >>> supervisor.stop()
    """

    def __init__(
        self,
        repo: Path,
        *,
        port: int,
        registry_port: int,
        topic: str | None = None,
        partitions: int | None = None,
        retention_ms: int | None = None,
        check_interval: float = 1.0,
        write_info: bool = True,
        max_memory_bytes: int | None = 4_000_000_000,
    ) -> None:
        from pachon.core.settings import get_settings

        settings = get_settings().alerts
        self.repo = Path(repo)
        self.topic = topic or topic_name(settings.topic_prefix)
        self.partitions = partitions or settings.partitions
        self.retention_ms = retention_ms or settings.retention_ms
        self.registry_port = registry_port
        self.check_interval = check_interval
        self.write_info = write_info
        self.archive = AlertArchive.for_repo(self.repo)
        self.broker = EmbeddedBroker(port, log_path=self.repo / "state" / "logs" / "tansu.log")
        self.max_memory_bytes = max_memory_bytes
        self.restarts = 0
        self.rotations = 0
        self._broker_started = 0.0
        self.last_replay: PublishReport | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._server: object | None = None
        self._server_thread: threading.Thread | None = None
        self._topic_prefix = self.topic.rsplit("-v", 1)[0]

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    def start(self) -> None:
        """Start broker and registry, replay the retained archive, write ``kafka.json``, begin watching.

        The replay at start gives a broker started after a reboot the alerts it should hold, and
        publishes those archived while no broker ran (``publish_alerts`` archives only then).
        """
        self._start_broker()
        self._start_registry()
        report = self.replay_retained()
        if report.submitted:
            log.info("replayed the archive into the new broker: %s", report)
        self._write_info()
        self._watcher = threading.Thread(target=self._watch, name="alerts-broker-watch", daemon=True)
        self._watcher.start()

    def _start_broker(self) -> None:
        self.broker.start()
        self._broker_started = time.monotonic()
        ensure_topic(self.bootstrap, self.topic, partitions=self.partitions, retention_ms=self.retention_ms)

    def _write_info(self) -> None:
        if not self.write_info:
            return
        write_broker_info(
            self.repo,
            BrokerInfo(
                bootstrap=self.bootstrap,
                registry_url=self.registry_url,
                topic=self.topic,
                cluster_id=self.broker.cluster_id,
                pid=os.getpid(),
                started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        )

    def _start_registry(self) -> None:
        import uvicorn

        from pachon.services.alerts.main import create_app

        config = uvicorn.Config(
            create_app(self._topic_prefix),
            host="127.0.0.1",
            port=self.registry_port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,  # clients keep connections alive; do not wait for them on stop
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="alerts-registry", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the schema registry could not listen on 127.0.0.1:{self.registry_port}; "
                    "choose another --registry-port"
                )
            time.sleep(0.02)
        self._server, self._server_thread = server, thread

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                if not self.broker.alive():
                    log.warning("the alert broker died; restarting it and replaying the archive")
                    self.restart()
                    continue
                reason = self.rotation_reason()
                if reason:
                    log.info("rotating the alert broker: %s", reason)
                    self.rotate()
            except Exception:
                log.exception("restarting the alert broker failed; retrying in %.0f s", self.check_interval)

    def broker_memory_bytes(self) -> int | None:
        """Resident memory of the broker process (Linux ``/proc``; ``None`` elsewhere)."""
        process = self.broker.process
        if process is None:
            return None
        try:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None

    def rotation_reason(self) -> str | None:
        """Why the broker should be replaced by one holding only retained alerts, or ``None``."""
        age_ms = (time.monotonic() - self._broker_started) * 1000
        if age_ms > self.retention_ms:
            return f"it has held alerts for {age_ms / 1000:.0f} s, longer than the retention of {self.retention_ms / 1000:.0f} s"
        rss = self.broker_memory_bytes()
        if self.max_memory_bytes and rss and rss > self.max_memory_bytes:
            return (
                f"it uses {rss / 1e9:.1f} GB, more than {self.max_memory_bytes / 1e9:.1f} GB "
                "(lower alerts.retention_ms if this repeats)"
            )
        return None

    def restart(self) -> PublishReport:
        """Start a fresh broker after a crash and re-publish what it should hold."""
        report = self._replace_broker()
        self.restarts += 1
        return report

    def rotate(self) -> PublishReport:
        """Replace the broker by a fresh one holding only the alerts within retention."""
        report = self._replace_broker()
        self.rotations += 1
        return report

    def _replace_broker(self) -> PublishReport:
        self.broker.stop()
        self._start_broker()
        self._write_info()
        report = self.replay_retained()
        log.info("new broker %s; %s", self.broker.cluster_id, report)
        return report

    def replay_retained(self) -> PublishReport:
        """Re-publish every alert archived within the topic's retention period."""
        since = datetime.now(UTC) - timedelta(milliseconds=self.retention_ms)
        records = list(self.archive.read_since(since))
        producer = AlertProducer(self.bootstrap, self.topic, archive=self.archive, create_topic=False)
        try:
            report = producer.publish_archived(records, force=True)
        finally:
            producer.close()
        self.last_replay = report
        return report

    def wait(self) -> None:
        """Block until :meth:`stop` is called (from a signal handler or another thread)."""
        while not self._stop.wait(0.5):
            pass

    def stop(self) -> None:
        """Stop watching, the registry and the broker; remove ``kafka.json``."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        if self._server is not None:
            self._server.should_exit = True  # type: ignore[attr-defined]
            if self._server_thread is not None:
                self._server_thread.join(5)
        self.broker.stop()
        if self.write_info:
            info = self.repo / "state" / "kafka.json"
            info.unlink(missing_ok=True)
