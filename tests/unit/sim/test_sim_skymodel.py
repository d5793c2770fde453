"""The sky model: motions, variability, transients, and positions at an epoch."""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.time import Time

from pachon.pipelines.sim.skymodel import (
    REF_EPOCH_MJD,
    star_positions,
    transient_flux,
    variable_delta_mag,
)


def test_star_population(tiny_survey) -> None:  # type: ignore[no-untyped-def]
    stars = tiny_survey.sky.stars
    assert len(stars) > 500
    pm = np.hypot(stars["pm_ra"], stars["pm_dec"])
    fast = np.mean(pm > 25)
    assert 0.01 < fast < 0.1  # "a few percent with measurable motion"
    assert stars["is_variable"].sum() >= 3
    # fainter stars are more numerous (Galactic-like counts)
    assert np.sum(stars["mag_r"] > 23) > 3 * np.sum(stars["mag_r"] < 19)
    assert set(stars.colnames) >= {f"flux_{b}" for b in "ugrizy"}


def test_proper_motion_matches_astropy(tiny_survey) -> None:  # type: ignore[no-untyped-def]
    """Our linear PM propagation agrees with astropy's space motion (no parallax) to < 0.5 mas."""
    stars = tiny_survey.sky.stars[:50].copy()
    stars["parallax"] = 1e-6
    mjd = REF_EPOCH_MJD + 3 * 365.25
    ra, dec = star_positions(stars, mjd, np.zeros(3))
    c = SkyCoord(
        ra=stars["ra"] * u.deg, dec=stars["dec"] * u.deg, pm_ra_cosdec=stars["pm_ra"] * u.mas / u.yr,
        pm_dec=stars["pm_dec"] * u.mas / u.yr, obstime=Time(REF_EPOCH_MJD, format="mjd", scale="tai"),
        distance=1e6 * u.pc,
    )  # fmt: skip
    moved = c.apply_space_motion(new_obstime=Time(mjd, format="mjd", scale="tai"))
    sep = moved.separation(SkyCoord(ra * u.deg, dec * u.deg)).to_value(u.mas)
    assert sep.max() < 0.5


def test_parallax_displacement_has_the_right_size(tiny_survey) -> None:  # type: ignore[no-untyped-def]
    stars = tiny_survey.sky.stars[:20].copy()
    stars["pm_ra"] = 0.0
    stars["pm_dec"] = 0.0
    observer = np.array([0.0, 1.0, 0.0])
    ra, dec = star_positions(stars, REF_EPOCH_MJD, observer)
    shift = np.hypot((ra - stars["ra"]) * np.cos(np.radians(stars["dec"])), dec - stars["dec"]) * 3.6e6
    # for a star near RA 180°, Dec 0° and an observer 1 AU along +y (perpendicular) the shift is ≈ the parallax
    assert np.allclose(shift, stars["parallax"], rtol=0.02)


def test_variables_and_transients_vary(tiny_survey) -> None:  # type: ignore[no-untyped-def]
    var = tiny_survey.sky.variables
    t = np.linspace(0, 5, 400) + 61000
    dm = np.array([variable_delta_mag(var, "g", ti) for ti in t])
    ptp = np.ptp(dm, axis=0)
    rr = np.asarray(var["var_type"]) == "RRLyrae"
    assert np.allclose(ptp[rr], var["amplitude"][rr], rtol=0.05)
    eb = ~rr
    assert np.all(ptp[eb] <= var["amplitude"][eb] + 1e-9)
    tr = tiny_survey.sky.transients
    sn = np.flatnonzero(tr["type"] == "SN")[0]
    times = tr["t0"][sn] + np.linspace(-30, 120, 3000)
    flux = np.array([transient_flux(tr, "r", ti)[sn] for ti in times])
    peak_flux = 10 ** (-0.4 * (tr["peak_mag_r"][sn] - 31.4))
    assert abs(flux.max() / peak_flux - 1) < 1e-3
    assert flux[0] < 0.05 * peak_flux and flux[-1] < 0.3 * peak_flux
