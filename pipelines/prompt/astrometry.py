"""Astrometric calibration: match detected sources to the reference catalog and fit a TAN-SIP WCS.

The nominal WCS in a raw header is off by the telescope's pointing error (arcseconds, i.e. tens of
pixels), so a nearest-neighbour match would fail. We first find the offset by *voting*: every
source–reference pair within the largest plausible error votes for its pixel offset in a 2-d
histogram, and the true offset collects a peak of height ≈ the number of matched stars while
random pairs spread thinly (Hough-style, as in astrometry.net's verification step). Then an
affine refinement absorbs small rotation and scale errors, and a TAN-SIP WCS is fitted with
sigma-clipping, re-matching once with the new solution. The TAN-SIP fit is *linear*
(:func:`fit_tan_sip`): references are projected onto the tangent plane and a polynomial in pixel
offsets is solved by least squares, whose linear part is the CD matrix and whose higher orders are
the SIP terms. It spans the same model as astropy's ``fit_wcs_from_points`` (a non-linear
``least_squares`` over CRPIX, CD and SIP) at a few milliseconds instead of ~0.5 s per fit. The reference catalog is first propagated to the visit's epoch with its proper
motions and parallaxes (Earth's barycentric position from astropy's built-in ephemeris).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy import units as u
from astropy.coordinates import get_body_barycentric
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS, Sip
from scipy import ndimage
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from pachon.pipelines.prompt.config import AstrometryConfig

__all__ = ["AstrometryError", "AstrometryResult", "fit_astrometry", "fit_tan_sip", "propagate_refcat"]


class AstrometryError(RuntimeError):
    """The WCS fit failed (too few matches, or residuals beyond the configured limit)."""


@dataclass
class AstrometryResult:
    """The fitted WCS and how good it is."""

    wcs: WCS
    n_matches: int
    rms_mas: float
    offset_px: tuple[float, float]
    matches: Table


def propagate_refcat(refcat: Table, epoch: Time) -> tuple[np.ndarray, np.ndarray]:
    """Reference positions (deg) at ``epoch``: proper motion (mas/yr) and annual parallax (mas).

    Columns used: ``coord_ra``, ``coord_dec`` (or ``ra``, ``dec``; deg), ``pm_ra`` (μα cos δ) and
    ``pm_dec`` (mas/yr), ``parallax`` (mas, optional) and ``epoch`` (of the positions: MJD TAI, or a
    Julian year if below 3000).
    """
    ra = np.asarray(refcat["coord_ra" if "coord_ra" in refcat.colnames else "ra"], dtype=float)
    dec = np.asarray(refcat["coord_dec" if "coord_dec" in refcat.colnames else "dec"], dtype=float)
    ref_epoch = (
        np.asarray(refcat["epoch"], dtype=float) if "epoch" in refcat.colnames else np.full(len(ra), 2016.0)
    )
    # epochs are Julian years (2016.0) or, as in the simulator's Gaia-like refcat, MJD TAI (57388.0)
    ref_epoch = np.where(ref_epoch > 3000.0, 2000.0 + (ref_epoch - 51544.5) / 365.25, ref_epoch)
    dt = epoch.jyear - ref_epoch
    pmra = np.nan_to_num(np.asarray(refcat["pm_ra"], dtype=float)) if "pm_ra" in refcat.colnames else 0.0
    pmdec = np.nan_to_num(np.asarray(refcat["pm_dec"], dtype=float)) if "pm_dec" in refcat.colnames else 0.0
    cosd = np.cos(np.radians(dec))
    dra_mas = pmra * dt
    ddec_mas = pmdec * dt
    if "parallax" in refcat.colnames:
        plx = np.nan_to_num(np.asarray(refcat["parallax"], dtype=float))
        earth = get_body_barycentric("earth", epoch).xyz.to_value(u.au)
        X, Y, Z = earth
        a, d = np.radians(ra), np.radians(dec)
        dra_mas = dra_mas + plx * (X * np.sin(a) - Y * np.cos(a))
        ddec_mas = ddec_mas + plx * (X * np.cos(a) * np.sin(d) + Y * np.sin(a) * np.sin(d) - Z * np.cos(d))
    return ra + dra_mas / 3.6e6 / cosd, dec + ddec_mas / 3.6e6


def _vote_offset(src: np.ndarray, ref: np.ndarray, max_px: float) -> tuple[float, float, int]:
    """Most common (ref − src) pixel offset among all pairs closer than ``max_px`` (and its votes)."""
    tree = cKDTree(ref)
    pairs = tree.query_ball_point(src, max_px)
    d = [ref[js] - src[i] for i, js in enumerate(pairs) if js]
    if not d:
        return 0.0, 0.0, 0
    diffs = np.concatenate(d)
    nb = int(np.ceil(max_px)) * 2 + 1
    hist, xe, ye = np.histogram2d(
        diffs[:, 0], diffs[:, 1], bins=nb, range=[[-max_px, max_px], [-max_px, max_px]]
    )
    smooth = ndimage.uniform_filter(hist, 3, mode="constant") * 9
    i, j = np.unravel_index(np.argmax(smooth), smooth.shape)
    cx, cy = 0.5 * (xe[i] + xe[i + 1]), 0.5 * (ye[j] + ye[j + 1])
    near = np.hypot(diffs[:, 0] - cx, diffs[:, 1] - cy) < 2.0
    if near.sum() == 0:
        return cx, cy, 0
    return float(np.median(diffs[near, 0])), float(np.median(diffs[near, 1])), int(near.sum())


def _match(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest matches of points ``a`` to ``b`` within ``radius``: index arrays (ia, ib)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    dist, ib = cKDTree(b).query(a, distance_upper_bound=radius)
    ia = np.flatnonzero(np.isfinite(dist))
    ib = ib[ia]
    # keep the closest source for each reference
    order = np.argsort(dist[ia])
    _, first = np.unique(ib[order], return_index=True)
    keep = order[first]
    return ia[keep], ib[keep]


def _residuals_mas(wcs: WCS, x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    fra, fdec = wcs.all_pix2world(x, y, 0)
    dra = (fra - ra) * np.cos(np.radians(dec)) * 3.6e6
    ddec = (fdec - dec) * 3.6e6
    return np.hypot(dra, ddec)


def _gnomonic(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangent-plane (standard) coordinates ξ (east), η (north) in degrees about ``(ra0, dec0)``."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_da = np.cos(a - a0)
    cos_c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * cos_da
    xi = np.cos(d) * np.sin(a - a0) / cos_c
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * cos_da) / cos_c
    return np.degrees(xi), np.degrees(eta)


def _deproject(xi: float, eta: float, ra0: float, dec0: float) -> tuple[float, float]:
    """Inverse of :func:`_gnomonic` for one point (degrees)."""
    x, y = np.radians(xi), np.radians(eta)
    d0 = np.radians(dec0)
    rho = float(np.hypot(x, y))
    if rho == 0.0:
        return ra0, dec0
    c = np.arctan(rho)
    dec = np.arcsin(np.cos(c) * np.sin(d0) + y * np.sin(c) * np.cos(d0) / rho)
    ra = np.radians(ra0) + np.arctan2(
        x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c)
    )
    return float(np.degrees(ra) % 360.0), float(np.degrees(dec))


def fit_tan_sip(
    x: np.ndarray,
    y: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    shape: tuple[int, int],
    degree: int,
) -> WCS:
    """A TAN-SIP WCS (SIP ``degree``, forward A/B terms) fitted to matched pixel and sky positions.

    CRPIX is the detector centre. With the references projected onto the plane tangent at CRVAL,
    ξ and η are fitted as full polynomials of ``degree`` in the pixel offsets (u, v) from CRPIX by
    linear least squares: the linear terms are the CD matrix, the terms of order ≥ 2 are
    ``CD · (A, B)``, so ``A, B = CD⁻¹ ·`` (those terms). The constant term is a pointing offset:
    CRVAL moves to it and the fit repeats (twice suffices; it then sits below a µas).
    """
    ny, nx = shape
    xp = np.asarray(x, dtype=float)
    yp = np.asarray(y, dtype=float)
    crpix = np.array([(nx - 1) / 2.0 + 1.0, (ny - 1) / 2.0 + 1.0])
    scale = max(nx, ny) / 2.0  # conditions the normal equations: (u, v)/scale lie in [-1, 1]
    u = (xp + 1.0 - crpix[0]) / scale
    v = (yp + 1.0 - crpix[1]) / scale
    terms = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
    design = np.column_stack([u**p * v**q for p, q in terms])
    # the first tangent point: the mean direction of the references
    vec = np.column_stack(
        [
            np.cos(np.radians(dec)) * np.cos(np.radians(ra)),
            np.cos(np.radians(dec)) * np.sin(np.radians(ra)),
            np.sin(np.radians(dec)),
        ]
    ).mean(axis=0)
    ra0 = float(np.degrees(np.arctan2(vec[1], vec[0])) % 360.0)
    dec0 = float(np.degrees(np.arctan2(vec[2], np.hypot(vec[0], vec[1]))))
    coeffs = np.zeros((len(terms), 2))
    for _ in range(4):
        xi, eta = _gnomonic(np.asarray(ra, float), np.asarray(dec, float), ra0, dec0)
        coeffs = np.linalg.lstsq(design, np.column_stack([xi, eta]), rcond=None)[0]
        const = coeffs[terms.index((0, 0))]
        if np.hypot(*const) < 1e-10:  # degrees: 0.4 µas
            break
        ra0, dec0 = _deproject(float(const[0]), float(const[1]), ra0, dec0)
    per_pixel = {t: coeffs[i] / scale ** (t[0] + t[1]) for i, t in enumerate(terms)}
    cd = np.column_stack([per_pixel[(1, 0)], per_pixel[(0, 1)]])  # rows ξ, η; columns u, v
    inv_cd = np.linalg.inv(cd)
    a = np.zeros((degree + 1, degree + 1))
    b = np.zeros((degree + 1, degree + 1))
    for (p, q), c in per_pixel.items():
        if p + q >= 2:
            a[p, q], b[p, q] = inv_cd @ c
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = crpix
    wcs.wcs.cd = cd
    wcs.wcs.radesys = "ICRS"
    wcs.sip = Sip(a, b, None, None, crpix)
    wcs.pixel_shape = (nx, ny)
    wcs.wcs.set()
    return wcs


def _fit_pointing(nominal: WCS, x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray) -> WCS:
    """Refit CRVAL and the CD matrix of ``nominal`` (6 parameters), keeping its SIP distortion.

    The camera's optical distortion is known (it is in the nominal WCS); what a visit gets wrong is
    the pointing, rotation and plate scale. Six parameters need only a handful of reference stars,
    which is all a 1k detector gets from a Gaia-depth catalog.
    """
    base = nominal.deepcopy()
    crval0 = np.array(base.wcs.crval, dtype=float)
    cd0 = np.array(base.wcs.cd if base.wcs.has_cd() else base.pixel_scale_matrix, dtype=float)
    cosd = np.cos(np.radians(dec))

    full = len(x) >= 8  # 6 parameters need a few spare stars; otherwise shift + rotation only

    def build(p: np.ndarray) -> WCS:
        w = base.deepcopy()
        w.wcs.crval = crval0 + np.array([p[0] / 3600.0 / np.cos(np.radians(crval0[1])), p[1] / 3600.0])
        if full:
            w.wcs.cd = (np.eye(2) + p[2:].reshape(2, 2)) @ cd0
        else:
            c, s_ = np.cos(p[2] * 1e-4), np.sin(p[2] * 1e-4)
            w.wcs.cd = np.array([[c, -s_], [s_, c]]) @ cd0
        w.wcs.set()
        return w

    def resid(p: np.ndarray) -> np.ndarray:
        w = build(p)
        fra, fdec = w.all_pix2world(x, y, 0)
        return np.concatenate([(fra - ra) * cosd * 3.6e6, (fdec - dec) * 3.6e6])

    p0 = np.zeros(6 if full else 3)
    scale = np.array([1.0, 1.0, 1e-4, 1e-4, 1e-4, 1e-4]) if full else np.array([1.0, 1.0, 1.0])
    sol = least_squares(resid, p0, x_scale=scale, method="lm" if 2 * len(x) >= len(p0) else "trf")
    return build(sol.x)


def fit_astrometry(
    sources: Table,
    refcat: Table,
    nominal_wcs: WCS,
    epoch: Time,
    shape: tuple[int, int],
    *,
    config: AstrometryConfig | None = None,
) -> AstrometryResult:
    """Fit a TAN-SIP WCS for one detector from its sources and the reference catalog.

    Parameters
    ----------
    sources
        Detected sources with 0-based pixel ``x``, ``y``, ``psfFlux`` (any unit) and ``snr``.
    refcat
        Reference stars (see :func:`propagate_refcat` for the columns).
    nominal_wcs
        The raw header's WCS (pointing error included).
    epoch
        The visit's mid-exposure time; references are propagated to it.
    shape
        Image shape (rows, columns).

    Raises
    ------
    AstrometryError
        with the number of matches and residual when the fit cannot be trusted.
    """
    config = config or AstrometryConfig()
    ny, nx = shape
    ra, dec = propagate_refcat(refcat, epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rx, ry = nominal_wcs.all_world2pix(ra, dec, 0, quiet=True)
    scale_arcsec = float(np.sqrt(abs(np.linalg.det(nominal_wcs.pixel_scale_matrix))) * 3600)
    max_px = config.max_offset_arcsec / scale_arcsec
    inside = np.isfinite(rx) & (rx > -max_px) & (rx < nx + max_px) & (ry > -max_px) & (ry < ny + max_px)
    ref_idx = np.flatnonzero(inside)
    if len(ref_idx) < config.min_matches:
        raise AstrometryError(
            f"only {len(ref_idx)} reference stars fall on the detector (need {config.min_matches}); "
            "check the refcat covers this visit and the nominal WCS is roughly right"
        )
    flux_col = next((c for c in refcat.colnames if c.endswith("_flux")), None)
    if flux_col is not None:
        ref_idx = ref_idx[np.argsort(-np.nan_to_num(np.asarray(refcat[flux_col])[ref_idx]))]
    ref_idx = ref_idx[: config.max_sources]
    good = np.isfinite(sources["x"]) & np.isfinite(sources["psfFlux"]) & (np.asarray(sources["snr"]) > 10)
    if "flag_edge" in sources.colnames:
        good &= ~np.asarray(sources["flag_edge"])
    # saturated stars are the brightest references: they vote (2-px accuracy is enough) but are not fitted
    voters = good.copy()
    if "flag_saturated" in sources.colnames:
        good &= ~np.asarray(sources["flag_saturated"])
    src_idx = np.flatnonzero(voters)
    src_idx = src_idx[np.argsort(-np.asarray(sources["psfFlux"])[src_idx])][: config.max_sources]
    sxy = np.column_stack([np.asarray(sources["x"])[src_idx], np.asarray(sources["y"])[src_idx]])
    rxy = np.column_stack([rx[ref_idx], ry[ref_idx]])
    dx, dy, votes = _vote_offset(sxy, rxy, max_px)
    if votes < config.min_votes:
        raise AstrometryError(
            f"no consistent pointing offset within {config.max_offset_arcsec}″ ({votes} votes, "
            f"need {config.min_votes}); raise astrometry.max_offset_arcsec if the pointing error is larger"
        )
    # affine refinement (rotation/scale errors), matching ever tighter
    moved = sxy + np.array([dx, dy])
    affine = np.array([[1.0, 0.0], [0.0, 1.0], [dx, dy]])  # rows: x, y, 1 → columns: x', y'
    for radius in (4.0, 2.0):
        ia, ib = _match(moved, rxy, radius)
        if len(ia) < 4:
            break
        design = np.column_stack([sxy[ia], np.ones(len(ia))])
        coeffs, *_ = np.linalg.lstsq(design, rxy[ib], rcond=None)
        affine = coeffs
        moved = np.column_stack([sxy, np.ones(len(sxy))]) @ affine

    all_x = np.asarray(sources["x"], dtype=float)
    all_y = np.asarray(sources["y"], dtype=float)
    cand = np.flatnonzero(good)
    wcs: WCS | None = None
    keep_s = keep_r = np.zeros(0, int)
    for iteration in range(3):
        if wcs is None:
            mxy = np.column_stack([all_x[cand], all_y[cand], np.ones(len(cand))]) @ affine
            ia, ib = _match(mxy, np.column_stack([rx[inside], ry[inside]]), 2.0)
            r_all = np.flatnonzero(inside)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                px, py = wcs.all_world2pix(ra[inside], dec[inside], 0, quiet=True)
            ia, ib = _match(
                np.column_stack([all_x[cand], all_y[cand]]),
                np.column_stack([px, py]),
                config.match_radius_arcsec / scale_arcsec,
            )
            r_all = np.flatnonzero(inside)
        keep_s, keep_r = cand[ia], r_all[ib]
        if len(keep_s) < config.min_matches:
            raise AstrometryError(
                f"only {len(keep_s)} source–reference matches (need {config.min_matches}) at iteration {iteration}"
            )
        n_sip_terms = (config.sip_degree + 1) * (config.sip_degree + 2) // 2 - 1
        free_sip = config.refit_distortion and len(keep_s) >= 4 * n_sip_terms
        for _clip in range(3):
            if free_sip:
                wcs = fit_tan_sip(
                    all_x[keep_s], all_y[keep_s], ra[keep_r], dec[keep_r], shape, config.sip_degree
                )
            else:
                wcs = _fit_pointing(nominal_wcs, all_x[keep_s], all_y[keep_s], ra[keep_r], dec[keep_r])
            resid = _residuals_mas(wcs, all_x[keep_s], all_y[keep_s], ra[keep_r], dec[keep_r])
            sigma = np.median(resid) / 1.1774  # median of a 2-d Gaussian's radius is 1.1774 σ
            ok = resid < config.clip_sigma * max(sigma, 5.0)
            if ok.all():
                break
            keep_s, keep_r = keep_s[ok], keep_r[ok]
    assert wcs is not None
    resid = _residuals_mas(wcs, all_x[keep_s], all_y[keep_s], ra[keep_r], dec[keep_r])
    rms = float(np.sqrt(np.mean(resid**2) / 2))  # per coordinate
    if not np.isfinite(rms) or rms > config.max_rms_mas:
        raise AstrometryError(
            f"WCS fit residual {rms:.0f} mas rms per coordinate with {len(keep_s)} matches exceeds "
            f"{config.max_rms_mas} mas"
        )
    matches = Table(
        {
            "source_index": keep_s,
            "ref_index": np.asarray(refcat["id"])[keep_r] if "id" in refcat.colnames else keep_r,
            "ref_row": keep_r,
            "ref_ra": ra[keep_r],
            "ref_dec": dec[keep_r],
            "resid_mas": resid,
        }
    )
    return AstrometryResult(wcs=wcs, n_matches=len(keep_s), rms_mas=rms, offset_px=(dx, dy), matches=matches)
