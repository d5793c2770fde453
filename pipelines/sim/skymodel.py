"""The simulated sky: stars (with motion and variability), galaxies, transients, asteroids.

Everything is drawn once from the seed (:func:`make_sky`) as astropy Tables that become the
truth tables verbatim. Per visit, :func:`sources_at` evaluates where every source is and how
bright it is at that moment in that band.

Models (deliberately simple, each with its parameters in truth):

* **Stars.** Magnitudes r ∈ [14.5, 25.5] with ``dlogN/dm = 0.25`` (high-latitude-like);
  g−r from a mixture of halo turn-off (0.45±0.12) and disk dwarfs (0.6–1.5), other colours
  from a stellar-locus-like linear relation. Proper motions ~N(0, 4 mas/yr) and parallaxes
  0.1–1.5 mas, except ``high_pm_fraction`` of stars with 30–300 mas/yr and 5–60 mas.
  Positions refer to epoch J2016.0 (the refcat epoch); the apparent position at time t
  adds ``pm (t − 2016.0)`` and the parallax displacement from the observer's barycentric
  position (the classic ``π (X sin α − Y cos α, X cos α sin δ + Y sin α sin δ − Z cos δ)``).
* **Periodic variables.** RR Lyrae-like (P 0.45–0.75 d, sawtooth: 15 % rise, amplitude
  0.5–1.2 mag in g scaled per band) and eclipsing binaries (P 0.3–5 d, Gaussian primary and
  secondary eclipses of 0.2–0.8 mag and 10–60 % of that, width 4–10 % of phase, grey).
* **Galaxies.** Sérsic n = 1 (50 %), 4 (25 %) or 0.5–2.5 (25 %); half-light radius
  log-normal around ``0.8″ × 10^(−0.15 (r−20))``; axis ratio 0.3–1; colours of a mix of
  red and blue galaxies.
* **Supernovae.** In galaxies brighter than r = 23.5, offset by up to one half-light
  radius, with a Bazin light curve ``F = A e^{−Δt/τ_fall} / (1 + e^{−Δt/τ_rise})`` (rise
  3–8 d, fall 20–50 d, slower in red bands), peak r 20–23.5, and peak times placed near
  visit nights so the survey sees them.
* **Asteroids.** See :mod:`pachon.pipelines.sim.orbits`; each is constructed to cross a
  random detector at the first visit of a random night, so a pair of visits sees it.
* **Flares.** A few red dwarfs flare once, around a visit: a 1-minute linear rise and an
  exponential decay (5–30 min) with an amplitude of 2–10× the quiescent g flux, larger in
  the blue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time
from numpy.typing import NDArray

from pachon.pipelines.sim.cadence import Visit
from pachon.pipelines.sim.config import BANDS, SimConfig
from pachon.pipelines.sim.optics import DetectorGeometry, inverse_gnomonic
from pachon.pipelines.sim.orbits import ASTEROID_COLORS, Orbits, construct_orbits
from pachon.pipelines.sim.photometry import mag_to_flux

__all__ = ["REF_EPOCH_MJD", "Sky", "SourceKind", "make_sky", "sources_at"]

REF_EPOCH_MJD = 57388.0  # J2016.0 (TAI ≈ TDB here), the Gaia DR3 reference epoch
MAS = 1.0 / 3.6e6  # deg
Array = NDArray[np.float64]

RR_AMPLITUDE = {"u": 1.35, "g": 1.0, "r": 0.75, "i": 0.6, "z": 0.55, "y": 0.5}
SN_COLOR = {"u": 0.8, "g": 0.1, "r": 0.0, "i": 0.25, "z": 0.45, "y": 0.6}
FLARE_SCALE = {"u": 1.6, "g": 1.0, "r": 0.55, "i": 0.35, "z": 0.25, "y": 0.2}


class SourceKind:
    """Values of the ``type`` column of the per-visit truth."""

    STAR = "star"
    GALAXY = "galaxy"
    TRANSIENT = "transient"
    ASTEROID = "asteroid"


@dataclass
class Sky:
    """The whole simulated sky of one run."""

    stars: Table
    galaxies: Table
    variables: Table
    transients: Table
    orbits: Orbits

    def orbit_table(self) -> Table:
        o = self.orbits
        return Table(
            {
                "id": o.id,
                "kind": o.kind,
                "a": o.a,
                "e": o.e,
                "incl": o.incl,
                "node": o.node,
                "argperi": o.argperi,
                "mean_anomaly": o.mean_anomaly,
                "epoch": o.epoch,
                "H_r": o.h_r,
                "G": o.g,
            },
            meta={
                "description": "heliocentric J2000-ecliptic Keplerian elements; angles deg, a AU, epoch MJD TDB",
                "colors_from_r": dict(ASTEROID_COLORS),
            },
        )


def _uniform_positions(rng: np.random.Generator, n: int, config: SimConfig) -> tuple[Array, Array]:
    hx, hy = config.sky_half_width_deg
    xi = rng.uniform(-hx, hx, n)
    eta = rng.uniform(-hy, hy, n)
    return inverse_gnomonic(xi, eta, config.ra, config.dec)


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> Array:
    u = rng.uniform(size=n)
    return lo + np.log10(1 + u * (10 ** (slope * (hi - lo)) - 1)) / slope


def _colors_star(gr: Array) -> dict[str, Array]:
    ri = np.where(gr < 1.3, np.maximum(0.05, 0.45 * gr - 0.08), 0.5 + 2.0 * (gr - 1.3))
    return {
        "u": 0.9 + 1.1 * np.clip(gr, 0, 1.3) + gr,  # u−r
        "g": gr,
        "r": np.zeros_like(gr),
        "i": -ri,
        "z": -(ri + 0.35 * ri + 0.02),
        "y": -(ri + 0.55 * ri + 0.03),
    }


def _area_deg2(config: SimConfig) -> float:
    hx, hy = config.sky_half_width_deg
    return 4 * hx * hy


def make_sky(config: SimConfig, visits: list[Visit], rng: np.random.Generator) -> Sky:
    """Draw the sky of a run (deterministic given ``rng``'s state)."""
    area = _area_deg2(config)
    # ---------------------------------------------------------------- stars
    n_star = int(rng.poisson(config.star_density * area))
    ra, dec = _uniform_positions(rng, n_star, config)
    rmag = _power_law_mags(rng, n_star, config.star_mag_range[0], config.star_mag_range[1], 0.25)
    halo = rng.uniform(size=n_star) < 0.6
    gr = np.where(halo, rng.normal(0.45, 0.12, n_star), rng.uniform(0.6, 1.5, n_star))
    colors = _colors_star(gr)
    high = rng.uniform(size=n_star) < config.high_pm_fraction
    pm_tot = np.where(high, rng.uniform(30, 300, n_star), np.abs(rng.normal(0, 4, n_star)))
    pm_angle = rng.uniform(0, 2 * math.pi, n_star)
    parallax = np.where(high, rng.uniform(5, 60, n_star), rng.uniform(0.1, 1.5, n_star))
    stars = Table(
        {
            "id": np.arange(n_star, dtype=np.int64) + 1_000_000_000,
            "ra": ra,
            "dec": dec,
            "pm_ra": pm_tot * np.sin(pm_angle),
            "pm_dec": pm_tot * np.cos(pm_angle),
            "parallax": parallax,
        },
        meta={
            "ref_epoch_mjd": REF_EPOCH_MJD,
            "description": "ra/dec (deg) at J2016.0; pm_ra = μ_α cos δ and pm_dec in mas/yr; parallax mas; "
            "mag_* AB, flux_* nJy (mean)",
        },
    )
    for b in BANDS:
        stars[f"mag_{b}"] = rmag + colors[b]
        stars[f"flux_{b}"] = mag_to_flux(stars[f"mag_{b}"])
    stars["is_variable"] = np.zeros(n_star, bool)
    stars["is_flaring"] = np.zeros(n_star, bool)

    # ---------------------------------------------------------------- variables
    cand = np.flatnonzero((rmag > 16.5) & (rmag < 22.5))
    n_var = min(len(cand), max(3, round(config.variable_fraction * n_star)))
    var_idx = np.sort(rng.choice(cand, n_var, replace=False)) if n_var else np.array([], int)
    is_rr = rng.uniform(size=n_var) < 0.5
    period = np.where(
        is_rr, rng.uniform(0.45, 0.75, n_var), np.exp(rng.uniform(np.log(0.3), np.log(5), n_var))
    )
    amp = np.where(is_rr, rng.uniform(0.5, 1.2, n_var), rng.uniform(0.2, 0.8, n_var))
    variables = Table(
        {
            "id": stars["id"][var_idx],
            "var_type": np.where(is_rr, "RRLyrae", "EclipsingBinary"),
            "period": period,
            "t0": rng.uniform(REF_EPOCH_MJD, REF_EPOCH_MJD + 10, n_var),
            "amplitude": amp,
            "secondary_depth": np.where(is_rr, 0.0, amp * rng.uniform(0.1, 0.6, n_var)),
            "eclipse_width": np.where(is_rr, 0.0, rng.uniform(0.04, 0.10, n_var)),
        },
        meta={
            "description": "period d; t0 MJD of maximum (RR) or primary eclipse (EB); amplitude mag in g "
            "(RR, scaled per band by amplitude_scale) or primary eclipse depth (EB, grey)",
            "amplitude_scale": dict(RR_AMPLITUDE),
        },
    )
    stars["is_variable"][var_idx] = True

    # ---------------------------------------------------------------- galaxies
    n_gal = int(rng.poisson(config.galaxy_density * area))
    gra, gdec = _uniform_positions(rng, n_gal, config)
    gmag = _power_law_mags(rng, n_gal, config.galaxy_mag_range[0], config.galaxy_mag_range[1], 0.3)
    kind = rng.uniform(size=n_gal)
    sersic = np.where(kind < 0.5, 1.0, np.where(kind < 0.75, 4.0, rng.uniform(0.5, 2.5, n_gal)))
    r_e = np.clip(0.8 * 10 ** (-0.15 * (gmag - 20)) * np.exp(rng.normal(0, 0.3, n_gal)), 0.12, 4.0)
    red = sersic > 3
    ggr = np.where(red, rng.normal(0.95, 0.1, n_gal), rng.normal(0.45, 0.15, n_gal))
    galaxies = Table(
        {
            "id": np.arange(n_gal, dtype=np.int64) + 2_000_000_000,
            "ra": gra,
            "dec": gdec,
            "sersic_n": sersic,
            "r_half": r_e,
            "axis_ratio": rng.uniform(0.3, 1.0, n_gal),
            "position_angle": rng.uniform(0, 180, n_gal),
        },
        meta={
            "description": "Sérsic profiles: r_half = half-light semi-major axis (arcsec); position_angle deg "
            "east of north; mag_* AB, flux_* nJy (total)"
        },
    )
    gcol = {
        "u": ggr * 1.6 + 0.3,
        "g": ggr,
        "r": np.zeros(n_gal),
        "i": -0.4 * ggr,
        "z": -0.6 * ggr,
        "y": -0.75 * ggr,
    }
    for b in BANDS:
        galaxies[f"mag_{b}"] = gmag + gcol[b]
        galaxies[f"flux_{b}"] = mag_to_flux(galaxies[f"mag_{b}"])

    # ---------------------------------------------------------------- transients
    nights = sorted({v.mjd_start for v in visits if v.seq_num == 1})
    hosts = np.flatnonzero(gmag < 23.5)
    n_sn = min(len(hosts), max(2, round(config.sn_per_deg2 * area)))
    host_idx = rng.choice(hosts, n_sn, replace=False) if n_sn else np.array([], int)
    off_r = r_e[host_idx] * np.sqrt(rng.uniform(size=n_sn)) / 3600.0
    off_phi = rng.uniform(0, 2 * math.pi, n_sn)
    sn_ra = gra[host_idx] + off_r * np.sin(off_phi) / np.cos(np.radians(gdec[host_idx]))
    sn_dec = gdec[host_idx] + off_r * np.cos(off_phi)
    sn_t0 = np.array([nights[k] for k in rng.integers(0, len(nights), n_sn)]) + rng.uniform(-15, 40, n_sn)
    peak_r = rng.uniform(20.0, 23.5, n_sn)
    flare_cand = np.flatnonzero((gr > 1.0) & (rmag > 17) & (rmag < 21.5) & ~stars["is_variable"])
    n_fl = min(config.n_flares, len(flare_cand))
    fl_idx = rng.choice(flare_cand, n_fl, replace=False) if n_fl else np.array([], int)
    stars["is_flaring"][fl_idx] = True
    fl_visit = [visits[k] for k in rng.integers(0, len(visits), n_fl)]
    fl_t0 = np.array([v.mjd_start for v in fl_visit]) + rng.uniform(-10, 0.3, n_fl) / 1440.0
    n_tr = n_sn + n_fl
    transients = Table(
        {
            "id": np.arange(n_tr, dtype=np.int64) + 4_000_000_000,
            "type": np.array(["SN"] * n_sn + ["flare"] * n_fl),
            "host_id": np.concatenate([galaxies["id"][host_idx], stars["id"][fl_idx]]).astype(np.int64),
            "ra": np.concatenate([sn_ra, np.asarray(stars["ra"][fl_idx])]),
            "dec": np.concatenate([sn_dec, np.asarray(stars["dec"][fl_idx])]),
            "t0": np.concatenate([sn_t0, fl_t0]),
            "tau_rise": np.concatenate([rng.uniform(3, 8, n_sn), np.full(n_fl, 1.0 / 1440.0)]),
            "tau_fall": np.concatenate([rng.uniform(20, 50, n_sn), rng.uniform(5, 30, n_fl) / 1440.0]),
        },
        meta={
            "description": "SN: Bazin light curve, t0 MJD reference time, tau in days, peak_mag_* AB at the "
            "light-curve maximum; flare: linear rise over tau_rise ending at t0, exponential decay "
            "tau_fall, amplitude_* nJy added to the host star (host_id); flares move with their star"
        },
    )
    for b in BANDS:
        transients[f"peak_mag_{b}"] = np.concatenate([peak_r + SN_COLOR[b], np.full(n_fl, np.nan)])
        transients[f"amplitude_{b}"] = np.concatenate(
            [
                np.full(n_sn, np.nan),
                np.asarray(stars["flux_g"][fl_idx]) * rng.uniform(2, 10, n_fl) * FLARE_SCALE[b],
            ]
        )
    # ---------------------------------------------------------------- asteroids
    # each asteroid crosses a detector (not a chip gap) at the first visit of a random night
    first_visits = [v for v in visits if v.seq_num == 1]
    targets = []
    cam = config.camera
    for _ in range(config.n_asteroids):
        v = first_visits[int(rng.integers(0, len(first_visits)))]
        geom = DetectorGeometry(cam, int(rng.integers(0, cam.n_detectors)))
        px, py = rng.uniform(0.1, 0.9) * cam.nx, rng.uniform(0.1, 0.9) * cam.ny
        ra_t, dec_t = geom.wcs(v.true_ra, v.true_dec, v.true_sky_angle).all_pix2world([px], [py], 0)
        targets.append((v.mjd_mid, float(ra_t[0]), float(dec_t[0])))
    orbits = construct_orbits(rng, config.n_asteroids, config.n_neos, targets)
    return Sky(stars=stars, galaxies=galaxies, variables=variables, transients=transients, orbits=orbits)


def variable_delta_mag(variables: Table, band: str, mjd: float) -> Array:
    """Magnitude offsets of the periodic variables at time ``mjd`` (positive = fainter)."""
    if len(variables) == 0:
        return np.zeros(0)
    phase = np.mod((mjd - np.asarray(variables["t0"])) / np.asarray(variables["period"]), 1.0)
    amp = np.asarray(variables["amplitude"])
    rr = np.asarray(variables["var_type"]) == "RRLyrae"
    saw = np.where(phase < 0.85, phase / 0.85, (1 - phase) / 0.15)  # 0 at maximum light, 1 at minimum
    rr_dm = RR_AMPLITUDE[band] * amp * (saw - 0.5)
    w = np.asarray(variables["eclipse_width"])
    w = np.where(w > 0, w, 1.0)
    d1 = np.minimum(phase, 1 - phase)
    d2 = np.abs(phase - 0.5)
    eb_dm = amp * np.exp(-0.5 * (d1 / (w / 2.5)) ** 2) + np.asarray(variables["secondary_depth"]) * np.exp(
        -0.5 * (d2 / (w / 2.5)) ** 2
    )
    return np.where(rr, rr_dm, eb_dm)


def transient_flux(transients: Table, band: str, mjd: float) -> Array:
    """Flux (nJy) each transient adds at time ``mjd`` (SN: total; flare: on top of its star)."""
    if len(transients) == 0:
        return np.zeros(0)
    t0 = np.asarray(transients["t0"])
    rise = np.asarray(transients["tau_rise"])
    fall = np.asarray(transients["tau_fall"])
    is_sn = np.asarray(transients["type"]) == "SN"
    scale = 1.0 + 0.06 * BANDS.index(band)
    fall_b = np.where(is_sn, fall * scale, fall)
    dt = mjd - t0
    with np.errstate(over="ignore", invalid="ignore"):
        bazin = np.exp(-dt / fall_b) / (1 + np.exp(-dt / rise))
    # normalise Bazin to 1 at its maximum: t_max = τr ln(τf/τr − 1)
    tmax = rise * np.log(np.maximum(fall_b / rise - 1, 1e-9))
    peak = np.exp(-tmax / fall_b) / (1 + np.exp(-tmax / rise))
    sn = mag_to_flux(np.nan_to_num(np.asarray(transients[f"peak_mag_{band}"]), nan=99.0)) * bazin / peak
    sn = np.where((dt > -10 * rise) & np.isfinite(sn), sn, 0.0)
    amp = np.nan_to_num(np.asarray(transients[f"amplitude_{band}"]))
    flare = np.where(
        dt >= 0, amp * np.exp(-np.clip(dt, 0, None) / fall), np.where(dt > -rise, amp * (1 + dt / rise), 0.0)
    )
    return np.where(is_sn, sn, flare)


def years_since_ref(mjd: float) -> float:
    return (mjd - REF_EPOCH_MJD) / 365.25


def star_positions(stars: Table, mjd: float, observer_au: Array) -> tuple[Array, Array]:
    """Astrometric (ra, dec) in deg of every star at ``mjd`` from the observer (barycentric AU)."""
    ra0 = np.radians(np.asarray(stars["ra"]))
    dec0 = np.radians(np.asarray(stars["dec"]))
    dt = years_since_ref(mjd)
    x, y, z = observer_au
    plx = np.asarray(stars["parallax"])
    d_ra = np.asarray(stars["pm_ra"]) * dt + plx * (x * np.sin(ra0) - y * np.cos(ra0))
    d_dec = np.asarray(stars["pm_dec"]) * dt + plx * (
        x * np.cos(ra0) * np.sin(dec0) + y * np.sin(ra0) * np.sin(dec0) - z * np.cos(dec0)
    )
    return (
        np.asarray(stars["ra"]) + d_ra * MAS / np.cos(dec0),
        np.asarray(stars["dec"]) + d_dec * MAS,
    )


def sources_at(sky: Sky, visit: Visit, observer_au: Array, ephem: dict[str, Array] | None) -> Table:
    """Every source of the sky at one visit: position, flux (nJy) and what it is.

    Columns: ``id``, ``type`` (see :class:`SourceKind`), ``ra``, ``dec`` (deg, astrometric
    at mid-exposure), ``flux`` (nJy in the visit's band, above the atmosphere), and for
    rendering ``sersic_n``, ``r_half``, ``axis_ratio``, ``position_angle`` (galaxies) and
    ``ra_end``, ``dec_end`` (asteroid position at the shutter close, for trails).
    """
    band = visit.band
    mjd = visit.mjd_mid
    s = sky.stars
    sra, sdec = star_positions(s, mjd, observer_au)
    sflux = np.array(s[f"flux_{band}"], dtype=float)
    if len(sky.variables):
        idx = np.searchsorted(np.asarray(s["id"]), np.asarray(sky.variables["id"]))
        sflux[idx] *= 10 ** (-0.4 * variable_delta_mag(sky.variables, band, mjd))
    tr = sky.transients
    tflux = transient_flux(tr, band, mjd)
    is_flare = np.asarray(tr["type"]) == "flare"
    if is_flare.any():
        hidx = np.searchsorted(np.asarray(s["id"]), np.asarray(tr["host_id"])[is_flare])
        sflux[hidx] += tflux[is_flare]
    is_sn = ~is_flare & (tflux > 1e-3)
    g = sky.galaxies
    parts: list[dict[str, Any]] = [
        {"id": np.asarray(s["id"]), "type": SourceKind.STAR, "ra": sra, "dec": sdec, "flux": sflux},
        {
            "id": np.asarray(g["id"]),
            "type": SourceKind.GALAXY,
            "ra": np.asarray(g["ra"]),
            "dec": np.asarray(g["dec"]),
            "flux": np.asarray(g[f"flux_{band}"]),
            "sersic_n": np.asarray(g["sersic_n"]),
            "r_half": np.asarray(g["r_half"]),
            "axis_ratio": np.asarray(g["axis_ratio"]),
            "position_angle": np.asarray(g["position_angle"]),
        },
        {
            "id": np.asarray(tr["id"])[is_sn],
            "type": SourceKind.TRANSIENT,
            "ra": np.asarray(tr["ra"])[is_sn],
            "dec": np.asarray(tr["dec"])[is_sn],
            "flux": tflux[is_sn],
        },
    ]
    if ephem is not None and len(ephem["id"]):
        parts.append(
            {
                "id": ephem["id"],
                "type": SourceKind.ASTEROID,
                "ra": ephem["ra"],
                "dec": ephem["dec"],
                "flux": ephem["flux"],
                "ra_end": ephem["ra_end"],
                "dec_end": ephem["dec_end"],
                "ra_start": ephem["ra_start"],
                "dec_start": ephem["dec_start"],
            }
        )
    cols = ["id", "type", "ra", "dec", "flux", "sersic_n", "r_half", "axis_ratio", "position_angle"]
    cols += ["ra_start", "dec_start", "ra_end", "dec_end"]
    out: dict[str, list[Array]] = {c: [] for c in cols}
    for p in parts:
        n = len(p["id"])
        for c in cols:
            if c == "type":
                out[c].append(np.full(n, p["type"], dtype="<U9"))
            elif c in p:
                out[c].append(np.asarray(p[c]))
            elif c == "id":
                out[c].append(np.zeros(n, np.int64))
            else:
                out[c].append(np.full(n, np.nan))
    return Table({c: np.concatenate(v) for c, v in out.items()})


def mjd_to_year(mjd: float) -> float:
    return float(Time(mjd, format="mjd", scale="tai").jyear)
