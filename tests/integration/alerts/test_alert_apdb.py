"""Alerts from a real APDB (lsst-dax-apdb, SQLite): every field equals the APDB row it came from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pachon.core.alerts import build_alerts, decode_alert, encode_alert
from pachon.core.alerts.samples import sample_visit


def _same(got: object, expected: object) -> bool:
    if expected is None or expected is pd.NA or (isinstance(expected, float) and expected != expected):
        return got is None
    return got == expected


def test_alerts_built_from_apdb_query_results_carry_the_rows_unchanged(tmp_path: Path) -> None:
    apdb_mod = pytest.importorskip("lsst.dax.apdb")
    from astropy.time import Time
    from lsst.sphgeom import Angle, Circle, LonLat, UnitVector3d

    config = apdb_mod.ApdbSql.init_database(db_url=f"sqlite:///{tmp_path / 'apdb.sqlite3'}")
    apdb = apdb_mod.Apdb.from_config(config)
    visit = sample_visit(6, history=2, cutouts=False)
    history = [row for rows in visit.prv_sources.values() for row in rows]
    forced = [row for rows in visit.prv_forced.values() for row in rows]
    apdb.store(
        Time(61367.2, format="mjd", scale="tai"),
        pd.DataFrame(list(visit.dia_objects.values())),
        pd.DataFrame(history + visit.dia_sources),
        pd.DataFrame(forced),
    )
    region = Circle(UnitVector3d(LonLat.fromDegrees(150.0, -30.0)), Angle.fromDegrees(1.0))
    now = Time(61367.3, format="mjd", scale="tai")
    sources = apdb.getDiaSources(region, list(visit.dia_objects), now)
    forced_rows = apdb.getDiaForcedSources(region, list(visit.dia_objects), now)
    objects = apdb.getDiaObjects(region)
    this_visit = sources["visit"] == visit.dia_sources[0]["visit"]
    new, previous = sources[this_visit], sources[~this_visit]
    assert len(new) == 6 and len(previous) == 12

    alerts = build_alerts(new, prv_sources=previous, prv_forced=forced_rows, dia_objects=objects)
    for alert, (_, row) in zip(alerts, new.iterrows(), strict=True):
        decoded = decode_alert(encode_alert(alert))
        for name, value in decoded["diaSource"].items():
            assert _same(value, row[name]), (name, value, row[name])
        oid = row["diaObjectId"]
        obj = objects[objects["diaObjectId"] == oid].iloc[0]
        for name, value in decoded["diaObject"].items():
            assert _same(value, obj[name]), (name, value, obj[name])
        prv = previous[previous["diaObjectId"] == oid]
        assert sorted(p["diaSourceId"] for p in decoded["prvDiaSources"]) == sorted(prv["diaSourceId"])
        assert len(decoded["prvDiaForcedSources"]) == 2
