"""From ``pachon prompt run`` to a notebook's consumer: real visits, the embedded broker, the registry.

The visits are processed by the real CLI (fixture ``live_prompt_run``); a plain
``confluent_kafka.Consumer`` with the Confluent ``AvroDeserializer`` reading our schema registry
must get every alert once, each carrying the APDB's rows; a consumer group must resume across a
broker restart (the supervisor replays the archive into the fresh broker) without loss, our
consumer helper dropping the replayed duplicates.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from fixtures.kafka import avro_field_types, confluent_read_all

from pachon.core.alerts import AlertConsumer, latest_schema
from pachon.pipelines.prompt.config import AssociationConfig

pytestmark = pytest.mark.slow


def _apdb_tables(path: Any) -> dict[str, pd.DataFrame]:
    """Every row of the APDB (all DiaObject versions), read directly with SQL."""
    engine = sqlalchemy.create_engine(f"sqlite:///{path / 'apdb' / 'apdb.sqlite3'}")
    try:
        with engine.connect() as conn:
            return {
                t: pd.read_sql_query(sqlalchemy.text(f'SELECT * FROM "{t}"'), conn)
                for t in ("DiaObject", "DiaSource", "DiaForcedSource")
            }
    finally:
        engine.dispose()


def _assert_row_equal(decoded: dict[str, Any], row: pd.Series, record: str) -> int:
    """Every field the APDB row has a value for equals the decoded alert's; returns how many were compared."""
    compared = 0
    for name, avro_type in avro_field_types(record).items():
        if name not in row.index:
            continue
        expected = row[name]
        if expected is None or (isinstance(expected, float) and np.isnan(expected)):
            assert decoded[name] is None or (isinstance(decoded[name], float) and np.isnan(decoded[name])), (
                name
            )
            continue
        if avro_type == "float":
            assert decoded[name] == float(np.float32(expected)), (name, decoded[name], expected)
        elif avro_type == "boolean":
            assert decoded[name] == bool(expected), name
        elif avro_type in ("int", "long"):
            assert decoded[name] == int(expected), name
        else:
            assert decoded[name] == expected, (name, decoded[name], expected)
        compared += 1
    return compared


def test_every_alert_of_the_visits_reaches_a_confluent_consumer_once_with_the_apdb_rows(
    live_prompt_run: Any,
) -> None:
    run = live_prompt_run
    apdb = _apdb_tables(run.path)
    sources = apdb["DiaSource"]
    assert set(sources["visit"]) == set(run.visits), "both visits should have associated DiaSources"
    supervisor = run.supervisor
    received = confluent_read_all(
        supervisor.bootstrap, supervisor.registry_url, supervisor.topic, expected=len(sources),
        settle=3.0, timeout=60.0, group_prefix="pytest-e2e",
    )  # fmt: skip
    ids = [value["diaSourceId"] for _, value in received]
    assert len(ids) == len(set(ids)), "an alert was delivered twice"
    assert sorted(ids) == sorted(sources["diaSourceId"].tolist()), "alerts ≠ the APDB's DiaSources"

    rows = sources.set_index("diaSourceId", drop=False)
    objects = apdb["DiaObject"]
    forced = apdb["DiaForcedSource"]
    compared = 0
    for msg, alert in received:
        assert msg.key() is None
        assert msg.value()[:5] == b"\x00" + latest_schema().schema_id.to_bytes(4, "big")
        row = rows.loc[alert["diaSourceId"]]
        compared += _assert_row_equal(alert["diaSource"], row, "diaSource")
        # The diaObject is the version this visit wrote (valid from the visit's midpoint).
        version = objects[
            (objects["diaObjectId"] == row["diaObjectId"])
            & np.isclose(objects["validityStartMjdTai"], row["midpointMjdTai"], rtol=0, atol=1e-9)
        ]
        assert len(version) == 1
        compared += _assert_row_equal(alert["diaObject"], version.iloc[0], "diaObject")
        # History: the object's earlier DiaSources within the alert history window (12 months, as
        # Rubin's alerts carry) and its forced photometry from earlier visits.
        earlier = sources[
            (sources["diaObjectId"] == row["diaObjectId"])
            & (sources["midpointMjdTai"] < row["midpointMjdTai"])
            & (sources["midpointMjdTai"] >= row["midpointMjdTai"] - AssociationConfig().history_days)
        ]
        previous = alert["prvDiaSources"] or []  # null when the object has no earlier DiaSource
        assert sorted(p["diaSourceId"] for p in previous) == sorted(earlier["diaSourceId"])
        prv_forced = forced[(forced["diaObjectId"] == row["diaObjectId"]) & (forced["visit"] != row["visit"])]
        assert {f["diaForcedSourceId"] for f in alert["prvDiaForcedSources"] or []} <= set(
            prv_forced["diaForcedSourceId"]
        )
        for cutout in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            assert alert[cutout] is not None and alert[cutout][:6] == b"SIMPLE", cutout
    assert compared > 50 * len(received)
    if (objects.groupby("diaObjectId")["nDiaSources"].max() > 1).any():
        assert any(alert["prvDiaSources"] for _, alert in received), "a second detection should carry history"


def test_a_consumer_group_resumes_after_a_broker_restart_without_loss(live_prompt_run: Any) -> None:
    supervisor = live_prompt_run.supervisor
    expected = set(_apdb_tables(live_prompt_run.path)["DiaSource"]["diaSourceId"].tolist())
    group = f"e2e-restart-{uuid.uuid4().hex[:6]}"
    consumer = AlertConsumer(
        supervisor.bootstrap,
        supervisor.topic,
        group=group,
        user="pytest",
        from_beginning=True,
        registry_url=supervisor.registry_url,
    )
    first = consumer.consume(len(expected) // 2, timeout=40)
    consumer.commit()
    assert len(first) == len(expected) // 2
    old_cluster = supervisor.broker.cluster_id
    restarts = supervisor.restarts
    supervisor.broker.kill()  # the in-memory broker forgets every message and committed offset
    deadline = time.monotonic() + 30
    while supervisor.restarts == restarts and time.monotonic() < deadline:
        time.sleep(0.1)
    assert supervisor.broker.cluster_id != old_cluster
    assert supervisor.last_replay is not None and supervisor.last_replay.delivered >= len(expected)
    rest = consumer.consume(len(expected) - len(first), timeout=60)
    rest += consumer.consume(len(expected), timeout=3)  # nothing more may come out
    consumer.close()
    got = [r.diaSourceId for r in first + rest]
    assert len(got) == len(set(got)), "the consumer handed out an alert twice"
    assert set(got) == expected, "alerts lost across the broker restart"
    assert consumer.restarts_seen == 1  # it noticed the new broker and re-read the replayed log


def test_alerts_lost_in_a_crash_after_the_apdb_store_are_rebuilt_identically(
    live_prompt_run: Any, tmp_path: Any
) -> None:
    """The crash window between the APDB's store and the archive's write: the re-run rebuilds the alerts."""
    import io

    from astropy.io import fits
    from fixtures.prompt_live import copy_repo

    from pachon.core.alerts import AlertArchive, decode_alert, night_of
    from pachon.core.repo import DataRepository
    from pachon.pipelines.prompt.live import recover_alerts
    from pachon.pipelines.prompt.pipeline import list_exposures

    copy = tmp_path / "repo"
    copy_repo(live_prompt_run.path, copy)  # without state/kafka.json: no broker, the archive only
    # The last visit: a crashed visit is re-run before any later one (time order), so the APDB
    # holds the state the visit saw, and the rebuilt alerts must equal the originals.
    visit = live_prompt_run.visits[-1]
    exposure = next(e for e in list_exposures(DataRepository.open(copy)) if e.id == visit)
    night = night_of(exposure.mjd)
    original = {r.diaSourceId: r.message for r in AlertArchive.for_repo(copy).read(night) if r.visit == visit}
    assert original
    for packet in (copy / "alerts").rglob("*.parquet"):  # as if the run died before archiving
        packet.unlink()
    assert recover_alerts(copy, exposure, None, lambda _m: None) == len(original)
    rebuilt = {r.diaSourceId: r.message for r in AlertArchive.for_repo(copy).read(night) if r.visit == visit}
    assert rebuilt.keys() == original.keys()
    for ident, message in original.items():
        before, after = decode_alert(message), decode_alert(rebuilt[ident])
        template_before, template_after = before.pop("cutoutTemplate"), after.pop("cutoutTemplate")
        assert after == before, f"rebuilt alert {ident} differs from the one the visit built"
        # The template is warped again onto the stored visit_image's WCS (a FITS round trip of the
        # in-memory one): equal to float precision.
        a = fits.getdata(io.BytesIO(template_before))
        b = fits.getdata(io.BytesIO(template_after))
        assert a.shape == b.shape and np.allclose(
            a, b, rtol=0, atol=1e-5 * float(np.nanmax(np.abs(a))), equal_nan=True
        )
    assert recover_alerts(copy, exposure, None, lambda _m: None) == 0  # complete now: nothing to do
