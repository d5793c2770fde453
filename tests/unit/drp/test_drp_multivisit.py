"""Association, 5-parameter astrometry and ubercal on synthetic multi-visit sources with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.multivisit import (
    MAS_PER_DEG,
    associate,
    fit_astrometry_global,
    parallax_factors,
    ubercal,
)


def _survey(
    n_star: int = 150, n_visit: int = 24, sigma_mas: float = 8.0, seed: int = 3
) -> tuple[Table, Table]:
    rng = np.random.default_rng(seed)
    ra0 = 180 + rng.uniform(-0.05, 0.05, n_star)
    dec0 = 0.5 + rng.uniform(-0.05, 0.05, n_star)
    pmra = rng.normal(0, 30, n_star)
    pmdec = rng.normal(0, 30, n_star)
    plx = rng.uniform(1, 40, n_star)
    mag = rng.uniform(17, 21, n_star)
    mjd = np.sort(61400 + rng.uniform(0, 3 * 365.25, n_visit))
    zp = rng.normal(0, 0.02, n_visit)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("ra", "dec", "visit", "mjd", "flux", "id")}
    for v in range(n_visit):
        dt = (mjd[v] - 57388.0) / 365.25
        pa, pd = parallax_factors(ra0, dec0, np.full(n_star, mjd[v]))
        xi = pmra * dt + plx * pa + rng.normal(0, sigma_mas, n_star)
        eta = pmdec * dt + plx * pd + rng.normal(0, sigma_mas, n_star)
        rows["ra"].append(ra0 + xi / MAS_PER_DEG / np.cos(np.radians(dec0)))
        rows["dec"].append(dec0 + eta / MAS_PER_DEG)
        rows["visit"].append(np.full(n_star, v))
        rows["mjd"].append(np.full(n_star, mjd[v]))
        rows["flux"].append(10 ** (-0.4 * (mag + zp[v] - 31.4)) * (1 + rng.normal(0, 0.003, n_star)))
        rows["id"].append(np.arange(n_star))
    c = {k: np.concatenate(v) for k, v in rows.items()}
    n = len(c["ra"])
    sources = Table(
        {
            "coord_ra": c["ra"],
            "coord_dec": c["dec"],
            "coord_raErr": np.full(n, sigma_mas / MAS_PER_DEG),
            "visit": c["visit"].astype(np.int64),
            "ccdVisitId": c["visit"].astype(np.int64) * 1000,
            "midpointMjdTai": c["mjd"],
            "psfFlux": c["flux"],
            "psfFluxErr": c["flux"] * 0.003,
            "band": np.full(n, "r"),
            "truth_id": c["id"],
        }
    )
    truth = {"pmra": pmra, "pmdec": pmdec, "plx": plx, "zp": zp}
    return sources, truth


def test_associate_groups_each_star_once() -> None:
    sources, _ = _survey(n_visit=10)
    group = associate(sources, DrpConfig(link_radius_arcsec=1.0))
    assert (group >= 0).all()
    tid = np.asarray(sources["truth_id"])
    # every group holds one star's sources, and every star is one group
    for g in np.unique(group):
        assert len(np.unique(tid[group == g])) == 1
    assert len(np.unique(group)) == len(np.unique(tid))


def test_five_parameter_fit_recovers_motion_and_parallax_with_calibrated_errors() -> None:
    sources, truth = _survey()
    cfg = DrpConfig(astrometry_iterations=1)
    group = associate(sources, cfg)
    sol = fit_astrometry_global(sources, group, cfg)
    tid = np.asarray(sources["truth_id"])
    star_of_group = np.array([tid[group == g][0] for g in range(group.max() + 1)])
    for k, col in ((2, "pmra"), (3, "pmdec"), (4, "plx")):
        pull = (sol.params[:, k] - np.asarray(truth[col])[star_of_group]) / np.sqrt(sol.cov[:, k, k])
        assert abs(pull.mean()) < 0.25, (col, pull.mean())
        assert 0.8 < pull.std() < 1.2, (col, pull.std())
    # 24 visits at 8 mas over 3 years: proper motion to ~1 mas/yr, parallax to a few mas
    assert np.median(np.sqrt(sol.cov[:, 2, 2])) < 2.0
    assert np.median(np.sqrt(sol.cov[:, 4, 4])) < 5.0


def test_parallax_factor_has_annual_period() -> None:
    mjd = 61400 + np.arange(0, 730, 5.0)
    pa, _ = parallax_factors(np.full(len(mjd), 180.0), np.full(len(mjd), 0.5), mjd)
    assert 0.9 < np.ptp(pa) / 2 < 1.05  # ~1 AU amplitude on the ecliptic
    spectrum = np.abs(np.fft.rfft(pa - pa.mean()))
    freq = np.fft.rfftfreq(len(pa), d=5.0)
    assert 1 / freq[np.argmax(spectrum)] == pytest.approx(365.25, rel=0.05)


def test_ubercal_recovers_zero_point_offsets() -> None:
    sources, truth = _survey(n_visit=12)
    cfg = DrpConfig()
    group = associate(sources, cfg)
    sol = ubercal(sources, group, cfg)
    zp = np.asarray(truth["zp"])
    got = np.array([sol.delta[v * 1000] for v in range(len(zp))])
    # the gauge is mean δ = 0: compare offsets about their mean
    assert np.allclose(got, zp - zp.mean(), atol=0.002)
    assert sol.rms_mmag < 5
    corrected = np.asarray(sources["psfFlux"]) * sol.factor(np.asarray(sources["ccdVisitId"]))
    mags = -2.5 * np.log10(corrected)
    rms = [np.std(mags[group == g]) for g in range(group.max() + 1)]
    assert np.median(rms) < 0.005
