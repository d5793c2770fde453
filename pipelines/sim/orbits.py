r"""Asteroids on Keplerian heliocentric orbits and their topocentric ephemerides.

The math (two-body, heliocentric, J2000 ecliptic frame, units AU and days):

* Elements ``(a, e, i, Ω, ω, M₀)`` at epoch ``t₀`` (TDB). Mean motion
  ``n = k / a^{3/2}`` with Gauss's constant ``k = 0.01720209895`` (so ``GM☉ = k²``).
* At time ``t``: mean anomaly ``M = M₀ + n (t − t₀)``; Kepler's equation ``M = E − e sin E``
  is solved by Newton iteration; the perifocal position is
  ``(a (cos E − e), a √(1−e²) sin E, 0)`` and the velocity
  ``n a / (1 − e cos E) · (−sin E, √(1−e²) cos E, 0)``; the rotation
  ``R_z(Ω) R_x(i) R_z(ω)`` takes both to the ecliptic frame, and a rotation by the
  obliquity ε₀ = 23.4392911° to ICRS (equatorial) axes.
* The observer is the Earth's barycentre position from astropy's built-in ephemeris
  (ERFA's ``epv00``, offline, a few km) plus the site's geocentric GCRS position; the Sun's
  barycentric position comes from the same ephemeris. The topocentric astrometric
  direction is ``r_ast(t − τ) + r_☉ − r_obs`` with the light time ``τ = Δ / c`` iterated twice.
* Brightness follows the IAU H–G system: ``m = H + 5 log₁₀(r Δ) − 2.5 log₁₀((1−G) Φ₁ + G Φ₂)``
  with ``Φᵢ = exp(−Aᵢ tan(α/2)^{Bᵢ})``, ``A = (3.33, 1.87)``, ``B = (0.63, 1.22)``; ``H`` is
  given in r and other bands follow fixed asteroid colours.

So that a small field sees asteroids at all, each one is *constructed* to cross the field:
pick a night, a position in the field, a heliocentric distance (2.2–3.2 AU main belt,
1.05–1.5 AU NEO), a semi-major axis, an orbital-plane tilt and a flight-path angle; the
state vector there, at the emission time, defines the orbit, converted to elements with
the standard state→elements formulas. Everything after that uses only the elements.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import erfa
import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, get_body_barycentric
from astropy.time import Time
from numpy.typing import NDArray

from pachon.pipelines.sim.cadence import PACHON_SITE

__all__ = [
    "ASTEROID_COLORS",
    "GAUSS_K",
    "Orbits",
    "elements_from_state",
    "observer_and_sun",
    "solve_kepler",
]

GAUSS_K = 0.01720209895
GM_SUN = GAUSS_K**2  # AU³/day²
C_AU_PER_DAY = 173.1446326846693
OBLIQUITY = math.radians(23.4392911)
ASTEROID_COLORS = {"u": 1.7, "g": 0.55, "r": 0.0, "i": -0.15, "z": -0.2, "y": -0.25}
"""Magnitude offsets from r (a mix of S- and C-type colours)."""

Array = NDArray[np.float64]


def solve_kepler(m: Array, e: Array) -> Array:
    """Eccentric anomaly E from mean anomaly M (rad) and eccentricity (< 1), by Newton."""
    m = np.mod(m, 2 * math.pi)
    ecc = np.where(e > 0.8, math.pi, m)
    for _ in range(30):
        d = (ecc - e * np.sin(ecc) - m) / (1 - e * np.cos(ecc))
        ecc = ecc - d
        if np.all(np.abs(d) < 1e-14):
            break
    return np.asarray(ecc)


def _rotation(node: Array, inc: Array, argp: Array) -> Array:
    """R_z(Ω) R_x(i) R_z(ω) for each orbit: shape (n, 3, 3)."""
    co, so = np.cos(node), np.sin(node)
    ci, si = np.cos(inc), np.sin(inc)
    cw, sw = np.cos(argp), np.sin(argp)
    r = np.empty((len(node), 3, 3))
    r[:, 0, 0] = co * cw - so * sw * ci
    r[:, 0, 1] = -co * sw - so * cw * ci
    r[:, 0, 2] = so * si
    r[:, 1, 0] = so * cw + co * sw * ci
    r[:, 1, 1] = -so * sw + co * cw * ci
    r[:, 1, 2] = -co * si
    r[:, 2, 0] = sw * si
    r[:, 2, 1] = cw * si
    r[:, 2, 2] = ci
    return r


def ecliptic_to_equatorial(v: Array) -> Array:
    c, s = math.cos(OBLIQUITY), math.sin(OBLIQUITY)
    out = np.empty_like(v)
    out[..., 0] = v[..., 0]
    out[..., 1] = c * v[..., 1] - s * v[..., 2]
    out[..., 2] = s * v[..., 1] + c * v[..., 2]
    return out


def equatorial_to_ecliptic(v: Array) -> Array:
    c, s = math.cos(OBLIQUITY), math.sin(OBLIQUITY)
    out = np.empty_like(v)
    out[..., 0] = v[..., 0]
    out[..., 1] = c * v[..., 1] + s * v[..., 2]
    out[..., 2] = -s * v[..., 1] + c * v[..., 2]
    return out


def elements_from_state(r: Array, v: Array) -> dict[str, Array]:
    """Heliocentric ecliptic state (AU, AU/day; shape (n, 3)) → Keplerian elements (angles in rad)."""
    rn = np.linalg.norm(r, axis=1)
    h = np.cross(r, v)
    hn = np.linalg.norm(h, axis=1)
    evec = np.cross(v, h) / GM_SUN - r / rn[:, None]
    e = np.linalg.norm(evec, axis=1)
    energy = 0.5 * np.sum(v * v, axis=1) - GM_SUN / rn
    a = -GM_SUN / (2 * energy)
    inc = np.arccos(np.clip(h[:, 2] / hn, -1, 1))
    nvec = np.stack([-h[:, 1], h[:, 0], np.zeros(len(r))], axis=1)
    nn = np.linalg.norm(nvec, axis=1)
    node = np.mod(np.arctan2(nvec[:, 1], nvec[:, 0]), 2 * math.pi)
    argp = np.arccos(np.clip(np.sum(nvec * evec, axis=1) / (nn * e), -1, 1))
    argp = np.where(evec[:, 2] < 0, 2 * math.pi - argp, argp)
    nu = np.arccos(np.clip(np.sum(evec * r, axis=1) / (e * rn), -1, 1))
    nu = np.where(np.sum(r * v, axis=1) < 0, 2 * math.pi - nu, nu)
    ecc_anom = 2 * np.arctan2(np.sqrt(1 - e) * np.sin(nu / 2), np.sqrt(1 + e) * np.cos(nu / 2))
    mean_anom = np.mod(ecc_anom - e * np.sin(ecc_anom), 2 * math.pi)
    return {"a": a, "e": e, "incl": inc, "node": node, "argperi": argp, "mean_anomaly": mean_anom}


def site_gcrs_au(mjd_tai: Array) -> Array:
    """Geocentric GCRS position (AU) of Cerro Pachón, without IERS tables.

    ``r_GCRS = C2I(TT)ᵀ · R₃(−ERA(UT1)) · r_ITRS`` with ERFA's IAU 2006/2000A
    celestial-to-intermediate matrix and Earth rotation angle, taking UT1 = UTC and
    no polar motion (errors < 1 s and 0.3″ of Earth rotation: < 15 m on the site, far below
    anything the simulation resolves). Offline and valid for future dates.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        t = Time(np.atleast_1d(mjd_tai), format="mjd", scale="tai")
        tt = t.tt
        utc = t.utc
        c2i = erfa.c2i06a(tt.jd1, tt.jd2)
        era = erfa.era00(utc.jd1, utc.jd2)
    site = EarthLocation.from_geodetic(PACHON_SITE["lon"], PACHON_SITE["lat"], PACHON_SITE["height"])
    itrs = np.array([site.x.to_value(u.AU), site.y.to_value(u.AU), site.z.to_value(u.AU)])
    ce, se = np.cos(era), np.sin(era)
    # R3(−ERA) · r_ITRS: rotate the terrestrial vector by +ERA about z
    cirs = np.stack([ce * itrs[0] - se * itrs[1], se * itrs[0] + ce * itrs[1], np.full_like(ce, itrs[2])], 1)
    return np.einsum("nji,nj->ni", c2i, cirs)


def observer_and_sun(mjd_tai: Array) -> tuple[Array, Array]:
    """Barycentric ICRS positions (AU, shape (n, 3)) of Cerro Pachón and of the Sun."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        t = Time(np.atleast_1d(mjd_tai), format="mjd", scale="tai")
        earth = get_body_barycentric("earth", t, ephemeris="builtin").xyz.to_value(u.AU).T
        sun = get_body_barycentric("sun", t, ephemeris="builtin").xyz.to_value(u.AU).T
    return earth + site_gcrs_au(mjd_tai), sun


@dataclass
class Orbits:
    """A set of asteroid orbits (arrays of equal length; angles in degrees, epoch MJD TDB)."""

    id: NDArray[np.int64]
    a: Array
    e: Array
    incl: Array
    node: Array
    argperi: Array
    mean_anomaly: Array
    epoch: Array
    h_r: Array
    g: Array
    kind: NDArray[np.str_]

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, idx: NDArray[np.int64]) -> Orbits:
        return Orbits(**{name: getattr(self, name)[idx] for name in Orbits.__dataclass_fields__})

    def state(self, mjd_tdb: Array | float) -> tuple[Array, Array]:
        """Heliocentric ecliptic position (AU) and velocity (AU/day) at TDB times (one per orbit or one)."""
        t = np.broadcast_to(np.asarray(mjd_tdb, float), self.a.shape)
        n = GAUSS_K / self.a**1.5
        m = np.radians(self.mean_anomaly) + n * (t - self.epoch)
        ecc = solve_kepler(m, self.e)
        b = np.sqrt(1 - self.e**2)
        pos = np.stack([self.a * (np.cos(ecc) - self.e), self.a * b * np.sin(ecc), np.zeros_like(ecc)], 1)
        fac = n * self.a / (1 - self.e * np.cos(ecc))
        vel = np.stack([-fac * np.sin(ecc), fac * b * np.cos(ecc), np.zeros_like(ecc)], 1)
        rot = _rotation(np.radians(self.node), np.radians(self.incl), np.radians(self.argperi))
        return np.einsum("nij,nj->ni", rot, pos), np.einsum("nij,nj->ni", rot, vel)

    def topocentric(self, mjd_tai: float, observer: Array, sun: Array) -> dict[str, Array]:
        """Astrometric RA/Dec (deg), distances (AU) and phase angle (deg) seen from the observer."""
        tdb = mjd_tai + (32.184) / 86400.0  # TT−TAI; TDB−TT (<2 ms) is negligible here
        delta = np.zeros(len(self))
        for _ in range(3):
            helio, _ = self.state(tdb - delta / C_AU_PER_DAY)
            bary = ecliptic_to_equatorial(helio) + sun[None, :]
            vec = bary - observer[None, :]
            delta = np.linalg.norm(vec, axis=1)
        helio_eq = ecliptic_to_equatorial(helio)
        r = np.linalg.norm(helio_eq, axis=1)
        ra = np.degrees(np.arctan2(vec[:, 1], vec[:, 0])) % 360.0
        dec = np.degrees(np.arcsin(vec[:, 2] / delta))
        # phase angle: Sun–asteroid–observer
        cosa = np.sum(-helio_eq * -vec, axis=1) / (r * delta)
        phase = np.degrees(np.arccos(np.clip(cosa, -1, 1)))
        return {"ra": ra, "dec": dec, "r": r, "delta": delta, "phase": phase}

    def magnitude(self, band: str, r: Array, delta: Array, phase_deg: Array) -> Array:
        """Apparent AB magnitude in ``band`` (H–G phase function, fixed colours)."""
        tan_half = np.tan(np.radians(phase_deg) / 2)
        phi1 = np.exp(-3.33 * tan_half**0.63)
        phi2 = np.exp(-1.87 * tan_half**1.22)
        return np.asarray(
            self.h_r
            + ASTEROID_COLORS[band]
            + 5 * np.log10(r * delta)
            - 2.5 * np.log10((1 - self.g) * phi1 + self.g * phi2)
        )


def construct_orbits(
    rng: np.random.Generator,
    n: int,
    n_neo: int,
    targets: list[tuple[float, float, float]],
    id_offset: int = 3_000_000_000,
) -> Orbits:
    """Build ``n`` orbits, the i-th passing through sky position ``targets[i] = (mjd_tai, ra, dec)``.

    See the module docstring for the construction; the apparent r magnitude at that moment
    is drawn from 19–23 and H follows from it.
    """
    mjd = np.array([t[0] for t in targets])
    ra = np.radians([t[1] for t in targets])
    dec = np.radians([t[2] for t in targets])
    obs, sun = observer_and_sun(mjd)
    uvec = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
    is_neo = np.arange(n) < n_neo
    r_helio = np.where(is_neo, rng.uniform(1.05, 1.5, n), rng.uniform(2.2, 3.2, n))
    o = obs - sun  # heliocentric observer, equatorial
    od = np.sum(o * uvec, axis=1)
    rho = -od + np.sqrt(od**2 - np.sum(o * o, axis=1) + r_helio**2)
    pos_eq = o + rho[:, None] * uvec
    pos = equatorial_to_ecliptic(pos_eq)
    rhat = pos / np.linalg.norm(pos, axis=1)[:, None]
    z = np.array([0.0, 0.0, 1.0])
    n0 = z[None, :] - np.sum(rhat * z, axis=1)[:, None] * rhat
    n0 /= np.linalg.norm(n0, axis=1)[:, None]
    tilt = np.radians(np.where(is_neo, rng.normal(0, 20, n), rng.normal(0, 8, n)))
    # rotate the orbit normal about r̂ by the tilt (Rodrigues; n0 ⟂ r̂)
    normal = n0 * np.cos(tilt)[:, None] + np.cross(rhat, n0) * np.sin(tilt)[:, None]
    that = np.cross(normal, rhat)
    a = np.where(
        is_neo,
        np.maximum(rng.uniform(1.0, 2.2, n), 0.55 * r_helio),
        np.clip(r_helio * rng.uniform(0.92, 1.12, n), 2.1, 3.4),
    )
    speed = np.sqrt(GM_SUN * (2 / r_helio - 1 / a))
    gamma = np.where(is_neo, rng.normal(0, 0.3, n), rng.normal(0, 0.08, n))
    vel = speed[:, None] * (np.cos(gamma)[:, None] * that + np.sin(gamma)[:, None] * rhat)
    epoch_tdb = mjd + 32.184 / 86400.0 - rho / C_AU_PER_DAY
    el = elements_from_state(pos, vel)
    orbits = Orbits(
        id=np.arange(n, dtype=np.int64) + id_offset,
        a=el["a"],
        e=el["e"],
        incl=np.degrees(el["incl"]),
        node=np.degrees(el["node"]),
        argperi=np.degrees(el["argperi"]),
        mean_anomaly=np.degrees(el["mean_anomaly"]),
        epoch=epoch_tdb,
        h_r=np.zeros(n),
        g=np.full(n, 0.15),
        kind=np.where(is_neo, "NEO", "MBA"),
    )
    # H from the drawn apparent magnitude at the target moment
    target_mag = rng.uniform(19.0, 23.0, n)
    for k in range(n):
        one = orbits.subset(np.array([k]))
        topo = one.topocentric(float(mjd[k]), obs[k], sun[k])
        m0 = one.magnitude("r", topo["r"], topo["delta"], topo["phase"])[0]
        orbits.h_r[k] = target_mag[k] - m0
    return orbits
