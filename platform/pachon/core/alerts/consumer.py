"""Reading the alert stream from a notebook or the CLI: decode, deduplicate, resume.

What this adds to a bare ``confluent_kafka.Consumer``:

* **group names** are prefixed with the user's name (``alice-mytransients``), as Rubin's
  Kafka requires of every consumer group;
* **decoding** of the Confluent wire format with the schema the message names, fetched from the
  schema registry (``/schemas/ids/{id}``) when one is given, else taken from
  ``lsst-alert-packet``;
* **deduplication** on ``diaSourceId``: delivery is at least once (replays after a broker
  restart, a producer retry), but each alert is handed to the caller once;
* **at-least-once commits**: an alert's offset is stored only when the caller comes back for
  the next one (or calls :meth:`AlertConsumer.commit`), so a crash mid-processing re-reads it;
* **broker restarts**: the embedded broker forgets everything (messages, offsets) when it
  restarts (or is rotated to enforce retention) and comes back with a new cluster ID. When we
  see a new cluster ID we re-read its log from the beginning, where the supervisor has replayed
  the archive; deduplication drops what we had already delivered, and a consumer that asked
  for new alerts only skips replayed alerts first archived before it started (``archived_at``
  header), so nothing is lost and nothing is repeated;
* ``session.timeout.ms`` 6000 by default, because the embedded broker assigns partitions to a new
  group after about half the session timeout (23 s with librdkafka's default of 45 s).
"""

from __future__ import annotations

import contextlib
import getpass
import io
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from pachon.core.alerts.broker import resolve_bootstrap, resolve_registry_url
from pachon.core.alerts.packet import AlertInputError, unframe
from pachon.core.alerts.schema import load_schema, topic_name
from pachon.core.logging import get_logger

__all__ = ["AlertConsumer", "ReceivedAlert", "SchemaResolver", "user_group"]

log = get_logger(__name__)


def user_group(group: str, user: str | None = None) -> str:
    """``<user>-<group>`` unless ``group`` already starts with ``<user>-`` (Rubin's naming rule)."""
    user = user or os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    prefix = f"{user}-"
    return group if group.startswith(prefix) else prefix + group


class SchemaResolver:
    """Parsed Avro schemas by registry ID, from a Confluent-compatible registry or the shipped files."""

    def __init__(self, registry_url: str | None = None) -> None:
        self.registry_url = registry_url.rstrip("/") if registry_url else None
        self._cache: dict[int, Any] = {}
        self._lock = threading.Lock()

    def get(self, schema_id: int) -> Any:
        with self._lock:
            parsed = self._cache.get(schema_id)
            if parsed is None:
                parsed = self._fetch(schema_id)
                self._cache[schema_id] = parsed
            return parsed

    def _fetch(self, schema_id: int) -> Any:
        import json

        if self.registry_url:
            import httpx

            url = f"{self.registry_url}/schemas/ids/{schema_id}"
            response = httpx.get(url, timeout=10)
            if response.status_code != 200:
                raise AlertInputError(
                    f"schema registry {url} answered {response.status_code}: {response.text[:200]}"
                )
            return fastavro.parse_schema(json.loads(response.json()["schema"]))
        major, minor = divmod(schema_id, 100)
        try:
            return load_schema(major, minor).parsed
        except KeyError as exc:
            raise AlertInputError(
                f"{exc.args[0]}; pass registry_url= to decode with a schema registry"
            ) from None

    def decode(self, message: bytes) -> dict[str, Any]:
        schema_id, payload = unframe(message)
        return fastavro.schemaless_reader(io.BytesIO(payload), self.get(schema_id), None)  # type: ignore[return-value]


@dataclass(frozen=True)
class ReceivedAlert:
    """One decoded alert and where it came from."""

    alert: dict[str, Any]
    topic: str
    partition: int
    offset: int
    producer_timestamp_ms: int | None
    received_at: float

    @property
    def diaSourceId(self) -> int:
        return int(self.alert["diaSourceId"])

    @property
    def latency_s(self) -> float | None:
        """Seconds from the producer's timestamp to this consumer receiving the message."""
        if self.producer_timestamp_ms is None:
            return None
        return self.received_at - self.producer_timestamp_ms / 1000.0


def _int_headers(headers: list[tuple[str, bytes]] | None) -> dict[str, int]:
    """Integer-valued message headers (``producer_timestamp``, ``archived_at``); others ignored."""
    out: dict[str, int] = {}
    for key, raw in headers or []:
        if raw:
            try:
                out[key] = int(raw)
            except ValueError:
                continue
    return out


class AlertConsumer:
    """Consume decoded, deduplicated alerts from the stream.

    Parameters
    ----------
    bootstrap
        Kafka bootstrap; default ``PACHON_KAFKA_BOOTSTRAP`` or the repo's embedded broker.
    topic
        Default ``<alerts.topic_prefix>-v<latest major>``.
    group
        Consumer group *suffix*; the user's name is prefixed (``alice-<group>``).
    from_beginning
        For a group with no committed offsets: start at the oldest retained alert rather than
        at new ones.
    registry_url
        Confluent-compatible schema registry; default the repo's (``state/kafka.json``), else the
        schemas shipped with ``lsst-alert-packet``.
    dedupe_capacity
        How many recent diaSourceIds to remember for deduplication.

    Examples
    --------
    >>> with AlertConsumer(group="bright", from_beginning=True) as consumer:
    ...     for received in consumer.stream(max_alerts=10, idle_timeout=5):
    ...         print(received.diaSourceId, received.alert["diaSource"]["psfFlux"])
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        topic: str | None = None,
        *,
        group: str = "notebook",
        user: str | None = None,
        from_beginning: bool = False,
        registry_url: str | None = None,
        repo: Path | str | None = None,
        session_timeout_ms: int = 6000,
        dedupe_capacity: int = 1_000_000,
        epoch_check_s: float = 1.0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap or resolve_bootstrap(repo)
        self.topic = topic or topic_name()
        self.group_id = user_group(group, user)
        if registry_url is None and bootstrap is None:
            registry_url = resolve_registry_url(repo)
        self.schemas = SchemaResolver(registry_url)
        self._from_beginning = from_beginning
        self._session_timeout_ms = session_timeout_ms
        self._extra = dict(config or {})
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._capacity = dedupe_capacity
        self._pending: list[Any] = []
        self._epoch_check_s = epoch_check_s
        self._last_check = 0.0
        self.duplicates = 0
        self.skipped_old = 0
        self.restarts_seen = 0
        # "New alerts only" must stay true across broker restarts, whose replays re-publish old
        # alerts: those carry their original archive time in the ``archived_at`` header.
        self._since_ms = None if from_beginning else int(time.time() * 1000)
        self._consumer = self._make_consumer(earliest=from_beginning)
        self._cluster_id = self._current_cluster_id()

    def _make_consumer(self, *, earliest: bool) -> Any:
        from confluent_kafka import Consumer

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group_id,
                "auto.offset.reset": "earliest" if earliest else "latest",
                "session.timeout.ms": self._session_timeout_ms,
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": 1000,
                "fetch.message.max.bytes": 10_000_000,
                "fetch.wait.max.ms": 100,  # a new alert waits at most 0.1 s in the broker (default 0.5 s)
                **self._extra,
            }
        )
        consumer.subscribe([self.topic])
        return consumer

    def _current_cluster_id(self) -> str | None:
        try:
            return str(self._consumer.list_topics(self.topic, timeout=1.0).cluster_id)
        except Exception:  # broker unreachable right now; try again later
            return None

    def _check_epoch(self) -> None:
        """Notice a restarted (memory-wiped) broker and re-read its replayed log from the start."""
        now = time.monotonic()
        if now - self._last_check < self._epoch_check_s:
            return
        self._last_check = now
        current = self._current_cluster_id()
        if current is None:
            return
        if self._cluster_id is None:
            self._cluster_id = current
            return
        if current != self._cluster_id:
            log.warning(
                "broker %s restarted (cluster %s → %s): re-reading its replayed log, duplicates dropped",
                self.bootstrap,
                self._cluster_id,
                current,
            )
            self.restarts_seen += 1
            self._pending.clear()  # offsets of the old broker mean nothing on the new one
            with contextlib.suppress(Exception):  # the old broker may be gone for good
                self._consumer.close()
            self._consumer = self._make_consumer(earliest=True)
            self._cluster_id = current

    def _store_pending(self) -> None:
        for msg in self._pending:
            try:
                self._consumer.store_offsets(message=msg)
            except Exception as exc:  # partition revoked meanwhile: another member re-reads it
                log.debug("could not store offset: %s", exc)
        self._pending.clear()

    def poll(self, timeout: float = 1.0) -> ReceivedAlert | None:
        """The next new alert, or ``None`` after ``timeout`` seconds without one."""
        self._store_pending()
        deadline = time.monotonic() + timeout
        while True:
            self._check_epoch()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            msg = self._consumer.poll(min(remaining, 0.5))
            if msg is None:
                continue
            if msg.error():
                log.debug("consumer: %s", msg.error())
                continue
            received_at = time.time()
            value = msg.value()
            try:
                alert = self.schemas.decode(value)
            except AlertInputError as exc:
                log.warning(
                    "skipping undecodable message %s[%d]@%d: %s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
                self._pending.append(msg)
                continue
            self._pending.append(msg)
            headers = _int_headers(msg.headers())
            archived_ms = headers.get("archived_at")
            if self._since_ms is not None and archived_ms is not None and archived_ms < self._since_ms:
                self.skipped_old += 1
                continue
            ident = int(alert["diaSourceId"])
            if ident in self._seen:
                self.duplicates += 1
                continue
            self._seen[ident] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            stamp = headers.get("producer_timestamp")
            return ReceivedAlert(alert, msg.topic(), msg.partition(), msg.offset(), stamp, received_at)

    def wait_until_assigned(self, timeout: float = 30.0) -> bool:
        """Join the group and wait until partitions are assigned (True), at most ``timeout`` seconds.

        A new group gets its partitions only after the broker's join round (about half
        ``session.timeout.ms`` on the embedded broker); a notebook that must not miss the first
        alert of a visit about to be released, and a latency benchmark, wait for this first.
        Alerts polled meanwhile are kept and handed out by the next :meth:`poll`.
        """
        deadline = time.monotonic() + timeout
        while not self._consumer.assignment():
            if time.monotonic() > deadline:
                return False
            msg = self._consumer.poll(0.1)
            if msg is not None:  # rare: already assigned and a message arrived; re-read it later
                from confluent_kafka import TopicPartition

                with contextlib.suppress(Exception):
                    self._consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                return True
        return True

    def stream(
        self, *, max_alerts: int | None = None, idle_timeout: float | None = None
    ) -> Iterator[ReceivedAlert]:
        """Yield alerts until ``max_alerts`` were yielded or none arrived for ``idle_timeout`` seconds."""
        count = 0
        while max_alerts is None or count < max_alerts:
            received = self.poll(idle_timeout if idle_timeout is not None else 3600.0)
            if received is None:
                if idle_timeout is not None:
                    return
                continue
            count += 1
            yield received

    def consume(self, max_alerts: int, timeout: float = 10.0) -> list[ReceivedAlert]:
        """Up to ``max_alerts`` new alerts, waiting at most ``timeout`` seconds in total."""
        out: list[ReceivedAlert] = []
        deadline = time.monotonic() + timeout
        while len(out) < max_alerts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            received = self.poll(remaining)
            if received is not None:
                out.append(received)
        return out

    def commit(self) -> None:
        """Commit the offsets of every alert handed out so far (synchronously)."""
        from confluent_kafka import KafkaException

        self._store_pending()
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:  # nothing stored yet (_NO_OFFSET) is not an error here
            log.debug("commit: %s", exc)

    def close(self) -> None:
        """Commit what was handed out and leave the group."""
        self.commit()
        self._consumer.close()

    def __enter__(self) -> AlertConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
