"""The scheduler: seasons over ≥3 years, pairs ~30 min apart, conditions in their stated ranges."""

from __future__ import annotations

import numpy as np

from pachon.pipelines.sim.cadence import plan_survey
from pachon.pipelines.sim.config import preset


def _plan(name: str = "tiny", seed: int = 1):  # type: ignore[no-untyped-def]
    return plan_survey(preset(name), np.random.default_rng(seed))


def test_survey_spans_three_years_with_seasons_of_several_nights() -> None:
    visits = _plan()
    assert len(visits) == 20
    mjd = np.array([v.mjd_start for v in visits])
    assert (mjd.max() - mjd.min()) / 365.25 > 2.3
    nights = sorted({v.day_obs for v in visits})
    years = {n // 10000 for n in nights}
    assert len(years) >= 3
    # within a year, nights are months apart (different parallax factors)
    for year in years:
        m = sorted({v.day_obs: v.mjd_start for v in visits if v.day_obs // 10000 == year}.values())
        if len(m) > 1:
            assert np.min(np.diff(m)) > 25


def test_pairs_are_thirty_minutes_apart_in_one_band() -> None:
    visits = _plan()
    by_night: dict[int, list] = {}
    for v in visits:
        by_night.setdefault(v.day_obs, []).append(v)
    for night in by_night.values():
        assert len({v.band for v in night}) == 1
        if len(night) == 2:
            dt = (night[1].mjd_start - night[0].mjd_start) * 1440
            assert 24 <= dt <= 36


def test_conditions_in_range_and_ids_unique() -> None:
    visits = _plan("small", 4)
    assert all(0.6 <= v.seeing <= 1.3 for v in visits)
    assert all(0 <= v.cloud <= 0.3 for v in visits)
    assert all(1.0 <= v.airmass < 2.0 for v in visits)
    assert len({v.exposure for v in visits}) == len(visits)
    assert all(v.exposure == v.day_obs * 1000 + v.seq_num for v in visits)
    assert {v.band for v in visits} == set(preset("small").bands)
    # the sky is brighter in red bands and with the moon
    assert np.ptp([v.moon_illumination for v in visits]) > 0.3


def test_plan_is_deterministic() -> None:
    assert _plan(seed=9) == _plan(seed=9)
    assert _plan(seed=9) != _plan(seed=10)
