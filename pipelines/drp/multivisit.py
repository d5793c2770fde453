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

from dataclasses import dataclass, field

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
    "StarFlat",
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
            h_aff = np.zeros(len(g))  # leverage of each bright measurement in its detector-visit's fit
            for k in range(len(uccd)):
                m = use & (ccd_inv == k)
                if m.sum() >= 8:
                    sol, *_ = np.linalg.lstsq(basis[m], np.column_stack([rx[m], ry[m]]), rcond=None)
                    coef[k] += sol
                    bm = basis[m]
                    h_aff[m] = np.einsum("ij,jk,ik->i", bm, np.linalg.pinv(bm.T @ bm), bm)
                elif m.sum() >= 2:
                    coef[k, 0] += np.median(rx[m]), np.median(ry[m])
                    h_aff[m] = 1.0 / m.sum()
            # noise floor so bright stars' normalised residuals have the median of a unit Gaussian's
            # square (0.455): robust against the outliers rejected below. Residuals are smaller than
            # the errors by √(1 − h), h the leverage of the star's own 5-parameter fit plus that of the
            # detector-visit's affine fit (with ~20 visits and ~20 bright stars per detector-visit,
            # h ≈ 0.3): without that correction the floor, and so every error, came out too small
            # (proper-motion/parallax pulls σ ≈ 1.15 on tiny)
            cov_g = cov[g]
            h_xi = w * np.einsum("ni,nij,nj->n", a_xi, cov_g, a_xi) + h_aff
            h_eta = w * np.einsum("ni,nij,nj->n", a_eta, cov_g, a_eta) + h_aff
            rb = np.concatenate(
                [
                    rx[use] / np.sqrt(1 - np.clip(h_xi[use], 0, 0.9)),
                    ry[use] / np.sqrt(1 - np.clip(h_eta[use], 0, 0.9)),
                ]
            )
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
    """Per-detector-visit offsets δ and per-detector star flats S (observed − true, mag).

    Corrected flux = flux · 10^(0.4 (δ + S(x, y))); without positions only δ is applied (the star
    flat averages to ~0 over a detector, so that is the right factor for a detector-wide quantity).
    """

    delta: dict[int, float]
    n_stars: int
    rms_mmag: float
    star_flats: dict[tuple[int, str], StarFlat] = field(default_factory=dict)
    ccd_key: dict[int, tuple[int, str]] = field(default_factory=dict)  # ccdVisitId → (detector, band)
    floor_mmag: float = float("nan")
    n_rejected_objects: int = 0

    def correction_mag(
        self,
        ccd_visit: NDArray[np.int64],
        x: NDArray[np.float64] | None = None,
        y: NDArray[np.float64] | None = None,
    ) -> Array:
        """δ (+ S(x, y) when positions are given) for each row, in mag."""
        ccd = np.asarray(ccd_visit, np.int64)
        out = np.zeros(len(ccd))
        uc, inv = np.unique(ccd, return_inverse=True)
        for k, c in enumerate(uc):
            rows = inv == k
            out[rows] = self.delta.get(int(c), 0.0)
            flat = self.star_flats.get(self.ccd_key.get(int(c), (-1, "")))
            if flat is not None and x is not None and y is not None:
                out[rows] += flat(np.asarray(x, float)[rows], np.asarray(y, float)[rows])
        return out

    def factor(
        self,
        ccd_visit: NDArray[np.int64],
        x: NDArray[np.float64] | None = None,
        y: NDArray[np.float64] | None = None,
    ) -> Array:
        """Multiplicative flux correction per row (see the class docstring)."""
        return np.asarray(10 ** (0.4 * self.correction_mag(ccd_visit, x, y)), dtype=np.float64)


@dataclass
class StarFlat:
    """A smooth per-detector, per-band photometric correction: Σ c_ij P_i(u) P_j(v), 1 ≤ i + j ≤ degree.

    ``u``, ``v`` are the detector position scaled to [−1, 1] with the detector's extent; P are
    Legendre polynomials. No constant term: the detector-visit offsets δ carry it.
    """

    coeffs: Array
    degree: int
    x0: float
    y0: float
    half_x: float
    half_y: float

    def design(self, x: Array, y: Array) -> Array:
        return _legendre_design(
            (np.asarray(x) - self.x0) / self.half_x, (np.asarray(y) - self.y0) / self.half_y, self.degree
        )

    def __call__(self, x: Array, y: Array) -> Array:
        return np.asarray(self.design(x, y) @ self.coeffs, dtype=np.float64)

    def rms(self, n: int = 32) -> float:
        """rms of the correction over the detector (mag)."""
        g = np.linspace(-1, 1, n)
        u, v = np.meshgrid(g, g)
        vals = _legendre_design(u.ravel(), v.ravel(), self.degree) @ self.coeffs
        return float(np.std(vals))


def _legendre_design(u: Array, v: Array, degree: int) -> Array:
    pu = [np.ones_like(u), u]
    pv = [np.ones_like(v), v]
    for n in range(2, degree + 1):
        pu.append(((2 * n - 1) * u * pu[n - 1] - (n - 1) * pu[n - 2]) / n)
        pv.append(((2 * n - 1) * v * pv[n - 1] - (n - 1) * pv[n - 2]) / n)
    cols = [pu[i] * pv[j] for i in range(degree + 1) for j in range(degree + 1 - i) if i + j >= 1]
    return np.column_stack(cols) if cols else np.zeros((len(u), 0))


def _floor_for_unit_chi2(r: Array, sigma: Array) -> float:
    """The noise floor f making median(r² / (σ² + f²)) the median of a unit Gaussian's square (0.455)."""
    if len(r) == 0 or np.median(r**2 / sigma**2) <= 0.455:
        return 0.0
    lo, hi = 0.0, max(float(np.sqrt(np.median(r**2))) * 3, 1e-6)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if np.median(r**2 / (sigma**2 + mid**2)) > 0.455:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ubercal(
    sources: Table,
    group: NDArray[np.int64],
    config: DrpConfig,
    extended: NDArray[np.bool_] | None = None,
    iterations: int = 6,
    *,
    star_flat_degree: int = 3,
    delta_prior_mag: float = 0.1,
    star_flat_prior_mag: float = 0.005,
    variable_chi2: float = 9.0,
    initial_floor_mag: float = 0.01,
    refcat: Table | None = None,
    ref_radius_arcsec: float = 1.0,
) -> UbercalSolution:
    """Per band: detector-visit offsets δ, a star flat per detector and each star's mean magnitude.

    Model: ``m_{o,i} = m_o + δ_{c(i)} + S_{d(i)}(x_i, y_i)`` for the bright (S/N >
    ``ubercal_min_snr``), unflagged measurements of point-like Objects, solved as one sparse
    weighted least-squares problem (normal equations) with gauge ``Σ δ = 0`` per band. The
    star flat corrects the flat field's errors (the flats the pipeline is given are imperfect;
    dithering moves stars across them so the repeated measurements constrain the pattern, as in
    jointcal/FGCM's illumination correction). Weak Gaussian priors on δ and on the star-flat
    coefficients keep detector-visits with few stars sane; the star-flat prior (5 mmag per
    coefficient) is tight because single-visit processing already divides out the flat's error
    measured on the sky (:func:`pachon.pipelines.prompt.measure.estimate_illumination`), so the star
    flat only mops up a few mmag — a looser prior (20 mmag) let its degenerate modes wander to 13 mmag
    rms on ``tiny`` and made star magnitudes 10 mmag (MAD) off truth instead of 6, for no better PA1.
    Robust by iteration: the first solve adds ``initial_floor_mag`` to every measurement's error (so
    one very bright star cannot set a detector-visit's offset alone: on ``tiny`` a flaring S/N 500
    star pulled one offset by 0.22 mag), then a noise floor is estimated from the data so normalised
    residuals have unit scatter (median-based, each residual scaled for the star's mean it was
    measured against), single measurements beyond ``ubercal_clip`` σ are rejected, and so are whole
    Objects whose reduced χ² exceeds ``variable_chi2`` (variable stars, blends) — a few variables
    otherwise drag the offsets of the sparsely populated detector-visits by tens of mmag. Both
    rejections are decided afresh each iteration, so a star condemned by an early, wrong offset
    comes back once the offset is right.

    With translational dithers a star flat's *linear* terms are degenerate with m_o + δ (a gradient
    g·x shifts every star by g·x_o and every visit by g·Δx_v), so repeat visits alone cannot see
    them. ``refcat`` (``{band}_flux``/``{band}_fluxErr`` in nJy) breaks the degeneracy: its
    magnitudes enter as Gaussian priors on the matched stars' m_o (clipped like the measurements),
    which also replaces the gauge.
    """
    from scipy.sparse import csr_matrix, diags
    from scipy.sparse.linalg import spsolve

    flux = np.asarray(sources["psfFlux"], float)
    ferr = np.asarray(sources["psfFluxErr"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = flux / ferr
    n_obj = int(group.max()) + 1 if (group >= 0).any() else 0
    ext = np.zeros(n_obj, bool) if extended is None else np.asarray(extended, bool)
    flags = np.zeros(len(sources), bool)
    for col in ("pixelFlags_saturated", "pixelFlags_edge", "pixelFlags_cr", "pixelFlags_bad"):
        if col in sources.colnames:
            flags |= np.asarray(sources[col], bool)
    use = (group >= 0) & (snr > config.ubercal_min_snr) & ~flags & (flux > 0)
    use[use] &= ~ext[group[use]]
    has_xy = "x" in sources.colnames and "y" in sources.colnames and star_flat_degree >= 1
    xs = np.asarray(sources["x"], float) if has_xy else np.zeros(len(sources))
    ys = np.asarray(sources["y"], float) if has_xy else np.zeros(len(sources))
    det_all = (
        np.asarray(sources["detector"], np.int64)
        if "detector" in sources.colnames
        else np.asarray(sources["ccdVisitId"], np.int64) % 1000
    )
    delta: dict[int, float] = {}
    flats: dict[tuple[int, str], StarFlat] = {}
    ccd_key: dict[int, tuple[int, str]] = {}
    resid_all: list[Array] = []
    stars: set[int] = set()
    floors: list[float] = []
    n_rejected = 0
    bands = np.asarray(sources["band"]).astype(str)
    ccd_all = np.asarray(sources["ccdVisitId"], np.int64)
    for c, d, b in zip(ccd_all, det_all, bands, strict=True):
        ccd_key.setdefault(int(c), (int(d), str(b)))
    ref_row = np.full(n_obj, -1, np.int64)  # each Object's reference star (−1: none)
    if refcat is not None and len(refcat) and n_obj and "coord_ra" in sources.colnames:
        sel = group >= 0
        vec = np.zeros((n_obj, 3))
        np.add.at(
            vec,
            group[sel],
            unit_vectors(np.asarray(sources["coord_ra"])[sel], np.asarray(sources["coord_dec"])[sel]),
        )
        vec /= np.maximum(np.linalg.norm(vec, axis=1), 1e-300)[:, None]
        tree = cKDTree(
            unit_vectors(np.asarray(refcat["coord_ra"], float), np.asarray(refcat["coord_dec"], float))
        )
        dist, j = tree.query(vec, distance_upper_bound=np.radians(ref_radius_arcsec / 3600))
        ref_row[np.isfinite(dist)] = j[np.isfinite(dist)]
    for band in np.unique(bands):
        m = use & (bands == band)
        if m.sum() < 2:
            continue
        rows = np.flatnonzero(m)
        g = group[rows]
        mag = -2.5 * np.log10(flux[rows])
        sig_phot = 1.0857 / snr[rows]
        uc, ci = np.unique(ccd_all[rows], return_inverse=True)
        uo, oi = np.unique(g, return_inverse=True)
        n_o, n_c = len(uo), len(uc)
        # star flats: one per detector seen in this band, scaled to that detector's source extent
        band_rows = bands == band
        dets = np.unique(det_all[rows]) if has_xy else np.zeros(0, np.int64)
        n_t = len(_legendre_design(np.zeros(1), np.zeros(1), star_flat_degree)[0]) if has_xy else 0
        geo: dict[int, tuple[float, float, float, float]] = {}
        cols_flat = np.zeros((len(rows), 0))
        if has_xy and len(dets):
            cols_flat = np.zeros((len(rows), len(dets) * n_t))
            for k, det in enumerate(dets):
                every = band_rows & (det_all == det)
                x_lo, x_hi = float(np.nanmin(xs[every])), float(np.nanmax(xs[every]))
                y_lo, y_hi = float(np.nanmin(ys[every])), float(np.nanmax(ys[every]))
                geo[int(det)] = (
                    0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi), max(0.5 * (x_hi - x_lo), 1.0), max(0.5 * (y_hi - y_lo), 1.0)
                )  # fmt: skip
                sel_d = det_all[rows] == det
                x0, y0, hx, hy = geo[int(det)]
                cols_flat[sel_d, k * n_t : (k + 1) * n_t] = _legendre_design(
                    (xs[rows][sel_d] - x0) / hx, (ys[rows][sel_d] - y0) / hy, star_flat_degree
                )
        n_f = cols_flat.shape[1]
        # unknowns: Δm_o (about each star's first mean), δ_c, flat coefficients
        start = np.bincount(oi, weights=mag, minlength=n_o) / np.bincount(oi, minlength=n_o)
        y_obs = mag - start[oi]
        nz_r, nz_c = np.nonzero(cols_flat)
        a_rows = np.concatenate([np.arange(len(rows)), np.arange(len(rows)), nz_r])
        a_cols = np.concatenate([oi, n_o + ci, n_o + n_c + nz_c])
        a_vals = np.concatenate([np.ones(len(rows)), np.ones(len(rows)), cols_flat[nz_r, nz_c]])
        design = csr_matrix((a_vals, (a_rows, a_cols)), shape=(len(rows), n_o + n_c + n_f))
        prior = np.concatenate(
            [np.full(n_o, 1.0), np.full(n_c, delta_prior_mag**-2), np.full(n_f, star_flat_prior_mag**-2)]
        )
        prior_mean = np.zeros(n_o + n_c + n_f)
        ref_mag = np.full(n_o, np.nan)
        ref_sig = np.full(n_o, np.nan)
        fcol, ecol = f"{band}_flux", f"{band}_fluxErr"
        if refcat is not None and fcol in refcat.colnames and ecol in refcat.colnames:
            r = ref_row[uo]
            has = r >= 0
            rf = np.asarray(refcat[fcol], float)[np.clip(r, 0, None)]
            re = np.asarray(refcat[ecol], float)[np.clip(r, 0, None)]
            has &= np.isfinite(rf) & (rf > 0) & np.isfinite(re) & (re > 0)
            ref_mag[has] = -2.5 * np.log10(rf[has])
            ref_sig[has] = 1.0857 * re[has] / rf[has]
        ref_ok = ref_avail = np.isfinite(ref_mag)
        gauge_vec = np.zeros((1, n_o + n_c + n_f))
        gauge_vec[0, n_o : n_o + n_c] = 1.0
        gauge = csr_matrix(gauge_vec)
        # Σ δ = 0 as a stiff penalty, unless the reference catalog fixes the zero point
        gauge = (gauge.T @ gauge) * (1e-6 if ref_ok.sum() >= 10 else 1e6)
        ok = np.ones(len(rows), bool)
        variable = np.zeros(n_o, bool)
        floor = initial_floor_mag
        sol = np.zeros(n_o + n_c + n_f)
        for it in range(max(1, iterations)):
            sig2 = sig_phot**2 + floor**2
            w = ok / sig2
            prior[:n_o] = np.where(ref_ok, 1.0 / np.where(ref_ok, ref_sig, 1.0) ** 2, 1.0)
            prior_mean[:n_o] = np.where(ref_ok, ref_mag - start, 0.0)
            normal = (design.T @ diags(w) @ design + diags(prior) + gauge).tocsc()
            rhs = design.T @ (w * y_obs) + prior * prior_mean
            sol = np.asarray(spsolve(normal, rhs), dtype=np.float64)
            resid = y_obs - design @ sol
            nobs = np.bincount(oi, weights=ok.astype(float), minlength=n_o)
            rep = ok & (nobs[oi] >= 2)
            # the floor is a bright-star quantity: where photon noise dominates (most rows) it
            # is invisible, and a median over all rows would miss it
            bright_rows = rep & (sig_phot < 0.01)
            use_rows = bright_rows if bright_rows.sum() >= 20 else rep
            # a residual about a mean of n measurements has (n − 1)/n of the measurement's variance
            dof = np.sqrt(np.maximum(nobs[oi] - 1, 1) / np.maximum(nobs[oi], 1))
            floor = _floor_for_unit_chi2(resid[use_rows] / dof[use_rows], sig_phot[use_rows])
            sig_tot = np.sqrt(sig_phot**2 + floor**2)
            norm = resid / (sig_tot * dof)
            if it < iterations - 1:
                # χ² over all of an Object's measurements, each capped at the clip² so one cosmic
                # ray or flare does not condemn a star. Decided afresh each iteration: a
                # detector-visit whose offset an early solution got wrong (a flaring bright star
                # pulls it) would otherwise condemn every star on it for good, leaving its offset
                # to the one outlier (measured on tiny: δ = 0.22 mag for a detector-visit whose
                # single-visit zero point was right to 13 mmag)
                n_all = np.bincount(oi, minlength=n_o)
                chi2 = np.bincount(oi, weights=np.minimum(norm**2, config.ubercal_clip**2), minlength=n_o)
                variable = (chi2 / np.maximum(n_all - 1, 1) > variable_chi2) & (n_all >= 3)
                ok = (np.abs(norm) < config.ubercal_clip) & ~variable[oi]
                # reference stars disagreeing with their own mean (blends, variables): drop the anchor
                ref_norm = (start + sol[:n_o] - ref_mag) / np.where(np.isfinite(ref_sig), ref_sig, 1.0)
                ref_ok = ref_avail & ~variable & ~(np.abs(np.nan_to_num(ref_norm)) > config.ubercal_clip)
        n_rejected += int(variable.sum())
        floors.append(floor)
        nobs = np.bincount(oi, weights=ok.astype(float), minlength=n_o)
        rep = ok & (nobs[oi] >= 2)
        resid_all.append(resid[rep])
        stars.update(int(x) for x in uo[nobs >= 2])
        d = sol[n_o : n_o + n_c]
        delta.update({int(c): float(v) for c, v in zip(uc, d, strict=True)})
        for k, det in enumerate(dets):
            x0, y0, hx, hy = geo[int(det)]
            flats[(int(det), str(band))] = StarFlat(
                coeffs=sol[n_o + n_c + k * n_t : n_o + n_c + (k + 1) * n_t].copy(),
                degree=star_flat_degree, x0=x0, y0=y0, half_x=hx, half_y=hy,
            )  # fmt: skip
    res = np.concatenate(resid_all) if resid_all else np.zeros(0)
    rms = float(np.sqrt(np.mean(res**2)) * 1000) if len(res) else float("nan")
    return UbercalSolution(
        delta=delta,
        n_stars=len(stars),
        rms_mmag=rms,
        star_flats=flats,
        ccd_key=ccd_key,
        floor_mmag=float(np.median(floors) * 1000) if floors else float("nan"),
        n_rejected_objects=n_rejected,
    )
