"""AM1/PA1 on synthetic catalogs with a known answer, pulls, and the metrics store round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from pachon.pipelines.metrics import am1, load_metric_runs, pa1, pulls, store_metrics


def _catalog(sigma_mas: float, mag_noise: float, n_star: int = 60, n_visit: int = 10, seed: int = 1) -> Table:
    rng = np.random.default_rng(seed)
    ra0 = 180 + rng.uniform(-0.06, 0.06, n_star)
    dec0 = rng.uniform(-0.02, 0.02, n_star)
    rows = []
    for v in range(n_visit):
        ra = ra0 + rng.normal(0, sigma_mas, n_star) / 3.6e6 / np.cos(np.radians(dec0))
        dec = dec0 + rng.normal(0, sigma_mas, n_star) / 3.6e6
        flux = 10 ** (-0.4 * (19.0 - 31.4)) * 10 ** (-0.4 * rng.normal(0, mag_noise, n_star))
        rows.append(
            Table(
                {
                    "objectId": np.arange(n_star, dtype=np.int64),
                    "visit": np.full(n_star, v),
                    "coord_ra": ra,
                    "coord_dec": dec,
                    "psfFlux": flux,
                    "psfFluxErr": flux / 500,
                    "band": np.full(n_star, "r"),
                    "pixelFlags_saturated": np.zeros(n_star, bool),
                    "pixelFlags_edge": np.zeros(n_star, bool),
                }
            )
        )
    from astropy.table import vstack

    return vstack(rows)


def test_am1_is_sqrt2_sigma_for_independent_jitter() -> None:
    cat = _catalog(sigma_mas=10.0, mag_noise=0.0)
    value, n = am1(cat, {i: False for i in range(60)})
    assert n > 50
    # separation rms of two independently jittered stars: √2 σ along the pair's axis
    assert 10.0 < value < 18.0
    # galaxies (extended) are not used
    assert am1(cat, {i: True for i in range(60)}) == (value.__class__("nan"), 0) or np.isnan(
        am1(cat, {i: True for i in range(60)})[0]
    )


def test_pa1_matches_injected_scatter() -> None:
    cat = _catalog(sigma_mas=1.0, mag_noise=0.01)
    value, n, shot = pa1(cat, {i: False for i in range(60)})
    assert n == 60
    assert 7.0 < value < 12.0  # rms about the mean of 10 draws of σ=10 mmag (biased low by √(9/10))
    assert shot == pytest.approx(1085.7 / 500)  # the photon-noise part quoted beside it (S/N 500)


def test_pa1_selects_stars_by_their_median_snr() -> None:
    """faro's cut: a star counts when its *median* S/N reaches 200, whatever its faintest visit."""
    cat = _catalog(sigma_mas=1.0, mag_noise=0.01)
    star, visit = np.asarray(cat["objectId"]), np.asarray(cat["visit"])
    snr = np.where(star < 30, 150.0, 500.0)  # half the stars are below the cut on median
    snr = np.where((star >= 30) & (visit < 3), 120.0, snr)  # the others have 3 faint visits of 10
    cat["psfFluxErr"] = np.asarray(cat["psfFlux"]) / snr
    _, n, _ = pa1(cat, {i: False for i in range(60)})
    assert n == 30
    assert pa1(cat, {i: False for i in range(60)}, min_snr=100)[1] == 60
    # stars known to vary (the truth's variables) are left out when given
    assert pa1(cat, {i: False for i in range(60)}, min_snr=100, exclude=set(range(10)))[1] == 50


def test_pa1_leaves_out_flagged_measurements() -> None:
    """Forced photometry's flagged fits (``psfFlux_flag``) and saturated fit regions do not count."""
    cat = _catalog(sigma_mas=1.0, mag_noise=0.001)
    clean, _, _ = pa1(cat, {i: False for i in range(60)}, min_snr=100)
    star, visit = np.asarray(cat["objectId"]), np.asarray(cat["visit"])
    bad = visit == star % 10  # one measurement of each star is 0.5 mag off, and flagged
    cat["psfFlux"] = np.where(bad, np.asarray(cat["psfFlux"]) * 1.58, np.asarray(cat["psfFlux"]))
    cat["psfFlux_flag"] = bad
    assert pa1(cat, {i: False for i in range(60)}, min_snr=100)[0] == pytest.approx(clean, rel=0.3)
    cat["psfFlux_flag"] = np.zeros(len(cat), bool)
    cat["pixelFlags_saturated"] = bad
    assert pa1(cat, {i: False for i in range(60)}, min_snr=100)[0] == pytest.approx(clean, rel=0.3)
    del cat["pixelFlags_saturated"]
    assert pa1(cat, {i: False for i in range(60)}, min_snr=100)[0] > 10 * clean


def test_pulls_statistics() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(0, 10, 5000)
    err = rng.uniform(0.5, 2, 5000)
    mean, std, n = pulls(truth + rng.normal(0, 1, 5000) * err, err, truth)
    assert abs(mean) < 0.05 and abs(std - 1) < 0.05 and n > 4990


def test_store_round_trip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    a = store_metrics({"AM1": (12.0, "mas", "x"), "PA1": (float("nan"), "mmag", "y")}, pipeline="drp",
                      release="dp1", config={"k": 1}, state_url=url)  # fmt: skip
    b = store_metrics({"AM1": (9.0, "mas", "x")}, pipeline="drp", release="dp2", config={}, state_url=url)
    runs = load_metric_runs(url)
    assert [r.run_id for r in runs] == [a, b]
    assert runs[0].values["AM1"][:2] == (12.0, "mas")
    assert runs[0].values["PA1"][0] is None  # NaN = not measurable, stored as NULL
    assert runs[0].config == {"k": 1}
    assert [r.release for r in load_metric_runs(url, release="dp2")] == ["dp2"]
