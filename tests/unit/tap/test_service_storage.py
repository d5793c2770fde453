"""Job store, history store and UWS documents on a real (SQLite) state database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pyvo.io.uws import parse_job, parse_job_list

from pachon.core.state import state_engine, upgrade_state
from pachon.services.tap.models.job import Job, Phase
from pachon.services.tap.render.uws import job_list_xml, job_xml
from pachon.services.tap.storage import HistoryStore, JobStore
from pachon.services.tap.storage.util import utcnow


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    assert upgrade_state(url) == "0002_tap_jobs" or upgrade_state(url)
    return state_engine(url)


def make_job(job_id: str, owner: str = "alice", phase: Phase = Phase.PENDING, minutes: int = 0) -> Job:
    now = utcnow() + timedelta(minutes=minutes)
    return Job(
        job_id=job_id,
        owner=owner,
        phase=phase,
        parameters={"lang": "ADQL", "query": "SELECT <&> 1"},
        creation_time=now,
        destruction=now + timedelta(days=1),
        execution_duration=60,
    )


def test_job_roundtrip_and_filters(engine) -> None:  # type: ignore[no-untyped-def]
    store = JobStore(engine=engine)
    store.add(make_job("a1", minutes=-3))
    store.add(make_job("a2", phase=Phase.COMPLETED, minutes=-2))
    store.add(make_job("a3", phase=Phase.ARCHIVED, minutes=-1))
    store.add(make_job("b1", owner="bob"))
    job = store.get("a1")
    assert job is not None and job.parameters["query"] == "SELECT <&> 1"
    assert job.creation_time.tzinfo is not None
    assert [j.job_id for j in store.list_jobs(owner="alice")] == ["a1", "a2"]  # ARCHIVED only on request
    assert [j.job_id for j in store.list_jobs(owner="alice", phases=[Phase.ARCHIVED])] == ["a3"]
    assert [j.job_id for j in store.list_jobs(owner="alice", last=1)] == ["a2"]
    assert [j.job_id for j in store.list_jobs(owner="alice", after=job.creation_time)] == ["a2"]
    assert [j.job_id for j in store.list_jobs(owner="bob")] == ["b1"]


def test_transition_is_compare_and_set(engine) -> None:  # type: ignore[no-untyped-def]
    store = JobStore(engine=engine)
    store.add(make_job("j"))
    assert store.transition("j", [Phase.PENDING], Phase.QUEUED)
    assert not store.transition("j", [Phase.PENDING], Phase.QUEUED)
    assert store.transition("j", [Phase.QUEUED], Phase.EXECUTING, start_time=utcnow())
    assert store.fail_interrupted("restarted", utcnow()) == ["j"]
    job = store.get("j")
    assert job is not None and job.phase == Phase.ERROR and job.error_message == "restarted"


def test_expired_jobs(engine) -> None:  # type: ignore[no-untyped-def]
    store = JobStore(engine=engine)
    store.add(make_job("old"))
    store.update("old", destruction=utcnow() - timedelta(seconds=1))
    store.add(make_job("new"))
    assert [j.job_id for j in store.expired(utcnow())] == ["old"]


def test_history(engine) -> None:  # type: ignore[no-untyped-def]
    history = HistoryStore(engine=engine)
    for i in range(3):
        history.record(
            owner="alice",
            mode="sync",
            query=f"q{i}",
            started_at=utcnow(),
            duration_s=0.1,
            row_count=i,
            status="OK",
        )
    history.record(
        owner="bob",
        mode="async",
        query="b",
        started_at=utcnow(),
        duration_s=None,
        row_count=None,
        status="ERROR",
        error_message="bad",
    )
    recent = history.recent(owner="alice", limit=2)
    assert [e.query for e in recent] == ["q2", "q1"]
    assert history.recent(owner="bob", limit=5)[0].error_message == "bad"


def test_uws_documents_parse_with_pyvo() -> None:
    job = make_job("abc").model_copy(
        update={
            "phase": Phase.COMPLETED,
            "result_path": "/x",
            "result_mime": "application/x-votable+xml",
            "start_time": utcnow(),
            "end_time": utcnow(),
            "run_id": "run-1",
        }
    )
    parsed = parse_job(_as_file(job_xml(job, "http://h/tap/async/abc")))
    assert parsed.jobid == "abc" and parsed.phase == "COMPLETED" and parsed.ownerid == "alice"
    assert parsed.version == "1.1"
    assert parsed.results[0].id_ == "result"
    assert parsed.results[0].href == "http://h/tap/async/abc/results/result"
    assert parsed.quote is None
    assert parsed.destruction is not None
    error = make_job("e").model_copy(update={"phase": Phase.ERROR, "error_message": "line 1, column 8: bad"})
    parsed_error = parse_job(_as_file(job_xml(error, "http://h/tap/async/e")))
    assert parsed_error.errorsummary.message.content == "line 1, column 8: bad"
    jobs = parse_job_list(_as_file(job_list_xml([job, error], "http://h/tap/async")))
    assert [j.jobid for j in jobs] == ["abc", "e"]


def _as_file(text: str):  # type: ignore[no-untyped-def]
    import io

    return io.BytesIO(text.encode())
