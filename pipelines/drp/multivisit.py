"""Multi-visit steps of a release: association, global astrometry (PM + parallax), ubercal photometry.

Association
    Friends-of-friends on the unit sphere: sources of all visits closer than
    ``link_radius_arcsec`` are linked, and each connected group seen in at least ``min_visits``
    visits becomes an Object. (Objects therefore come from the multi-visit source matches, not
    from coadd detection.) Where a group has two sources of one visit, the brighter one is kept.
Global astrometry
    For every Object a weighted least-squares fit of the five astrometric parameters — the
    position at ``ref_epoch_mjd`` (J2016.0), proper motion (μ_α cos δ, μ_δ) and parallax — to its
    per-visit positions, with parallax factors from the Earth's barycentric position (astropy's
    built-in ephemeris). Objects matched to the reference catalog get its position, proper motion
    and parallax as Gaussian priors (the anchor). The fit alternates with per-detector-visit
    affine corrections (in detector x, y) measured from bright stars' residuals — the reference
    catalog priors hold the frame — with outlier rejection (blends, cosmic rays), and a noise floor
    added in quadrature so bright stars' normalised residuals follow a unit Gaussian (per-visit WCS
    errors and atmospheric jitter are not in the per-source centroid errors).
Ubercal
    Per band, the least-squares solution of ``m_{o,v} = m_o + δ_v`` over repeated bright
    point-like sources, solved by alternating weighted means (Gauss–Seidel on the normal
    equations) with sigma clipping (variables, blends), gauge ``mean δ = 0``; δ is per
    detector-visit (``ccdVisitId``), on top of each detector's reference-catalog zero point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.table import Table
from astropy.time import Time
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pachon.pipelines.drp.config import DrpConfig

__all__ = [
    "AstrometricSolution",
    "UbercalSolution",
    "associate",
    "fit_astrometry_global",
    "parallax_factors",
    "ubercal",
    "unit_vectors",
]

MAS_PER_DEG = 3.6e6
Array = NDArray[np.float64]


def unit_vectors(ra_deg: Array, dec_deg: Array) -> Array:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def parallax_factors(ra_deg: Array, dec_deg: Array, mjd_tai: Array) -> tuple[Array, Array]:
    """(P_α*, P_δ): apparent shift per unit parallax, from the Earth's barycentric position (AU).

    Δα cos δ = ϖ (X sin α − Y cos α), Δδ = ϖ (X cos α sin δ + Y sin α sin δ − Z cos δ).
    """
    mjd = np.asarray(mjd_tai, dtype=float)
    uniq, inv = np.unique(mjd, return_inverse=True)
    xyz = get_body_barycentric("earth", Time(uniq, format="mjd", scale="tai"), ephemeris="builtin")
    pos = xyz.xyz.to_value(u.AU).T[inv]
    x, y, z = pos[:, 0], pos[:, 1], pos[:, 2]
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    pa = x * np.sin(ra) - y * np.cos(ra)
    pd = x * np.cos(ra) * np.sin(dec) + y * np.sin(ra) * np.sin(dec) - z * np.cos(dec)
    return pa, pd


def associate(sources: Table, config: DrpConfig) -> NDArray[np.int64]:
    """Group index of every source (−1: not in an Object); groups are numbered 0..n−1 by position."""
    n = len(sources)
    if n == 0:
        return np.zeros(0, np.int64)
    vec = unit_vectors(np.asarray(sources["coord_ra"]), np.asarray(sources["coord_dec"]))
    chord = 2 * np.sin(np.radians(config.link_radius_arcsec / 3600.0) / 2)
    pairs = cKDTree(vec).query_pairs(chord, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    visit = np.asarray(sources["visit"])
    snr = np.asarray(sources["psfFlux"]) / np.asarray(sources["psfFluxErr"])
    # one source per (group, visit): the brightest
    order = np.lexsort((-np.nan_to_num(snr, nan=-np.inf), visit, labels))
    keep = np.ones(n, bool)
    same = (labels[order][1:] == labels[order][:-1]) & (visit[order][1:] == visit[order][:-1])
    keep[order[1:][same]] = False
    lab = np.where(keep, labels, -1)
    n_vis = np.bincount(lab[keep], minlength=labels.max() + 1)
    good = n_vis >= config.min_visits
    lab = np.where((lab >= 0) & good[np.clip(lab, 0, None)], lab, -1)
    # renumber groups 0..n-1 in order of declination (deterministic, spatially coherent)
    ids = np.unique(lab[lab >= 0])
    if len(ids) == 0:
        return np.full(n, -1, np.int64)
    mean_dec = np.bincount(lab[lab >= 0], weights=np.asarray(sources["coord_dec"])[lab >= 0])[ids]
    mean_dec /= np.bincount(lab[lab >= 0])[ids]
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(mean_dec, kind="stable")] = np.arange(len(ids))
    remap = np.full(labels.max() + 1, -1, np.int64)
    remap[ids] = rank
    return np.where(lab >= 0, remap[np.clip(lab, 0, None)], -1)


@dataclass
class AstrometricSolution:
    """Per Object: 5 parameters, their covariance and fit quality; per source: corrected positions."""

    ra: Array  # deg at ref epoch
    dec: Array
    params: Array  # (n, 5): Δξ, Δη (mas, from ra0/dec0), pmRa, pmDec (mas/yr), parallax (mas)
    cov: Array  # (n, 5, 5)
    chi2: Array
    ndata: NDArray[np.int64]
    fitted_motion: NDArray[np.bool_]
    ref_matched: NDArray[np.bool_]
    source_ra: Array  # per-source positions after the per-detector-visit offsets
    source_dec: Array
    offsets: dict[int, tuple[float, float]]  # ccdVisitId → (Δξ, Δη) mas removed at x = y = 0
    noise_floor_mas: float


def _ref_priors(
    ra0: Array, dec0: Array, refcat: Table | None, radius_arcsec: float
) -> tuple[NDArray[np.int64], Table | None]:
    """Index into ``refcat`` of each Object's reference star (−1 if none within ``radius``)."""
    idx = np.full(len(ra0), -1, np.int64)
    if refcat is None or len(refcat) == 0 or len(ra0) == 0:
        return idx, refcat
    tree = cKDTree(unit_vectors(np.asarray(refcat["coord_ra"]), np.asarray(refcat["coord_dec"])))
    dist, j = tree.query(unit_vectors(ra0, dec0), distance_upper_bound=np.radians(radius_arcsec / 3600))
    ok = np.isfinite(dist)
    idx[ok] = j[ok]
    return idx, refcat


def fit_astrometry_global(
    sources: Table,
    group: NDArray[np.int64],
    config: DrpConfig,
    refcat: Table | None = None,
    extended: NDArray[np.bool_] | None = None,
) -> AstrometricSolution:
    """Fit position, proper motion and parallax of every Object (see the module docstring)."""
    sel = group >= 0
    g = group[sel]
    n_obj = int(g.max()) + 1 if len(g) else 0
    ra = np.asarray(sources["coord_ra"], float)[sel]
    dec = np.asarray(sources["coord_dec"], float)[sel]
    err = np.asarray(sources["coord_raErr"], float)[sel] * MAS_PER_DEG
    err = np.where(np.isfinite(err) & (err > 0), err, 100.0)
    mjd = np.asarray(sources["midpointMjdTai"], float)[sel]
    ccd = np.asarray(sources["ccdVisitId"], np.int64)[sel]
    snr = np.asarray(sources["psfFlux"], float)[sel] / np.asarray(sources["psfFluxErr"], float)[sel]
    counts = np.bincount(g, minlength=n_obj).astype(float)
    dec0 = np.bincount(g, weights=dec, minlength=n_obj) / counts
    # mean RA via unit vectors (safe at RA = 0/360)
    vx = np.bincount(g, weights=np.cos(np.radians(ra)), minlength=n_obj)
    vy = np.bincount(g, weights=np.sin(np.radians(ra)), minlength=n_obj)
    ra0 = np.degrees(np.arctan2(vy, vx)) % 360
    cosd = np.cos(np.radians(dec0))
    dt = (mjd - config.ref_epoch_mjd) / 365.25
    pa, pd = parallax_factors(ra0[g], dec0[g], mjd)
    fit_motion = counts >= config.astrometry_min_visits
    ref_idx, ref = _ref_priors(ra0, dec0, refcat, 2.0 * config.link_radius_arcsec)
    ext = np.zeros(n_obj, bool) if extended is None else np.asarray(extended, bool)
    bright = (snr > config.astrometry_bright_snr) & ~ext[g]
    px = np.asarray(sources["x"], float)[sel] / 1000.0 if "x" in sources.colnames else np.zeros(len(g))
    py = np.asarray(sources["y"], float)[sel] / 1000.0 if "y" in sources.colnames else np.zeros(len(g))
    basis = np.column_stack([np.ones(len(g)), px, py])
    good = np.ones(len(g), bool)  # outlier rejection (blends, cosmic rays, mis-associations)
    for col in ("pixelFlags_edge", "pixelFlags_cr", "pixelFlags_saturated", "pixelFlags_bad"):
        if col in sources.colnames:  # flagged centroids are 10× likelier to be outliers: never used
            good &= ~np.asarray(sources[col], bool)[sel]
    flagged = ~good

    uccd, ccd_inv = np.unique(ccd, return_inverse=True)
    coef = np.zeros((len(uccd), 3, 2))  # per detector-visit affine correction of (ξ, η) in (1, x, y)
    floor = 0.0
    params: Array = np.zeros((n_obj, 5))
    cov: Array = np.zeros((n_obj, 5, 5))
    chi2: Array = np.zeros(n_obj)
    ndata = np.zeros(n_obj, np.int64)
    for _ in range(max(1, config.astrometry_iterations)):
        corr = np.einsum("nk,nkc->nc", basis, coef[ccd_inv])
        xi = ((ra - ra0[g] + 180) % 360 - 180) * cosd[g] * MAS_PER_DEG - corr[:, 0]
        eta = (dec - dec0[g]) * MAS_PER_DEG - corr[:, 1]
        sig2 = err**2 + floor**2
        w = good / sig2
        # design rows: ξ = a + μα dt + ϖ Pα ; η = b + μδ dt + ϖ Pδ
        zeros = np.zeros_like(dt)
        ones = np.ones_like(dt)
        a_xi = np.column_stack([ones, zeros, dt, zeros, pa])
        a_eta = np.column_stack([zeros, ones, zeros, dt, pd])
        normal = np.zeros((n_obj, 5, 5))
        rhs = np.zeros((n_obj, 5))
        np.add.at(
            normal,
            g,
            w[:, None, None] * (a_xi[:, :, None] * a_xi[:, None, :] + a_eta[:, :, None] * a_eta[:, None, :]),
        )
        np.add.at(rhs, g, w[:, None] * (a_xi * xi[:, None] + a_eta * eta[:, None]))
        # priors: weak everywhere (regularises position-only fits), the refcat where matched
        prior_var = np.array([1e8, 1e8, 1e-6, 1e-6, 1e-6])  # pm/plx fixed at 0 unless fitted
        prior_mean = np.zeros((n_obj, 5))
        pv = np.tile(prior_var, (n_obj, 1))
        pv[fit_motion, 2:] = 1e8
        has_ref = ref_idx >= 0
        if ref is not None and has_ref.any():
            r = ref_idx[has_ref]
            rra = np.asarray(ref["coord_ra"], float)[r]
            rdec = np.asarray(ref["coord_dec"], float)[r]
            prior_mean[has_ref, 0] = ((rra - ra0[has_ref] + 180) % 360 - 180) * cosd[has_ref] * MAS_PER_DEG
            prior_mean[has_ref, 1] = (rdec - dec0[has_ref]) * MAS_PER_DEG
            prior_mean[has_ref, 2] = np.asarray(ref["pm_ra"], float)[r]
            prior_mean[has_ref, 3] = np.asarray(ref["pm_dec"], float)[r]
            prior_mean[has_ref, 4] = np.asarray(ref["parallax"], float)[r]
            pv[has_ref, 0] = (np.asarray(ref["coord_raErr"], float)[r] * MAS_PER_DEG) ** 2
            pv[has_ref, 1] = (np.asarray(ref["coord_decErr"], float)[r] * MAS_PER_DEG) ** 2
            pv[has_ref, 2] = np.asarray(ref["pm_raErr"], float)[r] ** 2
            pv[has_ref, 3] = np.asarray(ref["pm_decErr"], float)[r] ** 2
            pv[has_ref, 4] = np.asarray(ref["parallaxErr"], float)[r] ** 2
            pv = np.where(np.isfinite(pv) & (pv > 0), pv, 1e8)
        idx = np.arange(5)
        normal[:, idx, idx] += 1.0 / pv
        rhs += prior_mean / pv
        cov = np.asarray(np.linalg.inv(normal), dtype=np.float64)
        params = np.einsum("nij,nj->ni", cov, rhs)
        model_xi = params[g, 0] + params[g, 2] * dt + params[g, 4] * pa
        model_eta = params[g, 1] + params[g, 3] * dt + params[g, 4] * pd
        rx, ry = xi - model_xi, eta - model_eta
        chi2 = np.bincount(g, weights=(rx**2 + ry**2) * w, minlength=n_obj).astype(np.float64)
        ndata = np.bincount(g, weights=good.astype(float), minlength=n_obj).astype(np.int64)
        # per-detector-visit affine corrections from bright stars' residuals (the refcat priors fix the frame)
        use = bright & good
        if use.any():
            for k in range(len(uccd)):
                m = use & (ccd_inv == k)
                if m.sum() >= 8:
                    sol, *_ = np.linalg.lstsq(basis[m], np.column_stack([rx[m], ry[m]]), rcond=None)
                    coef[k] += sol
                elif m.sum() >= 2:
                    coef[k, 0] += np.median(rx[m]), np.median(ry[m])
            # noise floor so bright stars' normalised residuals have the median of a unit Gaussian's
            # square (0.455): robust against the outliers rejected below
            rb = np.concatenate([rx[use], ry[use]])
            eb = np.concatenate([err[use], err[use]])
            lo, hi = 0.0, 500.0
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if np.median(rb**2 / (eb**2 + mid**2)) > 0.455:
                    lo = mid
                else:
                    hi = mid
            floor = 0.5 * (lo + hi)
            norm = np.hypot(rx, ry) / np.sqrt(err**2 + floor**2)
            good = (norm < config.astrometry_clip) & ~flagged
    ra_fit = ra0 + params[:, 0] / MAS_PER_DEG / cosd
    dec_fit = dec0 + params[:, 1] / MAS_PER_DEG
    src_ra = np.asarray(sources["coord_ra"], float).copy()
    src_dec = np.asarray(sources["coord_dec"], float).copy()
    corr = np.einsum("nk,nkc->nc", basis, coef[ccd_inv])
    src_ra[sel] = ra - corr[:, 0] / MAS_PER_DEG / np.cos(np.radians(dec))
    src_dec[sel] = dec - corr[:, 1] / MAS_PER_DEG
    return AstrometricSolution(
        ra=ra_fit % 360,
        dec=dec_fit,
        params=params,
        cov=cov,
        chi2=chi2,
        ndata=ndata,
        fitted_motion=fit_motion,
        ref_matched=ref_idx >= 0,
        source_ra=src_ra,
        source_dec=src_dec,
        offsets={int(c): (float(o[0, 0]), float(o[0, 1])) for c, o in zip(uccd, coef, strict=True)},
        noise_floor_mas=float(floor),
    )


@dataclass
class UbercalSolution:
    """Per-detector-visit magnitude offsets δ (observed − mean, mag); corrected flux = flux · 10^(0.4 δ)."""

    delta: dict[int, float]
    n_stars: int
    rms_mmag: float

    def factor(self, ccd_visit: NDArray[np.int64]) -> Array:
        d = np.array([self.delta.get(int(c), 0.0) for c in ccd_visit])
        return 10 ** (0.4 * d)


def ubercal(
    sources: Table,
    group: NDArray[np.int64],
    config: DrpConfig,
    extended: NDArray[np.bool_] | None = None,
    iterations: int = 30,
) -> UbercalSolution:
    """Solve per-band per-detector-visit zero-point corrections from repeated stars (module docstring)."""
    flux = np.asarray(sources["psfFlux"], float)
    ferr = np.asarray(sources["psfFluxErr"], float)
    snr = flux / ferr
    n_obj = int(group.max()) + 1 if (group >= 0).any() else 0
    ext = np.zeros(n_obj, bool) if extended is None else np.asarray(extended, bool)
    flags = np.zeros(len(sources), bool)
    for col in ("pixelFlags_saturated", "pixelFlags_edge", "pixelFlags_cr", "pixelFlags_bad"):
        if col in sources.colnames:
            flags |= np.asarray(sources[col], bool)
    use = (group >= 0) & (snr > config.ubercal_min_snr) & ~flags
    use[use] &= ~ext[group[use]]
    delta: dict[int, float] = {}
    resid_all: list[Array] = []
    stars: set[int] = set()
    bands = np.asarray(sources["band"]).astype(str)
    ccd_all = np.asarray(sources["ccdVisitId"], np.int64)
    for band in np.unique(bands):
        m = use & (bands == band)
        if m.sum() < 2:
            continue
        g = group[m]
        ccd = ccd_all[m]
        mag = -2.5 * np.log10(flux[m])
        sig2 = (1.0857 / snr[m]) ** 2 + 0.002**2
        uc, ci = np.unique(ccd, return_inverse=True)
        uo, oi = np.unique(g, return_inverse=True)
        d = np.zeros(len(uc))
        ok = np.ones(len(mag), bool)
        mo = np.zeros(len(uo))
        for it in range(iterations):
            w = ok / sig2
            mo = np.bincount(oi, weights=w * (mag - d[ci]), minlength=len(uo)) / np.maximum(
                np.bincount(oi, weights=w, minlength=len(uo)), 1e-30
            )
            wc = np.bincount(ci, weights=w, minlength=len(uc))
            d = np.where(
                wc > 0,
                np.bincount(ci, weights=w * (mag - mo[oi]), minlength=len(uc)) / np.maximum(wc, 1e-30),
                0.0,
            )
            d -= d[wc > 0].mean() if (wc > 0).any() else 0.0
            if it in (5, 15):
                r = (mag - mo[oi] - d[ci]) / np.sqrt(sig2)
                ok = np.abs(r) < config.ubercal_clip
        # objects seen once carry no information on δ: exclude from the rms
        nobs = np.bincount(oi, weights=ok.astype(float), minlength=len(uo))
        rep = ok & (nobs[oi] >= 2)
        resid_all.append((mag - mo[oi] - d[ci])[rep])
        stars.update(int(x) for x in uo[nobs >= 2])
        delta.update({int(c): float(v) for c, v in zip(uc, d, strict=True)})
    res = np.concatenate(resid_all) if resid_all else np.zeros(0)
    rms = float(np.sqrt(np.mean(res**2)) * 1000) if len(res) else float("nan")
    return UbercalSolution(delta=delta, n_stars=len(stars), rms_mmag=rms)
