"""The DiaSource columns we send to the APDB are the APDB schema's own, trailed-source fit included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from astropy.table import Table

from pachon.pipelines.prompt.association import _DIA_COLUMNS, dia_frame


def _apdb_diasource_columns() -> dict[str, dict[str, object]]:
    import lsst.sdm.schemas

    path = Path(lsst.sdm.schemas.__file__).parent / "apdb.yaml"
    schema = yaml.safe_load(path.read_text())
    table = next(t for t in schema["tables"] if t["name"] == "DiaSource")
    return {c["name"]: c for c in table["columns"]}


def test_every_column_we_fill_exists_in_the_apdb_diasource_schema() -> None:
    known = _apdb_diasource_columns()
    assert [c for c in _DIA_COLUMNS if c not in known] == []


def test_trail_fit_reaches_the_apdb_frame_with_nan_where_no_trail_was_fitted() -> None:
    table = Table(
        {
            "diaSourceId": np.array([1, 2], dtype=np.int64),
            "trailFlux": [1234.5, np.nan],
            "trailLength": [3.2, np.nan],
            "trailChi2": [55.0, np.nan],
            "trailNdata": np.array([120, 0], dtype=np.int32),
        }
    )
    frame = dia_frame(table)
    assert {"trailFlux", "trailLength", "trailChi2", "trailNdata"} <= set(frame.columns)
    assert frame["trailLength"].iloc[0] == 3.2 and np.isnan(frame["trailLength"].iloc[1])
