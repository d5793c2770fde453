"""DIA sources: detection on the difference image and the APDB DiaSource measurements.

Detection runs twice, on the difference and on its negative, with a PSF matched filter whose
threshold is a PSF signal-to-noise (``DiaConfig.threshold``, 5σ as in the SRD's transSNR).
Every candidate is measured with the Rubin DiaSource column names: PSF flux on the difference
(``psfFlux``), forced PSF flux on the science image (``scienceFlux``) and on the warped template
(``templateFlux``), aperture flux, windowed centroid with errors, adaptive-moment-like second
moments next to the PSF's, a dipole measurement (positive and negative lobes within the footprint:
``dipoleMeanFlux``, ``dipoleFluxDiff``, ``dipoleLength``, ``dipoleAngle``, ``isDipole``), a trailed-PSF
fit where the footprint is elongated (``trailFlux``, ``trailLength``, ``trailAngle``, ``trailChi2``) and
pixel flags. Lengths are in arcsec and angles are bearings (degrees East of North), as the APDB
schema defines them (:func:`sky_bearing`). The features a real/bogus classifier needs come along in
extra columns prefixed ``rb_``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import DiaConfig
from pachon.pipelines.prompt.measure import (
    aperture_photometry,
    detect,
    psf_aperture_ratio,
    psf_fit_aperture,
    psf_fit_radius,
    psf_photometry,
    psf_photometry_at_pixels,
)
from pachon.pipelines.prompt.psf import PsfModel

__all__ = [
    "RB_FEATURES",
    "SkyFitNoise",
    "bright_neighbour",
    "detect_dia_sources",
    "neighbour_aware_chi2",
    "sky_fit_noise",
    "template_host_extendedness",
]

_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])

RB_FEATURES = (
    "rb_log_snr",
    "rb_chi2",
    "rb_dipole_ratio",
    "rb_size_ratio",
    "rb_elongation",
    "rb_log_tmpl_snr",
    "rb_tmpl_chi2",
    "rb_sci_chi2",
    "rb_host_extendedness",
    "rb_flux_ratio",
    "rb_bright_neighbour",
    "rb_masked_fraction",
    "rb_flagged",
    "rb_peak_offset",
)
"""Feature columns of the real/bogus classifier, in order.

The sign of a DiaSource is deliberately not a feature (a fading variable or an SN in the template is
as real as a new source). Brightness on the *template* (``rb_log_tmpl_snr``, ``rb_flux_ratio`` =
log₁₀ |difference| / (|difference| + template flux)) separates a subtraction residual of a star or galaxy
core from a new source; brightness on the *science* image does not, since every bright transient is
bright there (the earlier science-SNR feature made the classifier reject bright asteroids and SNe).
``rb_chi2`` is the better of a PSF fit and a trailed-PSF fit (a line segment along the footprint's
major axis, its length from the second moments), so a moving object's trail is not taken for a
badly subtracted blob; ``rb_elongation`` (major/minor axis) lets the model tell trails from
round residuals. ``rb_tmpl_chi2`` is the same normalised χ² of a PSF fit on the *template* at the
source's position: a galaxy (an SN's host) fits a PSF badly, a star well, and a template defect (a
star's core clipped in the coadd) very badly, so it tells a change on a galaxy core from a star's
subtraction residual, which ``rb_flux_ratio`` alone cannot at a few percent of the host's flux.
The template fit also suffers from the template's narrower PSF on bright stars, so
``rb_sci_chi2`` (the same on the science image, whose PSF the model is) and ``rb_host_extendedness``
(the star/galaxy call of the host — the direct-image source within one FWHM — measured on the
*template*, where the host is seen without the change and in better seeing; 0.5 when the template
shows none; see :func:`template_host_extendedness`) say more directly whether the change sits on a
galaxy. ``rb_bright_neighbour`` counts bright stars and galaxies alike, but only *other* than the
host (beyond one FWHM; see :func:`bright_neighbour`), and ``rb_tmpl_chi2``/``rb_sci_chi2`` are
fitted jointly with the visit's neighbouring sources (:func:`neighbour_aware_chi2`), so "next to a
bright source" and "on a bright source" are separate questions. A BAD-pixel neighbour now counts in
``rb_flagged`` (columns next to bad ones leave bright artefacts).
"""


def _psf_moments(psf: PsfModel) -> tuple[float, float, float]:
    img = psf.image()
    c = img.shape[0] // 2
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]] - c
    return float((img * xx * xx).sum()), float((img * yy * yy).sum()), float((img * xx * yy).sum())


def _lobes(
    diff: np.ndarray, var: np.ndarray, bad: np.ndarray, x: float, y: float, radius: float
) -> tuple[float, float, float, float, float, float]:
    """Positive and negative lobe fluxes (and their flux-weighted centroids) within ``radius``."""
    ny, nx = diff.shape
    r = int(np.ceil(radius))
    ix, iy = round(x), round(y)
    x0, x1 = max(ix - r, 0), min(ix + r + 1, nx)
    y0, y1 = max(iy - r, 0), min(iy + r + 1, ny)
    d = diff[y0:y1, x0:x1]
    v = var[y0:y1, x0:x1]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = ((xx - x) ** 2 + (yy - y) ** 2 <= radius**2) & ~bad[y0:y1, x0:x1]
    # only pixels significant at 2σ enter a lobe, so noise does not make every source a dipole
    sig = np.sqrt(np.maximum(v, 1e-30))
    pos = inside & (d > 2 * sig)
    neg = inside & (d < -2 * sig)
    fp = float(d[pos].sum())
    fn = float(-d[neg].sum())
    px = float((xx[pos] * d[pos]).sum() / fp) if fp > 0 else x
    py = float((yy[pos] * d[pos]).sum() / fp) if fp > 0 else y
    nxc = float((xx[neg] * -d[neg]).sum() / fn) if fn > 0 else x
    nyc = float((yy[neg] * -d[neg]).sum() / fn) if fn > 0 else y
    return fp, fn, px, py, nxc, nyc


def _trail_fit(
    diff: np.ndarray,
    var: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    x: float,
    y: float,
    length: float,
    angle: float,
) -> tuple[float, float, float]:
    """Linear flux fit of a PSF smeared along a segment (``length`` px at ``angle`` rad) centred at (x, y).

    Returns (flux, flux error, reduced χ²) over unmasked pixels within 2·FWHM of the segment; the
    model is the PSF summed at two positions per pixel of trail, as a shutter-open exposure of a
    moving point source gives (Rubin's ``ip_diffim`` trailed-source measurement does the same in spirit).
    """
    size = psf.size + 2 * int(np.ceil(length / 2)) + 2
    size += 1 - size % 2
    half = size // 2
    ny, nx = diff.shape
    ix, iy = round(x), round(y)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    model = np.zeros((size, size))
    ph = psf.size // 2
    steps = max(2, int(np.ceil(2 * length)))
    ca, sa = np.cos(angle), np.sin(angle)
    for t in (np.arange(steps) + 0.5) / steps - 0.5:
        px, py = x + t * length * ca, y + t * length * sa
        jx, jy = round(px), round(py)
        stamp = psf.image(x, y, dx=px - jx, dy=py - jy)
        ox, oy = jx - ix + half - ph, jy - iy + half - ph
        if ox < 0 or oy < 0 or ox + psf.size > size or oy + psf.size > size:
            continue
        model[oy : oy + psf.size, ox : ox + psf.size] += stamp / steps
    yy, xx = np.mgrid[:size, :size] - half
    u = (xx + ix - x) * ca + (yy + iy - y) * sa
    w = -(xx + ix - x) * sa + (yy + iy - y) * ca
    radius = 2.0 * psf.fwhm
    near = (np.abs(w) <= radius) & (np.abs(u) <= length / 2 + radius)
    sub = (slice(y0 - iy + half, y1 - iy + half), slice(x0 - ix + half, x1 - ix + half))
    p = model[sub]
    d = diff[y0:y1, x0:x1]
    v = var[y0:y1, x0:x1]
    ok = near[sub] & ~bad[y0:y1, x0:x1] & np.isfinite(d) & (v > 0)
    denom = float((p[ok] ** 2 / v[ok]).sum()) if ok.sum() >= 3 else 0.0
    if denom <= 0:
        return float("nan"), float("nan"), float("nan")
    f = float((p[ok] * d[ok] / v[ok]).sum() / denom)
    chi2 = float(((d[ok] - f * p[ok]) ** 2 / v[ok]).sum() / max(ok.sum() - 1, 1))
    return f, 1.0 / np.sqrt(denom), chi2


def neighbour_aware_chi2(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    x: np.ndarray,
    y: np.ndarray,
    neighbours: np.ndarray,
    *,
    exclude: float,
) -> np.ndarray:
    """Reduced χ² of a PSF fit at each (x, y) fitted *jointly* with the PSFs of its neighbours.

    ``neighbours`` are (n, 2) pixel positions of the visit's other direct-image sources; those
    farther than ``exclude`` from the position (nearer ones are the source itself or its host) and
    within the fit radius (2 FWHM) plus a PSF radius get a free flux each, the fit is linear in all
    the fluxes over the unmasked pixels of the union of their stamps, and the χ² is counted over the
    target's fit radius only. Without neighbours it is the plain PSF fit's χ².

    **Why.** The template and science χ² tell a point-like change from a galaxy core or a template
    defect; a bright star 2–3 FWHM away puts its wings into the fit radius and made a clean SN look
    like a badly fitting blob (on ``tiny``, SN 4000000024, 12 px from a 20 µJy star, had a template
    χ² of 19; fitted with its neighbours, 2.3).
    """
    n = len(x)
    out = np.full(n, np.nan)
    size = psf.size
    half = size // 2
    ny, nx = image.shape
    radius = psf_fit_radius(psf)
    tree = cKDTree(neighbours) if len(neighbours) else None
    for i in range(n):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        centres = [(float(x[i]), float(y[i]))]
        if tree is not None:
            for j in tree.query_ball_point([x[i], y[i]], radius + half):
                dn = float(np.hypot(neighbours[j, 0] - x[i], neighbours[j, 1] - y[i]))
                if dn >= exclude:
                    centres.append((float(neighbours[j, 0]), float(neighbours[j, 1])))
        xs = [c[0] for c in centres]
        ys = [c[1] for c in centres]
        x0 = max(int(np.floor(min(xs))) - half, 0)
        x1 = min(int(np.ceil(max(xs))) + half + 1, nx)
        y0 = max(int(np.floor(min(ys))) - half, 0)
        y1 = min(int(np.ceil(max(ys))) + half + 1, ny)
        if x1 - x0 < 3 or y1 - y0 < 3:
            continue
        models = np.zeros((len(centres), y1 - y0, x1 - x0))
        for k, (cx, cy) in enumerate(centres):
            ix, iy = round(cx), round(cy)
            stamp = psf.image(cx, cy, dx=cx - ix, dy=cy - iy)
            sx0, sy0 = ix - half, iy - half
            ax0, ax1 = max(sx0, x0), min(sx0 + size, x1)
            ay0, ay1 = max(sy0, y0), min(sy0 + size, y1)
            if ax1 <= ax0 or ay1 <= ay0:
                continue
            models[k, ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = stamp[
                ay0 - sy0 : ay1 - sy0, ax0 - sx0 : ax1 - sx0
            ]
        d = image[y0:y1, x0:x1]
        v = variance[y0:y1, x0:x1]
        ok = ~bad[y0:y1, x0:x1] & np.isfinite(d) & (v > 0) & (models.sum(axis=0) > 0)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        target = ok & ((xx - x[i]) ** 2 + (yy - y[i]) ** 2 <= radius**2)
        if target.sum() < 3:
            continue
        w = 1.0 / np.sqrt(v[ok])
        a = (models[:, ok] * w).T
        coef, *_ = np.linalg.lstsq(a, d[ok] * w, rcond=None)
        resid = (d - np.tensordot(coef, models, axes=1)) ** 2 / np.where(v > 0, v, 1.0)
        out[i] = float(resid[target].sum() / max(target.sum() - 1, 1))
    return out


def _axes(x2: np.ndarray, y2: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Major and minor second-moment eigenvalues and the major axis angle (rad) of each footprint."""
    mean = 0.5 * (x2 + y2)
    delta = np.sqrt(np.maximum((0.5 * (x2 - y2)) ** 2 + xy**2, 0.0))
    return mean + delta, np.maximum(mean - delta, 1e-3), 0.5 * np.arctan2(2 * xy, x2 - y2)


def _measure(
    objs: np.ndarray,
    sign: int,
    difference: Exposure,
    science: Exposure,
    template: Exposure,
    psf: PsfModel,
    config: DiaConfig,
    neighbours: np.ndarray | None = None,
) -> Table:
    diff = np.asarray(difference.data, dtype=np.float32) * sign
    var = np.asarray(difference.variance, dtype=np.float32)
    mask = np.asarray(difference.mask)
    bad = (mask & _UNUSABLE) != 0
    n = len(objs)
    x = np.asarray(objs["x"], dtype=float)
    y = np.asarray(objs["y"], dtype=float)
    wx, wy, wflag = sep.winpos(np.ascontiguousarray(diff), x, y, psf.sigma, mask=bad)
    use = (wflag == 0) & (np.hypot(wx - x, wy - y) < 1.5)
    x = np.where(use, wx, x)
    y = np.where(use, wy, y)
    phot = psf_photometry(diff, var, bad, psf, x, y)
    flux = np.asarray(phot["flux"]) * sign
    err = np.asarray(phot["fluxErr"])
    sci_var = np.asarray(science.variance, dtype=np.float32)
    sci_bad = (np.asarray(science.mask) & _UNUSABLE) != 0
    sci = psf_photometry(np.asarray(science.data, np.float32), sci_var, sci_bad, psf, x, y)
    tmp_bad = (np.asarray(template.mask) & _UNUSABLE) != 0
    tmp = psf_photometry(
        np.asarray(template.data, np.float32), np.asarray(template.variance, np.float32), tmp_bad, psf, x, y
    )
    # the template and science χ² are fitted jointly with the direct-image neighbours' PSFs, so a
    # bright star's wings do not make a clean source look bad (on the difference the neighbours are
    # subtracted: what is left of them is not PSF-shaped, and the plain fit's χ² stays)
    nbr = np.zeros((0, 2)) if neighbours is None else neighbours
    sci_chi2 = neighbour_aware_chi2(
        np.asarray(science.data, np.float32), sci_var, sci_bad, psf, x, y, nbr, exclude=psf.fwhm
    )
    tmpl_chi2 = neighbour_aware_chi2(
        np.asarray(template.data, np.float32),
        np.asarray(template.variance, np.float32),
        tmp_bad,
        psf,
        x,
        y,
        nbr,
        exclude=psf.fwhm,
    )
    ap, ap_err, _ = aperture_photometry(diff, var, bad, x, y, psf_fit_radius(psf))
    snr = np.abs(flux) / err
    pos_err = np.sqrt(2.0) * psf.sigma / np.maximum(snr, 1e-3)
    ixx_p, iyy_p, ixy_p = _psf_moments(psf)

    dip_mean = np.full(n, np.nan)
    dip_diff = np.full(n, np.nan)
    dip_len = np.full(n, np.nan)
    dip_ang = np.full(n, np.nan)
    dip_ratio = np.zeros(n)
    is_dip = np.zeros(n, dtype=bool)
    for i in range(n):
        fp, fn, px, py, nxc, nyc = _lobes(diff, var, bad, x[i], y[i], 2.0 * psf.fwhm)
        if fp > 0:
            dip_ratio[i] = fn / fp
        if fp > 0 and fn > 0:
            length = float(np.hypot(px - nxc, py - nyc))
            dip_mean[i] = 0.5 * (fp + fn) * sign
            dip_diff[i] = (fp - fn) * sign
            dip_len[i] = length
            dip_ang[i] = float(np.degrees(np.arctan2(py - nyc, px - nxc)))
            is_dip[i] = (fn / fp > config.dipole_ratio) and length > 0.5
    # trailed-PSF fit where the footprint is elongated: a segment's second moment along its axis is
    # L²/12 on top of the PSF's, so L = √(12 (λ_major − λ_minor))
    lam1, lam2, theta = _axes(
        np.asarray(objs["x2"], float), np.asarray(objs["y2"], float), np.asarray(objs["xy"], float)
    )
    elongation = np.sqrt(lam1 / lam2)
    trail_len = np.sqrt(12.0 * np.maximum(lam1 - lam2, 0.0))
    trail_flux = np.full(n, np.nan)
    trail_chi2 = np.full(n, np.nan)
    for i in (int(k) for k in np.flatnonzero((trail_len > 1.5) & (elongation > 1.2))):
        tf, _te, tc = _trail_fit(diff, var, bad, psf, x[i], y[i], float(trail_len[i]), float(theta[i]))
        trail_flux[i], trail_chi2[i] = tf * sign, tc
    ny, nx = diff.shape
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)

    def near(plane: str, radius: int = 2) -> np.ndarray:
        bit = 1 << MASK_PLANES[plane]
        out = np.zeros(n, dtype=bool)
        for i in range(n):
            sl = (
                slice(max(iy[i] - radius, 0), iy[i] + radius + 1),
                slice(max(ix[i] - radius, 0), ix[i] + radius + 1),
            )
            out[i] = bool((mask[sl] & bit).any())
        return out

    def center(plane: str) -> np.ndarray:
        return (mask[iy, ix] & (1 << MASK_PLANES[plane])) != 0

    wcs: WCS = difference.wcs
    ra, dec = wcs.all_pix2world(x, y, 0)
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))))
    edge = (
        (x < psf.size // 2)
        | (y < psf.size // 2)
        | (x > nx - 1 - psf.size // 2)
        | (y > ny - 1 - psf.size // 2)
    )
    table = Table(
        {
            "x": x,
            "y": y,
            "xErr": pos_err.astype(np.float32),
            "yErr": pos_err.astype(np.float32),
            "ra": ra,
            "dec": dec,
            "raErr": (pos_err * scale).astype(np.float32),
            "decErr": (pos_err * scale).astype(np.float32),
            "centroid_flag": ~use,
            "apFlux": ap * sign,
            "apFluxErr": ap_err,
            "isNegative": np.full(n, sign < 0),
            "snr": snr.astype(np.float32),
            "psfFlux": flux,
            "psfFluxErr": err,
            "psfChi2": np.asarray(phot["chi2"]),
            "psfNdata": np.full(n, int(np.pi * (2 * psf.fwhm) ** 2), dtype=np.int32),
            "psfFlux_flag": ~np.isfinite(flux),
            "psfFlux_flag_edge": edge,
            "scienceFlux": np.asarray(sci["flux"]),
            "scienceFluxErr": np.asarray(sci["fluxErr"]),
            "templateFlux": np.asarray(tmp["flux"]),
            "templateFluxErr": np.asarray(tmp["fluxErr"]),
            "dipoleMeanFlux": dip_mean,
            "dipoleFluxDiff": dip_diff,
            "dipoleLength": dip_len * scale * 3600.0,
            "dipoleAngle": sky_bearing(wcs, x, y, np.radians(dip_ang)),
            "dipoleNdata": np.zeros(n, dtype=np.int32),
            "isDipole": is_dip,
            "ixx": np.asarray(objs["x2"], dtype=np.float32),
            "iyy": np.asarray(objs["y2"], dtype=np.float32),
            "ixy": np.asarray(objs["xy"], dtype=np.float32),
            "ixxPSF": np.full(n, ixx_p, dtype=np.float32),
            "iyyPSF": np.full(n, iyy_p, dtype=np.float32),
            "ixyPSF": np.full(n, ixy_p, dtype=np.float32),
            "bboxSize": np.full(n, psf.size, dtype=np.int64),
            "trailNdata": np.zeros(n, dtype=np.int32),
            "trailFlux": trail_flux,
            "trailLength": np.where(np.isfinite(trail_chi2), trail_len * psf_scale_arcsec(wcs), np.nan),
            "trailAngle": np.where(np.isfinite(trail_chi2), sky_bearing(wcs, x, y, theta) % 180.0, np.nan),
            "trailChi2": trail_chi2,
            "rb_elongation": np.clip(elongation, 1.0, 10.0),
            "pixelFlags_bad": near("BAD"),
            "pixelFlags_cr": near("CR"),
            "pixelFlags_crCenter": center("CR"),
            "pixelFlags_edge": edge | near("EDGE"),
            "pixelFlags_nodata": near("NO_DATA"),
            "pixelFlags_nodataCenter": center("NO_DATA"),
            "pixelFlags_interpolated": near("INTRP"),
            "pixelFlags_interpolatedCenter": center("INTRP"),
            "pixelFlags_saturated": near("SAT"),
            "pixelFlags_saturatedCenter": center("SAT"),
            "pixelFlags_suspect": near("SUSPECT"),
            "pixelFlags_suspectCenter": center("SUSPECT"),
            "rb_dipole_ratio": dip_ratio,
            "rb_tmpl_chi2_raw": tmpl_chi2,
            "rb_sci_chi2_raw": sci_chi2,
            "rb_masked_fraction": np.asarray(phot["maskedFraction"]),
            "rb_peak_offset": np.hypot(x - np.asarray(objs["x"]), y - np.asarray(objs["y"])),
        }
    )
    return table


def sky_bearing(wcs: WCS, x: np.ndarray, y: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Bearing (deg East of North, [0, 360)) of pixel direction ``angle`` (rad from +x towards +y) at (x, y).

    The APDB's ``dipoleAngle`` and ``trailAngle`` are "the angle between the meridian through the
    centroid and the dipole/trail direction (bearing)"; a pixel-frame angle depends on the
    detector's rotation on the sky, so each direction is mapped through the WCS (distortion
    included) by a step of 1 px. NaN angles stay NaN.
    """
    x, y, angle = (np.asarray(a, float) for a in (x, y, angle))
    ok = np.isfinite(angle)
    out = np.full(np.shape(angle), np.nan)
    if not ok.any():
        return out
    ra0, dec0 = (np.radians(v) for v in wcs.all_pix2world(x[ok], y[ok], 0))
    ra1, dec1 = (
        np.radians(v) for v in wcs.all_pix2world(x[ok] + np.cos(angle[ok]), y[ok] + np.sin(angle[ok]), 0)
    )
    dra = ra1 - ra0
    east = np.sin(dra) * np.cos(dec1)
    north = np.cos(dec0) * np.sin(dec1) - np.sin(dec0) * np.cos(dec1) * np.cos(dra)
    out[ok] = np.degrees(np.arctan2(east, north)) % 360.0
    return out


def psf_scale_arcsec(wcs: WCS) -> float:
    """Pixel scale (arcsec) of a celestial WCS."""
    return float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0


@dataclass(frozen=True)
class SkyFitNoise:
    """How PSF fits behave on the sky of one difference image (see :func:`sky_fit_noise`).

    ``factor`` is the true over the predicted scatter of PSF fluxes (≥ 1) over the whole image;
    ``share_coeffs`` = (a, b) model the squared factor as a + b·s where s is the template's share of
    the difference variance (``template_share``, per pixel), and ``block_factors`` (≥ 1, a grid over
    the image, interpolated between block centres) multiply what that model leaves; ``chi2_median``
    and ``chi2_sigma`` are the median and robust σ of the fits' reduced χ², and ``chi2_sigma_white``
    the σ that independent pixels would give over the same fit aperture, √(2 / dof).
    """

    factor: float = 1.0
    chi2_median: float = 1.0
    chi2_sigma: float = 0.0
    chi2_sigma_white: float = 0.0
    share_coeffs: tuple[float, float] | None = None
    template_share: np.ndarray | None = None
    block_factors: np.ndarray | None = None

    def _from_share(self, share: np.ndarray) -> np.ndarray:
        assert self.share_coeffs is not None
        a, b = self.share_coeffs
        return np.sqrt(np.maximum(np.float32(a) + np.float32(b) * share, np.float32(1.0)))

    def _block_axes(self, n: int, blocks: int, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lower block index, upper block index and weight of the upper one, for pixel coordinates ``at``.

        Block k spans pixel edges k·n/blocks … (k + 1)·n/blocks; its centre is pixel (k + ½)·n/blocks − ½.
        """
        f = np.clip((at + 0.5) / (n / blocks) - 0.5, 0, blocks - 1)
        lo = np.minimum(f.astype(int), blocks - 1)
        return lo, np.minimum(lo + 1, blocks - 1), f - lo

    def _blocks_at(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int], grid: bool) -> np.ndarray:
        assert self.block_factors is not None
        b = self.block_factors.astype(np.float32)
        i0, i1, wi = self._block_axes(shape[0], b.shape[0], y)
        j0, j1, wj = self._block_axes(shape[1], b.shape[1], x)
        if grid:  # x along columns, y along rows: bilinear is separable, rows @ blocks @ columnsᵀ
            rows = np.zeros((len(y), b.shape[0]), np.float32)
            cols = np.zeros((len(x), b.shape[1]), np.float32)
            np.add.at(rows, (np.arange(len(y)), i0), 1 - wi)
            np.add.at(rows, (np.arange(len(y)), i1), wi)
            np.add.at(cols, (np.arange(len(x)), j0), 1 - wj)
            np.add.at(cols, (np.arange(len(x)), j1), wj)
            return np.asarray(rows @ b @ cols.T, dtype=np.float32)
        top = b[i0, j0] * (1 - wj) + b[i0, j1] * wj
        bottom = b[i1, j0] * (1 - wj) + b[i1, j1] * wj
        return np.asarray(top * (1 - wi) + bottom * wi, dtype=np.float32)

    def factor_at(self, x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The noise factor at pixel positions of an image of ``shape``."""
        x, y = np.nan_to_num(np.asarray(x, dtype=float)), np.nan_to_num(np.asarray(y, dtype=float))
        if self.share_coeffs is None or self.template_share is None:
            out = np.full(x.shape, self.factor)
        else:
            ix = np.clip(np.round(x).astype(int), 0, shape[1] - 1)
            iy = np.clip(np.round(y).astype(int), 0, shape[0] - 1)
            out = np.asarray(self._from_share(self.template_share[iy, ix]), dtype=float)
        if self.block_factors is not None:
            out = out * self._blocks_at(x, y, shape, grid=False)
        return np.asarray(out, dtype=float)

    def factor_image(self, shape: tuple[int, int]) -> np.ndarray:
        """:meth:`factor_at` at every pixel (float32)."""
        if self.share_coeffs is None or self.template_share is None:
            out = np.full(shape, self.factor, dtype=np.float32)
        else:
            out = np.asarray(self._from_share(self.template_share), dtype=np.float32)
        if self.block_factors is not None:
            cols, rows = np.arange(shape[1], dtype=float), np.arange(shape[0], dtype=float)
            out = out * self._blocks_at(cols, rows, shape, grid=True)
        return np.asarray(out, dtype=np.float32)

    def calibrate_chi2(self, chi2: np.ndarray) -> np.ndarray:
        """A reduced χ² re-expressed on the scale an independent-pixel image would give it.

        Why: the difference of a visit sharper than its template is the science image convolved with
        its own PSF (pre-convolution), whose pixels share their noise over a PSF's area. A perfect PSF
        fit there scatters in χ² several times as much as 2/dof says, and a structured residual's χ²
        is inflated as well, so one χ² cut cannot serve both kinds of visit. On ``tiny`` the training
        visits' correlated-noise factors were 1.2–1.6 while scored visits reached 6.7; a quarter of the
        real changes in those visits lost to the χ² step the classifier learned from the others
        (against one in eight elsewhere), SN 4000000024 and 4000000031 among them. The excess over the
        sky's median is scaled by the sky's own χ² spread: unchanged where the noise is white.
        """
        chi2 = np.asarray(chi2, dtype=float)
        if not (self.chi2_sigma > self.chi2_sigma_white > 0):
            return chi2
        return 1.0 + (chi2 - self.chi2_median) * (self.chi2_sigma_white / self.chi2_sigma)


def sky_fit_noise(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    *,
    template_share: np.ndarray | None = None,
    n: int = 600,
    seed: int = 0,
    block_px: int = 256,
    per_block: int = 500,
    max_blocks: int = 8,
) -> SkyFitNoise:
    """PSF fits at random positions (transients are rare, so nearly all are sky): flux scatter and χ².

    A difference image whose sharper input was convolved has spatially correlated noise: its variance
    plane is right pixel by pixel, but a PSF-weighted sum then varies more than the independent-pixel
    formula says, and so does the χ² of a fit. Forced PSF fits at random positions measure both
    directly; thresholds and flux errors are scaled by the flux factor, the real/bogus χ² feature by
    the χ² spread (:meth:`SkyFitNoise.calibrate_chi2`).

    **Where the template's share of the noise changes, so does the factor.** The warped template's
    noise is correlated, so the factor grows with the template's share of the difference variance
    (``template_share``), which is not uniform: where fewer inputs cover the template (a strip beside
    an input's bad column, a dither gap) its variance is 2–3× higher. On ``tiny`` the PSF fluxes in
    such a 40-px strip scattered 1.27× the variance plane's prediction against 0.98× elsewhere, so a
    "5σ" threshold was 4σ there, and three of the scored visits' five noise false positives sat in
    it (a point source at S/N 5 on empty sky is what a faint real transient looks like too, so
    real/bogus cannot reject them). Given the share, the squared factor is fitted as a + b·share on
    the fits binned by share (robust σ per bin), and detection uses it pixel by pixel.

    **What the share model leaves is measured block by block** (blocks of about ``block_px``, at most
    ``max_blocks`` a side, ``per_block`` fits each, ≈ ±5 %; a block's factor is never below 1): the
    scatter also drifts across a detector for reasons the variance planes do not record. On ``tiny``
    (44 scored detector-visits, one run each, real/bogus retrained each time) the false positives
    after real/bogus that sit on empty sky were 5 with one factor per image, 5 with the share model
    alone and 1 with both. It costs ≈ 3 CPU-s per 4k detector (32,000 fits).
    """
    rng = np.random.default_rng(seed)
    ny, nx = image.shape
    margin = psf.size
    rows = int(np.clip(round((ny - 2 * margin) / block_px), 1, max_blocks))
    cols = int(np.clip(round((nx - 2 * margin) / block_px), 1, max_blocks))
    n = max(n, per_block * rows * cols)
    # integer positions: the PSF needs no sub-pixel shift, which keeps this at ≈ 30 µs a fit
    x = rng.integers(margin, nx - margin, n).astype(float)
    y = rng.integers(margin, ny - margin, n).astype(float)
    ok = ~bad[y.astype(int), x.astype(int)]
    x, y = x[ok], y[ok]
    flux, err, chi2 = psf_photometry_at_pixels(image, variance, bad, psf, x.astype(int), y.astype(int))
    good = np.isfinite(flux) & np.isfinite(err) & np.isfinite(chi2) & (err > 0)
    if good.sum() < 50:
        return SkyFitNoise()
    pull = flux[good] / err[good]
    chi2 = chi2[good]
    factor = float(max(1.0, _robust_sigma(pull)))
    coeffs = None
    if template_share is not None and template_share.shape == image.shape:
        share = template_share[y[good].astype(int), x[good].astype(int)].astype(float)
        coeffs = _share_model(pull, share)
    noise = SkyFitNoise(factor=factor, share_coeffs=coeffs, template_share=template_share if coeffs else None)
    blocks = None
    if rows * cols > 1:  # what the share model leaves, block by block
        xg, yg = x[good], y[good]
        z = pull / noise.factor_at(xg, yg, image.shape)
        bi = np.minimum((yg / (ny / rows)).astype(int), rows - 1)
        bj = np.minimum((xg / (nx / cols)).astype(int), cols - 1)
        blocks = np.ones((rows, cols))
        for i in range(rows):
            for j in range(cols):
                inside = z[(bi == i) & (bj == j)]
                if inside.size >= 30:  # else no correction (a mostly masked block)
                    blocks[i, j] = max(1.0, _robust_sigma(inside))
    dof = max(int(psf_fit_aperture(psf).sum()) - 1, 1)
    return SkyFitNoise(
        factor=factor,
        share_coeffs=coeffs,
        template_share=template_share if coeffs is not None else None,
        block_factors=blocks,
        chi2_median=float(np.median(chi2)),
        chi2_sigma=_robust_sigma(chi2),
        chi2_sigma_white=float(np.sqrt(2.0 / dof)),
    )


def _share_model(pull: np.ndarray, share: np.ndarray, *, n_bins: int = 8) -> tuple[float, float] | None:
    """(a, b) of σ²(pull) = a + b·share, from the robust σ in equal-width bins of share; None if flat.

    A negative slope (noise falling as the template's share rises) is not physical and is taken as
    no dependence (b = 0, a = the overall σ²).
    """
    lo, hi = np.percentile(share, [1, 99])
    if hi - lo < 0.01 or pull.size < 50 * n_bins:
        return None
    # equal-width bins: a narrow region of high share (a strip beside a bad column) gets its own bin
    edges = np.linspace(lo, hi, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, share, side="right") - 1, 0, n_bins - 1)
    s_mid, s2, w = [], [], []
    for k in range(n_bins):
        inside = idx == k
        if inside.sum() >= 30:
            s_mid.append(float(np.mean(share[inside])))
            s2.append(_robust_sigma(pull[inside]) ** 2)
            w.append(float(inside.sum()))
    if len(s_mid) < 2:
        return None
    b, a = np.polyfit(np.asarray(s_mid), np.asarray(s2), 1, w=np.sqrt(np.asarray(w)))
    if b <= 0:
        return (float(_robust_sigma(pull) ** 2), 0.0)
    return (float(a), float(b))


def _robust_sigma(values: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def detect_dia_sources(
    difference: Exposure,
    science: Exposure,
    template: Exposure,
    psf: PsfModel,
    *,
    direct_sources: Table | None = None,
    config: DiaConfig | None = None,
    template_share: np.ndarray | None = None,
) -> Table:
    """Detect positive and negative DIA sources at ``config.threshold`` σ and measure them.

    Parameters
    ----------
    difference
        The difference image (nJy, variance, mask), with the PSF ``psf``.
    science, template
        The visit image and the warped template on the same grid (for ``scienceFlux``/``templateFlux``).
    direct_sources
        The visit's ``source`` table (``x``, ``y``, ``psfFlux``, ``psfFluxErr``), used for the
        bright-neighbour feature of the real/bogus classifier.
    template_share
        The template's share of the difference variance per pixel (the subtraction's
        ``template_share``): the noise factor is modelled on it (:func:`sky_fit_noise`).

    Returns
    -------
    Table
        One row per DiaSource with APDB column names (no IDs yet) and the ``rb_*`` features.
    """
    config = config or DiaConfig()
    image = np.asarray(difference.data, dtype=np.float32)
    var = np.asarray(difference.variance, dtype=np.float32)
    bad = (np.asarray(difference.mask) & _UNUSABLE) != 0
    sky = sky_fit_noise(image, var, bad, psf, template_share=template_share)
    neighbours = (
        np.column_stack([np.asarray(direct_sources["x"], float), np.asarray(direct_sources["y"], float)])
        if direct_sources is not None and len(direct_sources)
        else np.zeros((0, 2))
    )
    difference.meta["DIFNOISE"] = (sky.factor, "PSF-flux noise / independent-pixel prediction")
    if sky.share_coeffs is not None:
        difference.meta["DIFNOISA"] = (sky.share_coeffs[0], "noise factor^2 = A + B * template share")
        difference.meta["DIFNOISB"] = (sky.share_coeffs[1], "noise factor^2 = A + B * template share")
    difference.meta["DIFSKYC2"] = (sky.chi2_median, "median PSF-fit chi2 on the sky")
    difference.meta["DIFSKYS2"] = (sky.chi2_sigma, "robust sigma of sky PSF-fit chi2")
    tables = []
    # the threshold is a local 5σ: the variance the detection sees carries the block noise factors
    detection_var = var * np.square(sky.factor_image(var.shape))
    for sign in (1, -1):
        objs, _ = detect(
            sign * image,
            detection_var,
            bad,
            psf,
            threshold=config.threshold,
            min_area=config.min_area,
            deblend=False,
        )
        if len(objs):
            t = _measure(objs, sign, difference, science, template, psf, config, neighbours)
            local = sky.factor_at(np.asarray(t["x"], float), np.asarray(t["y"], float), var.shape)
            t["psfFluxErr"] = np.asarray(t["psfFluxErr"]) * local
            t["apFluxErr"] = np.asarray(t["apFluxErr"]) * local
            t["snr"] = (np.abs(np.asarray(t["psfFlux"])) / np.asarray(t["psfFluxErr"])).astype(np.float32)
            tables.append(t)
    if not tables:
        return _empty()
    table = vstack(tables, metadata_conflicts="silent")
    # a PSF-fit SNR below the threshold means the detection was a noise-shaped blob; keep at 0.8×
    table = table[np.isfinite(table["psfFlux"]) & (table["snr"] >= 0.8 * config.threshold)]
    table = table[~_fragments(table, psf)]
    _add_features(table, psf, direct_sources, sky)
    table["rb_host_extendedness"] = template_host_extendedness(
        table,
        template,
        direct_sources,
        fwhm=psf.fwhm,
        template_fwhm=float(difference.meta.get("TMPLFWHM", 0.0)),
    )
    return table


def template_host_extendedness(
    table: Table,
    template: Exposure,
    direct_sources: Table | None,
    *,
    fwhm: float,
    template_fwhm: float,
    min_snr: float = 5.0,
    galaxy_ratio: float = 0.85,
) -> np.ndarray:
    """The star (0) / galaxy (1) call of each DiaSource's host measured on the *template*, 0.5 without one.

    The host is the visit's direct-image source within one FWHM (its centroid; the DiaSource's own
    position when there is none), and it is measured on the warped template: the ratio of a PSF flux
    (a Gaussian of the template's FWHM, ``TMPLFWHM`` of the difference image) to a 2-FWHM aperture
    flux, over the same ratio's median on the visit's PSF stars measured there (the stellar locus);
    below ``galaxy_ratio`` of it the host is extended. Hosts under ``min_snr`` on the template
    (a new source on empty sky) get 0.5.

    **Why the template and not the visit.** The visit's own ``extendedness`` measures the host *with
    the transient on it*: an SN of a few tens of percent of a compact host's flux makes the blend
    look point-like, and a brightening "star" is what a variable star or a star's subtraction
    residual looks like. Worse, training never saw that bias: fakes are injected *after* the
    visit's source catalogue is measured, so every training host was called without its fake,
    while every real SN's host is called with it. On ``tiny`` SN 4000000035 (true SNR 10.2) on a
    compact galaxy the visit called a star was rejected so. The template holds the host before the
    change, in training and in production alike. The call itself is no sharper than the visit's
    (on 16 ``tiny`` detector-visits, sources at SNR > 10: the template mislabels 18 % of truth
    stars and 27 % of galaxies, the visit 9 % and 35 %; a PSF fitted on the template's stars instead
    of the Gaussian changes that by ≤ 2 %), but it is the same in training and in production.
    """
    n = len(table)
    out = np.full(n, 0.5)
    if not n:
        return out
    from pachon.pipelines.prompt.psf import gaussian_psf

    ft = template_fwhm if template_fwhm > 0 else fwhm
    size = int(2 * np.ceil(2.5 * ft) + 1)
    tpsf = gaussian_psf(ft / 2.3548, size=max(size, 11))
    image = np.asarray(template.data, dtype=np.float32)
    var = np.asarray(template.variance, dtype=np.float32)
    bad = (np.asarray(template.mask) & _UNUSABLE) != 0
    x = np.asarray(table["x"], dtype=float).copy()
    y = np.asarray(table["y"], dtype=float).copy()
    stellar = np.nan
    if direct_sources is not None and len(direct_sources):
        sx = np.asarray(direct_sources["x"], dtype=float)
        sy = np.asarray(direct_sources["y"], dtype=float)
        dist, idx = cKDTree(np.column_stack([sx, sy])).query(np.column_stack([x, y]))
        near = dist < fwhm
        x[near], y[near] = sx[idx[near]], sy[idx[near]]
        if "calib_psf_used" in direct_sources.colnames:
            stars = np.asarray(direct_sources["calib_psf_used"], dtype=bool)
            if stars.sum() >= 5:
                star_ratio, _ = psf_aperture_ratio(image, var, bad, tpsf, sx[stars], sy[stars], 2.0 * ft)
                stellar = float(np.nanmedian(star_ratio))
    if not np.isfinite(stellar) or stellar <= 0:
        return out
    ratio, snr = psf_aperture_ratio(image, var, bad, tpsf, x, y, 2.0 * ft)
    ratio = ratio / stellar
    hosted = np.isfinite(snr) & (snr >= min_snr) & np.isfinite(ratio)
    out[hosted] = (ratio[hosted] < galaxy_ratio).astype(float)
    return out


def _fragments(table: Table, psf: PsfModel, *, ratio: float = 20.0, reach_fwhm: float = 4.0) -> np.ndarray:
    """DIA sources in the wings of a much brighter one (either sign): pieces of its footprint.

    A bright star that varies, or whose PSF the kernel matched imperfectly, leaves a ring of
    low-level residual in the difference image out to a few FWHM, which detection splits into
    separate peaks; a source within ``reach_fwhm`` FWHM of one ``ratio`` times brighter is such a
    piece (as a deblender would assign it to the bright parent) and is dropped.
    """
    n = len(table)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    flux = np.abs(np.asarray(table["psfFlux"], float))
    xy = np.column_stack([np.asarray(table["x"], float), np.asarray(table["y"], float)])
    tree = cKDTree(xy)
    for i, j in tree.query_pairs(reach_fwhm * psf.fwhm):
        if flux[j] > ratio * flux[i]:
            out[i] = True
        elif flux[i] > ratio * flux[j]:
            out[j] = True
    return out


def _add_features(
    table: Table, psf: PsfModel, direct_sources: Table | None, sky: SkyFitNoise | None = None
) -> None:
    n = len(table)
    snr = np.asarray(table["snr"], dtype=float)
    table["rb_log_snr"] = np.log10(np.maximum(snr, 1.0))
    psf_chi2 = np.nan_to_num(np.asarray(table["psfChi2"], float), nan=100.0)
    trail_chi2 = np.nan_to_num(np.asarray(table["trailChi2"], float), nan=np.inf)
    # a PSF model good to a few percent leaves χ² ≈ 1 + (ε·SNR)² on a perfect point source, so a bright
    # variable star is not a bad fit; ε = 5 % (the pixelized model's residual on bright stars here)
    model_error = 1.0 + (0.05 * snr) ** 2
    best_chi2 = np.minimum(psf_chi2, trail_chi2) / model_error
    if sky is not None:  # on the scale of white noise (pre-convolved differences scatter far more)
        best_chi2 = sky.calibrate_chi2(best_chi2)
    table["rb_chi2"] = np.log10(np.clip(best_chi2, 0.1, 1e4))
    tmpl_snr_abs = np.abs(
        np.nan_to_num(np.asarray(table["templateFlux"], float) / np.asarray(table["templateFluxErr"], float))
    )
    tmpl_chi2 = np.nan_to_num(np.asarray(table["rb_tmpl_chi2_raw"], float), nan=1.0)
    table["rb_tmpl_chi2"] = np.log10(np.clip(tmpl_chi2 / (1.0 + (0.05 * tmpl_snr_abs) ** 2), 0.1, 1e4))
    sci_snr_abs = np.abs(
        np.nan_to_num(np.asarray(table["scienceFlux"], float) / np.asarray(table["scienceFluxErr"], float))
    )
    sci_chi2 = np.nan_to_num(np.asarray(table["rb_sci_chi2_raw"], float), nan=1.0)
    table["rb_sci_chi2"] = np.log10(np.clip(sci_chi2 / (1.0 + (0.05 * sci_snr_abs) ** 2), 0.1, 1e4))
    del table["rb_tmpl_chi2_raw"], table["rb_sci_chi2_raw"]
    size = (
        (np.asarray(table["ixx"]) + np.asarray(table["iyy"]))
        / max(float(table["ixxPSF"][0] + table["iyyPSF"][0]), 1e-3)
        if n
        else np.zeros(0)
    )
    table["rb_size_ratio"] = np.clip(size, 0, 10)
    tmpl_flux = np.nan_to_num(np.asarray(table["templateFlux"], float))
    tmpl_snr = tmpl_flux / np.asarray(table["templateFluxErr"], float)
    table["rb_log_tmpl_snr"] = np.sign(tmpl_snr) * np.log10(1 + np.abs(np.nan_to_num(tmpl_snr)))
    diff_flux = np.abs(np.asarray(table["psfFlux"], float))
    # log of the fractional change: a residual of a bright star is ≲ 1–5 % of it (≲ −1.3), a real change
    # of a star or a galaxy core is tens of percent (≈ −0.5), a new source on empty sky 100 % (0)
    ratio = np.nan_to_num(diff_flux / (diff_flux + np.maximum(tmpl_flux, 0.0) + 1e-3), nan=1.0)
    table["rb_flux_ratio"] = np.log10(np.clip(ratio, 1e-3, 1.0))
    table["rb_bright_neighbour"] = bright_neighbour(
        np.asarray(table["x"], float), np.asarray(table["y"], float), direct_sources, fwhm=psf.fwhm
    )
    table["rb_flagged"] = (
        np.asarray(table["pixelFlags_cr"], dtype=float)
        + np.asarray(table["pixelFlags_interpolated"], dtype=float)
        + np.asarray(table["pixelFlags_saturated"], dtype=float)
        + np.asarray(table["pixelFlags_nodata"], dtype=float)
        + np.asarray(table["pixelFlags_bad"], dtype=float)
    )


def bright_neighbour(
    x: np.ndarray, y: np.ndarray, direct_sources: Table | None, *, fwhm: float, min_snr: float = 50.0
) -> np.ndarray:
    """``rb_bright_neighbour``: log₁₀ SNR of the strongest bright direct-image source *other than* the host.

    Each bright (PSF SNR > ``min_snr``) source of the visit's ``source`` table counts
    ``log₁₀ SNR · exp(−d / 1.5 FWHM)`` at distance d, and the largest over the eight nearest is
    kept; sources within one FWHM are the DiaSource's own counterpart or host and do not count
    (a bright transient is its own direct-image source; a host is described by the template
    features and ``rb_host_extendedness``).

    **Why not the nearest source beyond one pixel**, as before: an SN 2–3 px from the core of its
    bright host, and the dipole a shifted star leaves 1–2 px from it, then both counted their own
    host as a "bright neighbour", so the feature stood for "on a bright source" as much as "next to
    one", and the trees learnt that a large value is bogus: on ``tiny`` (training visits, held out
    by visit) 0.67 of the real fakes at SNR ≥ 10 with a value above 0.3 were kept, 0.94 with the host
    left out.
    """
    n = len(x)
    out = np.zeros(n)
    if direct_sources is None or not len(direct_sources) or not n:
        return out
    dsnr = np.asarray(direct_sources["psfFlux"], float) / np.asarray(direct_sources["psfFluxErr"], float)
    sel = np.isfinite(dsnr) & (dsnr > min_snr)
    if not sel.any():
        return out
    tree = cKDTree(
        np.column_stack([np.asarray(direct_sources["x"])[sel], np.asarray(direct_sources["y"])[sel]])
    )
    k = min(8, int(sel.sum()))
    dist, idx = tree.query(np.column_stack([x, y]), k=k)
    dist, idx = np.reshape(dist, (n, k)), np.reshape(idx, (n, k))
    other = np.isfinite(dist) & (dist >= fwhm)
    j = np.where(other, idx, 0)
    weight = np.log10(dsnr[sel][j]) * np.exp(-np.where(other, dist, 0.0) / (1.5 * fwhm))
    return np.asarray(np.where(other, weight, 0.0).max(axis=1))


def _empty() -> Table:
    cols = ["x", "y", "ra", "dec", "psfFlux", "psfFluxErr", "snr", *RB_FEATURES]
    return Table({c: np.zeros(0) for c in cols})
