"""A Gaia-like reference catalog of the simulated stars, sharded by HTM level 7.

What a calibration pipeline gets from Gaia DR3: bright stars (G < ``refcat_mag_limit``),
positions at the reference epoch J2016.0 with proper motions and parallaxes, each with
magnitude-dependent errors, and fluxes. Errors follow Gaia DR3's published curves roughly:
``σ_pos ≈ 0.02 + 0.4·10^{0.2(G−20)}`` mas (0.02 mas at the bright end, 0.4 mas at G = 20),
``σ_pm ≈ 1.1 σ_pos`` mas/yr, ``σ_ϖ ≈ 1.3 σ_pos`` mas, and ``σ_mag ≈ 0.001 + 0.01·10^{0.4(G−20)}``.
The catalog values are the truth *plus* these errors (drawn once from the seed).

Columns (units in the Parquet metadata): ``id`` (the truth star id), ``coord_ra``, ``coord_dec``
(deg, ICRS, epoch J2016.0), ``coord_raErr``, ``coord_decErr`` (mas), ``pm_ra`` (μ_α cos δ),
``pm_dec``, ``pm_raErr``, ``pm_decErr`` (mas/yr), ``parallax``, ``parallaxErr`` (mas),
``epoch`` (MJD TAI), ``phot_g_mean_flux``, ``phot_g_mean_fluxErr`` and ``{band}_flux``,
``{band}_fluxErr`` for ugrizy (nJy, AB).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from lsst.sphgeom import HtmPixelization, LonLat, UnitVector3d

from pachon.pipelines.sim.config import BANDS
from pachon.pipelines.sim.photometry import mag_to_flux
from pachon.pipelines.sim.skymodel import REF_EPOCH_MJD

__all__ = ["htm7_index", "make_refcat", "shard_refcat"]


def htm7_index(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """HTM level-7 pixel index (the Butler's ``htm7`` dimension) of each position."""
    pix = HtmPixelization(7)
    return np.array(
        [
            pix.index(UnitVector3d(LonLat.fromDegrees(float(a), float(d))))
            for a, d in zip(ra, dec, strict=True)
        ],
        dtype=np.int64,
    )


def make_refcat(stars: Table, mag_limit: float, rng: np.random.Generator) -> Table:
    """The Gaia-like catalog of the stars brighter than ``mag_limit`` in G."""
    gr = np.asarray(stars["mag_g"]) - np.asarray(stars["mag_r"])
    gmag = np.asarray(stars["mag_r"]) + 0.05 - 0.2 * gr + 0.02 * gr**2
    sel = gmag < mag_limit
    s = stars[sel]
    g = gmag[sel]
    n = len(s)
    sig_pos = 0.02 + 0.4 * 10 ** (0.2 * (g - 20))
    sig_pm = 1.1 * sig_pos
    sig_plx = 1.3 * sig_pos
    sig_mag = 0.001 + 0.01 * 10 ** (0.4 * (g - 20))
    cosd = np.cos(np.radians(np.asarray(s["dec"])))
    out = Table(
        {
            "id": np.asarray(s["id"], np.int64),
            "coord_ra": np.asarray(s["ra"]) + rng.normal(0, sig_pos) / 3.6e6 / cosd,
            "coord_dec": np.asarray(s["dec"]) + rng.normal(0, sig_pos) / 3.6e6,
            "coord_raErr": sig_pos,
            "coord_decErr": sig_pos,
            "pm_ra": np.asarray(s["pm_ra"]) + rng.normal(0, sig_pm),
            "pm_dec": np.asarray(s["pm_dec"]) + rng.normal(0, sig_pm),
            "pm_raErr": sig_pm,
            "pm_decErr": sig_pm,
            "parallax": np.asarray(s["parallax"]) + rng.normal(0, sig_plx),
            "parallaxErr": sig_plx,
            "epoch": np.full(n, REF_EPOCH_MJD),
        },
        meta={
            "description": "Gaia-like reference catalog (simulated): positions deg at epoch (MJD TAI), errors "
            "mas, proper motions mas/yr (pm_ra includes cos dec), parallax mas, fluxes nJy (AB)",
        },
    )
    gflux = mag_to_flux(g)
    out["phot_g_mean_flux"] = gflux * (1 + rng.normal(0, sig_mag * 0.921))
    out["phot_g_mean_fluxErr"] = gflux * sig_mag * 0.921
    for b in BANDS:
        f = np.asarray(s[f"flux_{b}"])
        err = f * (0.005 + sig_mag) * 0.921
        out[f"{b}_flux"] = f + rng.normal(0, err)
        out[f"{b}_fluxErr"] = err
    for col, unit in (
        ("coord_ra", "deg"), ("coord_dec", "deg"), ("coord_raErr", "mas"), ("coord_decErr", "mas"),
        ("pm_ra", "mas/yr"), ("pm_dec", "mas/yr"), ("pm_raErr", "mas/yr"), ("pm_decErr", "mas/yr"),
        ("parallax", "mas"), ("parallaxErr", "mas"), ("epoch", "d"),
        ("phot_g_mean_flux", "nJy"), ("phot_g_mean_fluxErr", "nJy"),
    ):  # fmt: skip
        out[col].unit = unit
    for b in BANDS:
        out[f"{b}_flux"].unit = "nJy"
        out[f"{b}_fluxErr"].unit = "nJy"
    return out


def shard_refcat(refcat: Table) -> dict[int, Table]:
    """Split the catalog into HTM7 shards (``{htm7 index: rows}``), as the Butler stores refcats."""
    idx = htm7_index(np.asarray(refcat["coord_ra"]), np.asarray(refcat["coord_dec"]))
    return {int(k): refcat[idx == k] for k in np.unique(idx)}
