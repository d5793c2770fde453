"""The survey cadence: a small, documented scheduler for one field.

``rubin-scheduler`` needs data files that cannot be downloaded here, so the simulator
plans its own visits with rules that give the downstream pipelines what they need:

1. **Seasons.** The field (RA≈180°) is in opposition in March. Each year gets
   ``ceil(n_nights / years)`` nights spread evenly between mid-January and mid-June
   (±4 days), so every year has epochs months apart at different parallax factors
   and the survey spans ``years`` (≥3) years for proper motions.
2. **Time of night.** For each night the scheduler scans the night in 5-minute steps for
   moments with the Sun below −12° and the field at airmass < 2; it starts the first
   visit at a random moment of the best (lowest-airmass) third of that window. Nights
   without such a window move on by a day.
3. **Pairs.** Each night observes the field twice in the same band, 30±5 min apart, so
   asteroids form tracklets (the last night may hold one visit to reach ``n_visits``).
4. **Bands.** The band is the least used so far among the preset's bands; ties go to
   the bluest band in dark time (moon illumination < 0.4) and to the reddest in bright
   time, as real schedulers do to protect blue depth.
5. **Conditions.** Seeing (FWHM at 500 nm, zenith) is log-normal with median 0.8″, then
   scaled by X^0.6 and λ^−0.2 and clipped to 0.6–1.3″; clouds take 0–0.02 mag on 60 % of
   visits and 0.02–0.3 mag otherwise; sky brightness follows band, airmass and moon.

The pointing errors (what the telescope reports vs where it pointed) and the
per-visit jitter seeds are drawn here too, so one visit is one self-contained record.

Astronomical quantities use low-precision formulas (Sun: the Astronomical Almanac's
0.01° series; Moon phase from the mean elongation; GMST from its linear series), which
are far better than a scheduler needs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import erfa
import numpy as np
from astropy.time import Time

from pachon.pipelines.sim.config import SimConfig
from pachon.pipelines.sim.photometry import LAMBDA_NM, sky_mag

__all__ = ["PACHON_SITE", "Visit", "day_obs_of", "plan_survey"]

PACHON_SITE = {"lon": -70.7367, "lat": -30.2446, "height": 2663.0}
"""Cerro Pachón (deg, deg, m)."""


@dataclass(frozen=True)
class Visit:
    """One planned and executed visit: commanded values, conditions and the hidden truth."""

    exposure: int
    day_obs: int
    seq_num: int
    band: str
    mjd_start: float  # TAI
    exposure_time: float
    ra: float  # commanded boresight, deg
    dec: float
    sky_angle: float  # commanded rotation, deg
    airmass: float
    seeing: float  # PSF FWHM at the field centre, arcsec
    sky_mag: float  # mag/arcsec²
    moon_illumination: float
    cloud: float  # transparency loss, mag
    true_ra: float  # actual boresight, deg
    true_dec: float
    true_sky_angle: float
    psf_e1: float  # PSF ellipticity at the field centre
    psf_e2: float
    jitter_seed: int

    @property
    def mjd_mid(self) -> float:
        return self.mjd_start + 0.5 * self.exposure_time / 86400.0

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def day_obs_of(mjd_tai: float) -> int:
    """The observing night (YYYYMMDD) as Rubin defines it: the UTC date 12 hours earlier."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        t = Time(mjd_tai - 0.5, format="mjd", scale="tai").utc
        return int(t.strftime("%Y%m%d"))


def _sun_radec(jd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = jd - 2451545.0
    L = np.radians(280.460 + 0.9856474 * n)
    g = np.radians(357.528 + 0.9856003 * n)
    lam = L + np.radians(1.915) * np.sin(g) + np.radians(0.020) * np.sin(2 * g)
    eps = np.radians(23.439 - 4e-7 * n)
    return np.arctan2(np.cos(eps) * np.sin(lam), np.cos(lam)), np.arcsin(np.sin(eps) * np.sin(lam))


def _altitude(ra: np.ndarray | float, dec: np.ndarray | float, jd: np.ndarray) -> np.ndarray:
    gmst = np.radians(280.46061837 + 360.98564736629 * (jd - 2451545.0))
    ha = gmst + np.radians(PACHON_SITE["lon"]) - ra
    lat = np.radians(PACHON_SITE["lat"])
    return np.asarray(np.arcsin(np.sin(lat) * np.sin(dec) + np.cos(lat) * np.cos(dec) * np.cos(ha)))


def moon_illumination(mjd: float) -> float:
    """Illuminated fraction of the Moon from the mean elongation (±0.05 accuracy)."""
    t = (mjd + 2400000.5 - 2451545.0) / 36525.0
    d = math.radians((297.8501921 + 445267.1114034 * t) % 360.0)
    return 0.5 * (1.0 - math.cos(d))


def _airmass(alt: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / np.sin(np.clip(alt, np.radians(5), None)))


def _observable_window(ra: float, dec: float, mjd_night: float) -> tuple[np.ndarray, np.ndarray]:
    """Times (MJD) of the night starting at local noon ``mjd_night`` when the field is usable."""
    mjd = mjd_night + np.arange(0, 1.0, 5.0 / 1440.0)
    jd = mjd + 2400000.5
    sra, sdec = _sun_radec(jd)
    sun_alt = _altitude(sra, sdec, jd)
    alt = _altitude(np.radians(ra), np.radians(dec), jd)
    ok = (sun_alt < np.radians(-12.0)) & (alt > np.radians(30.0))
    return mjd[ok], _airmass(alt[ok])


def plan_survey(config: SimConfig, rng: np.random.Generator) -> list[Visit]:
    """Plan every visit of the survey (see the module docstring for the rules)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)  # future dates: "dubious year" for leap seconds
        return _plan(config, rng)


def _plan(config: SimConfig, rng: np.random.Generator) -> list[Visit]:
    n_nights = math.ceil(config.n_visits / 2)
    per_year = math.ceil(n_nights / config.years)
    visits: list[Visit] = []
    band_use = dict.fromkeys(config.bands, 0)
    bands_blue_first = sorted(config.bands, key=lambda b: LAMBDA_NM[b])
    nights_done = 0
    for year in range(config.years):
        n_this = min(per_year, n_nights - nights_done)
        if n_this <= 0:
            break
        jan15 = Time(f"{config.start_year + year}-01-15T16:00:00", scale="utc").mjd  # local noon ≈ 16 UT
        offsets = np.linspace(0.0, 150.0, n_this) if n_this > 1 else np.array([65.0])
        for off in offsets:
            night = math.floor(jan15 + off + rng.uniform(-4, 4)) + 16.0 / 24.0
            for _ in range(10):
                times, airmasses = _observable_window(config.ra, config.dec, night)
                if len(times) >= 12:
                    break
                night += 1.0
            else:  # pragma: no cover - the field is observable in these months
                raise RuntimeError(f"field RA={config.ra} Dec={config.dec} not observable near MJD {night}")
            order = np.argsort(airmasses)
            best = times[order[: max(1, len(order) // 3)]]
            start = float(rng.choice(best))
            n_in_night = min(2, config.n_visits - len(visits))
            illum = moon_illumination(start)
            least = min(band_use.values())
            candidates = [b for b in bands_blue_first if band_use[b] == least]
            band = candidates[0] if illum < 0.4 else candidates[-1]
            band_use[band] += 1
            seeing0 = float(np.exp(rng.normal(np.log(0.8), 0.18)))
            for k in range(n_in_night):
                t = start + k * (30.0 + rng.uniform(-5, 5)) / 1440.0
                jd = np.array([t + 2400000.5])
                airmass = float(_airmass(_altitude(np.radians(config.ra), np.radians(config.dec), jd))[0])
                seeing = seeing0 * float(np.exp(rng.normal(0, 0.05)))
                seeing *= airmass**0.6 * (LAMBDA_NM[band] / 500.0) ** -0.2
                seeing = float(np.clip(seeing, 0.6, 1.3))
                cloud = float(rng.uniform(0, 0.02) if rng.uniform() < 0.6 else rng.uniform(0.02, 0.3))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", erfa.ErfaWarning)
                    t_tai = Time(t, format="mjd", scale="utc").tai.mjd
                day_obs = day_obs_of(t_tai)
                seq = k + 1
                dra, ddec = rng.uniform(-1, 1, 2) * config.dither_arcsec / 3600.0
                ra = config.ra + dra / math.cos(math.radians(config.dec))
                dec = config.dec + ddec
                # pointing error: radial offset ≤ 70 % of the stated bound, rotation error small
                perr = config.pointing_error_arcsec
                r_off = perr * 0.7 * math.sqrt(rng.uniform())
                phi = rng.uniform(0, 2 * math.pi)
                rot_err = rng.normal(0, 8.0) / 3600.0  # deg
                rot_err = float(np.clip(rot_err, -20 / 3600, 20 / 3600))
                visits.append(
                    Visit(
                        exposure=day_obs * 1000 + seq,
                        day_obs=day_obs,
                        seq_num=seq,
                        band=band,
                        mjd_start=round(t_tai, 8),
                        exposure_time=config.exposure_time,
                        ra=ra,
                        dec=dec,
                        sky_angle=0.0,
                        airmass=round(airmass, 4),
                        seeing=round(seeing, 4),
                        sky_mag=round(sky_mag(band, airmass, illum), 3),
                        moon_illumination=round(illum, 3),
                        cloud=round(cloud, 4),
                        true_ra=ra + r_off * math.cos(phi) / 3600.0 / math.cos(math.radians(dec)),
                        true_dec=dec + r_off * math.sin(phi) / 3600.0,
                        true_sky_angle=rot_err,
                        psf_e1=float(rng.normal(0, 0.02)),
                        psf_e2=float(rng.normal(0, 0.02)),
                        jitter_seed=int(rng.integers(0, 2**31)),
                    )
                )
            nights_done += 1
    return visits
