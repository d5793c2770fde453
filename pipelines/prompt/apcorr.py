"""Aperture correction: put PSF fluxes on the scale of a large aperture, smoothly across the detector.

Why: a PSF flux is only as good as the PSF model's width. Fitting a model that is 5 % narrower or
wider than a star's real PSF biases the flux by ~5 % (for Gaussians F̂/F = 2σ_m²/(σ_m² + σ_s²)),
and the model's width errors vary across the detector (the real PSF widens off-axis; the pixelized
model is linear in position or constant when stars are few). Measured on the ``small`` preset
before this step: PSF − aperture magnitudes changed by ±0.1 mag across one detector, which was the
bulk of the single-visit photometric scatter (PA1). Rubin's pipelines measure the same ratio on
bright stars and interpolate it (``MeasureApCorrTask``); we fit a low-order polynomial in the
detector position to ``aperture flux / PSF flux`` of bright, unflagged, isolated point sources.

The correction is normalised to a median of 1 over the stars that define it, so the detector's
zero point (fitted to PSF fluxes against the reference catalog) keeps its meaning and only the
spatial variation is removed. Its coefficients are written to the image header (``APCORR*``) so any
later PSF photometry on the same image (forced photometry) can apply it with :func:`apcorr_from_header`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["ApertureCorrection", "apcorr_from_header", "fit_aperture_correction"]


@dataclass(frozen=True)
class ApertureCorrection:
    """``factor(x, y) = Σ c_k T_k(u, v)`` with ``u, v`` the position scaled to [−1, 1] by ``shape``."""

    coeffs: tuple[float, ...]
    degree: int
    shape: tuple[int, int]
    n_stars: int
    scatter_mag: float

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        if not self.coeffs:
            return np.ones(np.shape(x))
        return np.asarray(_design(x, y, self.shape, self.degree) @ np.asarray(self.coeffs), dtype=float)

    def to_header(self, meta: Any) -> None:
        """Write the correction as ``APCDEG``, ``APCNX``, ``APCNY``, ``APCNSTR``, ``APCORRk`` keywords."""
        meta["APCDEG"] = (self.degree, "aperture correction degree (-1: none)")
        meta["APCNY"], meta["APCNX"] = self.shape
        meta["APCNSTR"] = (self.n_stars, "stars defining the aperture correction")
        scatter = self.scatter_mag if np.isfinite(self.scatter_mag) else -1.0  # FITS has no NaN
        meta["APCSCAT"] = (scatter, "scatter of the stars about it (mag; -1: none)")
        for k, c in enumerate(self.coeffs):
            meta[f"APCORR{k}"] = c


def apcorr_from_header(meta: Any) -> ApertureCorrection | None:
    """The correction written by :meth:`ApertureCorrection.to_header`, or None if the header has none."""
    if meta is None or "APCDEG" not in meta:
        return None
    degree = int(meta["APCDEG"])
    if degree < 0:
        return None
    n = len(_terms(degree))
    return ApertureCorrection(
        coeffs=tuple(float(meta[f"APCORR{k}"]) for k in range(n)),
        degree=degree,
        shape=(int(meta["APCNY"]), int(meta["APCNX"])),
        n_stars=int(meta.get("APCNSTR", 0)),
        scatter_mag=float(meta["APCSCAT"]) if float(meta.get("APCSCAT", -1.0)) >= 0 else float("nan"),
    )


def _terms(degree: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]


def _design(x: np.ndarray, y: np.ndarray, shape: tuple[int, int], degree: int) -> np.ndarray:
    ny, nx = shape
    u = 2 * np.asarray(x, float) / max(nx - 1, 1) - 1
    v = 2 * np.asarray(y, float) / max(ny - 1, 1) - 1
    return np.column_stack([u**i * v**j for i, j in _terms(degree)])


def fit_aperture_correction(
    x: np.ndarray,
    y: np.ndarray,
    psf_flux: np.ndarray,
    ap_flux: np.ndarray,
    ap_flux_err: np.ndarray,
    usable: np.ndarray,
    shape: tuple[int, int],
    *,
    radius: float,
    psf_flux_err: np.ndarray | None = None,
    min_snr: float = 30.0,
    clip: float = 3.0,
    floor_mag: float = 0.002,
    max_degree: int = 2,
) -> ApertureCorrection:
    """Fit ``ap_flux / psf_flux`` of bright isolated point sources, weighted, with the degree the data support.

    ``usable`` selects unflagged point-like sources; sources with a neighbour within ``2 × radius``
    brighter than 0.5 % of them (whose light would enter the aperture) are excluded here. With fewer than 5
    stars the correction is the identity (degree −1).

    Why weighted: the large aperture collects the sky noise of hundreds of pixels, so an S/N 30 star's
    ratio is uncertain by ~3 % and a bright one's by a few mmag. An unweighted fit of ~20 such stars (a
    typical 2k detector-visit of ``small``) had ~6 mmag of noise, different in every visit — measured
    there as a smooth, visit-varying pattern in PSF fluxes that the ubercal's fixed star flat cannot
    remove (PA1 7.8 mmag where aperture fluxes showed none). Each star is weighted by its ratio's error
    (aperture and PSF flux errors, plus ``floor_mag`` for what the errors miss). Why BIC: the degree
    (0, 1 or 2, at most ``max_degree``) is the one with the lowest Bayesian information criterion,
    ``χ² + k ln n``: a spatial term is fitted only when the stars show it beyond their noise.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ratio = np.asarray(ap_flux, float) / np.asarray(psf_flux, float)
    snr = np.asarray(ap_flux, float) / np.asarray(ap_flux_err, float)
    ok = np.asarray(usable, bool) & np.isfinite(ratio) & (ratio > 0) & (snr > min_snr)
    if len(x) > 1:  # a neighbour inside 2 × radius adding > 0.5 % of the star's light spoils the ratio
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(2 * radius, output_type="ndarray")
        flux = np.nan_to_num(np.abs(np.asarray(ap_flux, float)), nan=np.inf)
        crowded = np.zeros(len(x), bool)
        for a, b in ((pairs[:, 0], pairs[:, 1]), (pairs[:, 1], pairs[:, 0])):
            crowded[a[flux[b] > 0.005 * flux[a]]] = True
        ok &= ~crowded
    idx = np.flatnonzero(ok)
    if len(idx) < 5:
        return ApertureCorrection(
            coeffs=(), degree=-1, shape=shape, n_stars=len(idx), scatter_mag=float("nan")
        )
    mag = -2.5 * np.log10(ratio[idx])
    rel2 = (1.0 / snr[idx]) ** 2
    if psf_flux_err is not None:
        rel2 = rel2 + (np.asarray(psf_flux_err, float)[idx] / np.asarray(psf_flux, float)[idx]) ** 2
    sigma = np.sqrt(1.0857**2 * np.nan_to_num(rel2, nan=1.0) + floor_mag**2)

    def fit(degree: int, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        design = _design(x[idx], y[idx], shape, degree)
        w = 1.0 / sigma
        coef, *_ = np.linalg.lstsq(design[keep] * w[keep, None], mag[keep] * w[keep], rcond=None)
        return coef, design @ coef

    def clipped(degree: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = np.ones(len(idx), bool)
        coef, model = fit(degree, keep)
        for _ in range(5):
            pull = (mag - model) / sigma
            scale = max(1.4826 * float(np.median(np.abs(pull[keep] - np.median(pull[keep])))), 1.0)
            new = np.abs(pull - np.median(pull[keep])) < clip * scale
            if (new == keep).all() or new.sum() < len(_terms(degree)) + 2:
                break
            keep = new
            coef, model = fit(degree, keep)
        return coef, model, keep

    # the star set is fixed by the constant fit's clipping, so the degrees compare on the same data
    _, _, keep = clipped(0)
    n = int(keep.sum())
    best: tuple[float, int] = (np.inf, 0)
    for degree in range(max_degree + 1):
        k = len(_terms(degree))
        if n < 3 * k + 2:  # at least ~3 stars per parameter
            break
        _, model = fit(degree, keep)
        bic = float((((mag - model) / sigma)[keep] ** 2).sum()) + k * np.log(n)
        best = min(best, (bic, degree))
    degree = best[1]
    _, model_mag, keep = clipped(degree)
    resid = (mag - model_mag)[keep]
    scatter = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-4
    # the fit is in magnitudes (robust to the skew of flux ratios); convert to a flux factor
    # polynomial by refitting 10^(−0.4 m) on the same stars, normalised to median 1
    design = _design(x[idx], y[idx], shape, degree)
    factor = 10 ** (-0.4 * (model_mag - np.median(model_mag[keep])))
    fcoef, *_ = np.linalg.lstsq(design[keep], factor[keep], rcond=None)
    return ApertureCorrection(
        coeffs=tuple(float(c) for c in fcoef),
        degree=degree,
        shape=shape,
        n_stars=int(keep.sum()),
        scatter_mag=scatter,
    )
