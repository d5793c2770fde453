"""Alert packets: rows → schema-valid dicts → Confluent-framed Avro, checked against lsst-alert-packet."""

from __future__ import annotations

import io
import math
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pachon.core.alerts import (
    AlertInputError,
    build_alert,
    decode_alert,
    encode_alert,
    frame,
    latest_schema,
    load_schema,
    serialize_alert,
    topic_name,
    unframe,
)
from pachon.core.alerts.samples import sample_visit
from pachon.core.alerts.schema import all_schemas


@pytest.fixture(scope="module")
def visit():
    return sample_visit(6, history=3, cutouts=True)


def _f32(value: float) -> float:
    return float(np.float32(value))


def test_latest_schema_is_the_packages_latest_and_ids_are_major_100_plus_minor() -> None:
    from lsst.alert.packet import get_latest_schema_version, get_schema_root

    schema = latest_schema()
    assert (schema.major, schema.minor) == tuple(get_latest_schema_version())
    assert schema.major >= 11
    assert schema.schema_id == schema.major * 100 + schema.minor
    shipped = (Path(get_schema_root()) / "latest.txt").read_text().strip()
    assert schema.version == shipped
    ids = [s.schema_id for s in all_schemas()]
    assert 1100 in ids and 701 in ids and ids == sorted(ids)
    assert topic_name("lsst-alerts", 11) == "lsst-alerts-v11"


def test_framing_is_magic_zero_then_big_endian_id() -> None:
    message = frame(b"avro", 1101)
    assert message[:5] == b"\x00\x00\x00\x04\x4d"  # 1101 = 0x044d, big-endian
    assert struct.unpack(">bi", message[:5]) == (0, 1101)
    assert unframe(message) == (1101, b"avro")
    with pytest.raises(AlertInputError, match="magic byte 0"):
        unframe(b"\x01\x00\x00\x04\x4dxx")


def test_packet_fields_equal_the_rows_and_decode_with_lsst_alert_packet(visit) -> None:
    from lsst.alert.packet import Schema

    src = visit.dia_sources[0]
    oid = src["diaObjectId"]
    alert = build_alert(
        src,
        prv_sources=visit.prv_sources[oid],
        prv_forced=visit.prv_forced[oid],
        dia_object=visit.dia_objects[oid],
        cutouts=visit.cutouts[src["diaSourceId"]],
    )
    schema = latest_schema()
    assert Schema(schema.definition).validate(alert)
    message = encode_alert(alert)
    schema_id, payload = unframe(message)
    assert schema_id == schema.schema_id
    # Decode with lsst-alert-packet's own reader, independently of our decoder.
    decoded = Schema(schema.definition).deserialize(payload)
    assert decoded == decode_alert(message)
    assert decoded["diaSourceId"] == src["diaSourceId"]
    ds = decoded["diaSource"]
    for key in ("diaSourceId", "visit", "detector", "diaObjectId", "midpointMjdTai", "ra", "dec", "band"):
        assert ds[key] == src[key], key
    for key in ("psfFlux", "psfFluxErr", "x", "y", "snr", "reliability"):  # Avro float = float32
        assert ds[key] == _f32(src[key]), key
    assert ds["ssObjectId"] is None and ds["trailFlux"] is None
    assert [p["diaSourceId"] for p in decoded["prvDiaSources"]] == [
        p["diaSourceId"] for p in visit.prv_sources[oid]
    ]
    assert [f["diaForcedSourceId"] for f in decoded["prvDiaForcedSources"]] == [
        f["diaForcedSourceId"] for f in visit.prv_forced[oid]
    ]
    assert decoded["diaObject"]["diaObjectId"] == oid
    assert decoded["cutoutDifference"] == visit.cutouts[src["diaSourceId"]].difference
    assert decoded["cutoutTemplate"][:6] == b"SIMPLE"


def test_required_bookkeeping_fields_are_filled_sensibly(visit) -> None:
    src = dict(visit.dia_sources[1])
    for key in ("psfNdata", "trailNdata", "dipoleNdata", "bboxSize", "timeProcessedMjdTai"):
        del src[key]
    oid = src["diaObjectId"]
    obj = {k: v for k, v in visit.dia_objects[oid].items() if k not in ("nDiaSources",)}
    prv = visit.prv_sources[oid]
    alert = build_alert(src, prv_sources=prv, dia_object=obj, cutouts=visit.cutouts[src["diaSourceId"]])
    ds = alert["diaSource"]
    assert ds["psfNdata"] == ds["trailNdata"] == ds["dipoleNdata"] == 0
    assert ds["bboxSize"] == 30
    assert abs(ds["timeProcessedMjdTai"] - 61368) < 5000  # now, as MJD
    o = alert["diaObject"]
    assert o["nDiaSources"] == 1 + len(prv)
    bands = [src["band"]] + [p["band"] for p in prv]
    for band in "ugrizy":
        assert o[f"{band}_psfFluxNdata"] == bands.count(band)
    assert o["validityStartMjdTai"] == min(p["midpointMjdTai"] for p in [src, *prv])


def test_missing_required_field_names_table_row_and_field(visit) -> None:
    src = dict(visit.dia_sources[0])
    del src["ra"]
    with pytest.raises(AlertInputError) as info:
        build_alert(src)
    message = str(info.value)
    assert "'ra'" in message and "DiaSource" in message and str(src["diaSourceId"]) in message

    src = dict(visit.dia_sources[0], midpointMjdTai=float("nan"))
    with pytest.raises(AlertInputError, match="'midpointMjdTai'"):
        build_alert(src)

    forced = [dict(visit.prv_forced[src["diaObjectId"]][0])]
    del forced[0]["diaObjectId"]
    with pytest.raises(
        AlertInputError, match=r"prvDiaForcedSources row diaForcedSourceId=\d+: required field 'diaObjectId'"
    ):
        build_alert(visit.dia_sources[0], prv_forced=forced)


def test_wrong_types_and_inconsistent_rows_are_rejected(visit) -> None:
    src = visit.dia_sources[0]
    with pytest.raises(AlertInputError, match="'detector' = 'det-3' is not a valid Avro int"):
        build_alert(dict(src, detector="det-3"))
    with pytest.raises(AlertInputError, match="'visit' = 1.5"):
        build_alert(dict(src, visit=1.5))
    other = dict(visit.dia_objects[src["diaObjectId"]], diaObjectId=42)
    with pytest.raises(AlertInputError, match="DiaObject given has diaObjectId=42"):
        build_alert(src, dia_object=other)


def test_nulls_numpy_and_pandas_inputs() -> None:
    visit = sample_visit(1, history=1, cutouts=False)
    src = visit.dia_sources[0]
    series = pd.Series(
        {**src, "psfFlux": np.float32(123.5), "apFlux": np.nan, "visit": np.int64(src["visit"])}
    )
    series["pixelFlags_cr"] = pd.NA
    alert = build_alert(series, prv_sources=[src])  # the triggering source in its own history is dropped
    assert alert["diaSource"]["psfFlux"] == 123.5
    assert alert["diaSource"]["apFlux"] is None
    assert alert["diaSource"]["pixelFlags_cr"] is None
    assert type(alert["diaSource"]["visit"]) is int
    assert alert["prvDiaSources"] is None
    assert alert["cutoutDifference"] is None
    decoded = decode_alert(encode_alert(alert))
    assert decoded["diaSource"]["apFlux"] is None


def test_apdb_columns_map_one_to_one_onto_the_alert_schema() -> None:
    """The documented mapping: every alert field is an APDB column of the same name."""
    import yaml
    from lsst.sdm.schemas import __file__ as sdm_file

    apdb = yaml.safe_load((Path(sdm_file).parent / "apdb.yaml").read_text())
    tables = {t["name"]: {c["name"] for c in t["columns"]} for t in apdb["tables"]}
    schema = latest_schema()
    for field, table in [
        ("diaSource", "DiaSource"),
        ("prvDiaForcedSources", "DiaForcedSource"),
        ("diaObject", "DiaObject"),
        ("ssSource", "SSSource"),
    ]:
        names = {f["name"] for f in schema.record(field)["fields"]}
        assert names <= tables[table], (field, sorted(names - tables[table]))


def test_serialize_matches_lsst_reference_bytes() -> None:
    """Our serializer writes exactly what lsst.alert.packet.Schema.serialize writes."""
    from lsst.alert.packet import Schema

    visit = sample_visit(2, history=2, cutouts=False)
    alert = visit.alerts()[1]
    schema = load_schema(latest_schema().major, latest_schema().minor)
    assert serialize_alert(alert) == Schema(schema.definition).serialize(alert)
    assert not math.isnan(alert["diaSource"]["ra"])
    assert io.BytesIO(encode_alert(alert)).read(1) == b"\x00"


def test_build_alerts_groups_apdb_frames_by_object(visit) -> None:
    from pachon.core.alerts import build_alerts

    sources = pd.DataFrame(visit.dia_sources)
    history = pd.DataFrame([row for rows in visit.prv_sources.values() for row in rows][::-1])  # any order
    forced = pd.DataFrame([row for rows in visit.prv_forced.values() for row in rows])
    objects = pd.DataFrame(list(visit.dia_objects.values()))
    src0 = visit.dia_sources[0]
    ss = pd.DataFrame(
        [
            {
                "diaSourceId": src0["diaSourceId"],
                "ssObjectId": 77,
                "eclLambda": 1.0,
                "eclBeta": 2.0,
                "galLon": 3.0,
                "galLat": 4.0,
            }
        ]
    )
    alerts = build_alerts(
        sources,
        prv_sources=history,
        prv_forced=forced,
        dia_objects=objects,
        ss_sources=ss,
        cutouts=visit.cutouts,
    )
    assert [a["diaSourceId"] for a in alerts] == list(sources["diaSourceId"])
    for alert, src in zip(alerts, visit.dia_sources, strict=True):
        oid = src["diaObjectId"]
        expected = sorted(visit.prv_sources[oid], key=lambda r: r["midpointMjdTai"])
        assert [p["diaSourceId"] for p in alert["prvDiaSources"]] == [p["diaSourceId"] for p in expected]
        assert alert["diaObject"]["diaObjectId"] == oid
        assert alert["cutoutDifference"] == visit.cutouts[src["diaSourceId"]].difference
    assert alerts[0]["ssSource"]["ssObjectId"] == 77 and alerts[1]["ssSource"] is None
    assert decode_alert(encode_alert(alerts[0]))["ssSource"]["galLat"] == 4.0


def test_float64_ids_that_lost_precision_are_refused(visit) -> None:
    src = dict(visit.dia_sources[0], diaObjectId=float(2**60 + 1))
    with pytest.raises(AlertInputError, match="Int64"):
        build_alert(src)
