"""Characterize a post-ISR image: background, detection, PSF model, centroids and photometry.

This is the first half of Rubin's ``calibrateImage`` (what ``CharacterizeImageTask`` did): it
needs no reference catalog, so the data-release pipeline reuses it unchanged. Fluxes here are in
the image's unit (electrons after ISR); :mod:`pachon.pipelines.prompt.calibrate` turns them into nJy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import CharacterizeConfig
from pachon.pipelines.prompt.measure import (
    aperture_photometry,
    detect,
    estimate_background,
    estimate_illumination,
    psf_photometry,
)
from pachon.pipelines.prompt.psf import PsfModel, fit_psf, gaussian_psf

__all__ = ["BAD_BITS", "Characterization", "characterize", "plane_bits", "select_psf_stars"]


def plane_bits(*names: str) -> int:
    """The int mask of the named planes OR-ed together."""
    bits = 0
    for name in names:
        bits |= 1 << MASK_PLANES[name]
    return bits


BAD_BITS = plane_bits("BAD", "SAT", "NO_DATA")
"""Pixels that carry no usable flux (interpolated CRs are usable for detection, not for PSF stars)."""


class CharacterizeError(RuntimeError):
    """Too little signal to characterize the image (no stars for a PSF, empty detection)."""


@dataclass
class Characterization:
    """What :func:`characterize` returns: the background-subtracted exposure and what was learnt."""

    exposure: Exposure
    background: np.ndarray
    psf: PsfModel
    sources: Table


def select_psf_stars(objs: np.ndarray, bad: np.ndarray, *, min_snr: float, max_stars: int) -> np.ndarray:
    """Indices of bright, isolated, unflagged, star-sized objects (the stellar locus in size)."""
    if len(objs) == 0:
        return np.zeros(0, dtype=int)
    snr = objs["flux"] / np.sqrt(np.maximum(objs["flux"], 1.0) + objs["npix"] * 1.0)
    size = np.sqrt(0.5 * (objs["x2"] + objs["y2"]))
    tree = cKDTree(np.column_stack([objs["x"], objs["y"]]))
    near = np.array(
        [len(n) > 1 for n in tree.query_ball_point(np.column_stack([objs["x"], objs["y"]]), 10.0)]
    )
    ix = np.clip(np.round(objs["x"]).astype(int), 0, bad.shape[1] - 1)
    iy = np.clip(np.round(objs["y"]).astype(int), 0, bad.shape[0] - 1)
    ok = (objs["flag"] == 0) & (snr > min_snr) & ~near & ~bad[iy, ix] & np.isfinite(size)
    if ok.sum() < 5:
        ok = (snr > min_snr / 3) & ~near & ~bad[iy, ix]
    if ok.sum() == 0:
        return np.zeros(0, dtype=int)
    locus = np.median(size[ok])
    ok &= np.abs(size - locus) < 0.15 * locus
    idx = np.flatnonzero(ok)
    return idx[np.argsort(-objs["flux"][idx])][:max_stars]


def _refine_centroids(
    image: np.ndarray, bad: np.ndarray, x: np.ndarray, y: np.ndarray, rows: np.ndarray, sigma: float
) -> None:
    """Replace ``x[rows]``, ``y[rows]`` in place by sep's Gaussian-windowed centroids where they converge."""
    if len(rows) == 0:
        return
    wx, wy, flag = sep.winpos(np.ascontiguousarray(image), x[rows], y[rows], sigma, mask=bad)
    ok = (flag == 0) & np.isfinite(wx) & np.isfinite(wy) & (np.hypot(wx - x[rows], wy - y[rows]) < 1.5)
    x[rows] = np.where(ok, wx, x[rows])
    y[rows] = np.where(ok, wy, y[rows])


def characterize(
    exposure: Exposure, *, config: CharacterizeConfig | None = None, seeing_px: float | None = None
) -> Characterization:
    """Background-subtract, detect, model the PSF and measure every source of one detector image.

    Parameters
    ----------
    exposure
        A post-ISR exposure (image, variance, mask).
    seeing_px
        First guess of the PSF FWHM in pixels (from the header's ``SEEING`` if absent, else 4 px).

    Returns
    -------
    Characterization
        ``sources`` has pixel positions (``x``, ``y`` 0-based, ``xErr``, ``yErr``), ``psfFlux``,
        ``apFlux`` (radius ``config.aperture_radius``) in the image's unit, moments ``ixx/iyy/ixy``,
        the local ``sky`` and pixel flags.
    """
    config = config or CharacterizeConfig()
    image = np.asarray(exposure.data, dtype=np.float32)
    variance = np.asarray(
        exposure.variance if exposure.variance is not None else np.abs(image) + 1.0, np.float32
    )
    mask = np.asarray(exposure.mask)
    bad = (mask & BAD_BITS) != 0
    illum = (
        estimate_illumination(
            image, bad, variance, box=config.illumination_box, order=config.illumination_order
        )
        if config.illumination_box > 0
        else None
    )
    if illum is not None:  # the flat's error, measured on the sky: divide it out of image and variance
        image = image / illum
        variance = variance / (illum * illum)
    background = estimate_background(
        image, bad, box=config.background_box, filter_size=config.background_filter
    )
    sub = image - background
    if seeing_px is None:
        seeing = exposure.meta.get("SEEING") if exposure.meta is not None else None
        scale = exposure.meta.get("PIXSCALE", 0.2) if exposure.meta is not None else 0.2
        seeing_px = float(seeing) / float(scale) if seeing else 4.0
    guess = gaussian_psf(seeing_px / 2.3548, size=config.psf_stamp, shape=image.shape)
    objs, seg = detect(sub, variance, bad, guess, threshold=config.detect_threshold, min_area=config.min_area)
    if len(objs) == 0:
        raise CharacterizeError("no sources detected; the image may be empty or the threshold too high")
    stars = select_psf_stars(
        objs,
        bad | ((mask & plane_bits("CR")) != 0),
        min_snr=config.psf_min_snr,
        max_stars=config.psf_max_stars,
    )
    psf_bad = bad | ((mask & plane_bits("CR")) != 0)
    # PSF stars are stacked on the same windowed centroids the sources are measured at (sep's isophotal
    # barycentres are noisier for faint stars, and a mis-centred stack is a broadened model)
    px = np.asarray(objs["x"], dtype=float).copy()
    py = np.asarray(objs["y"], dtype=float).copy()
    _refine_centroids(sub, psf_bad, px, py, stars, guess.sigma)
    try:
        psf = fit_psf(
            sub, variance, psf_bad, px[stars], py[stars], size=config.psf_stamp,
            min_stars_spatial=config.psf_min_stars_spatial,
        )  # fmt: skip
        _refine_centroids(sub, psf_bad, px, py, stars, psf.sigma)
        # compact galaxies sneak into the size locus; they fit the first model badly: drop, refit
        # (a galaxy-polluted model fits every candidate worse, so keep the better-fitting half
        # while the typical χ² says the model is still wrong)
        for _ in range(3):
            trial = psf_photometry(sub, variance, psf_bad, psf, px[stars], py[stars])
            chi2 = np.nan_to_num(np.asarray(trial["chi2"]), nan=np.inf)
            median = float(np.median(chi2))
            if median < 2.0 or len(stars) < 10:
                break
            stars = stars[chi2 <= median]
            psf = fit_psf(
                sub, variance, psf_bad, px[stars], py[stars], size=config.psf_stamp,
                min_stars_spatial=config.psf_min_stars_spatial,
            )  # fmt: skip
    except ValueError as exc:
        raise CharacterizeError(f"PSF model failed: {exc}") from exc

    x = np.asarray(objs["x"], dtype=float).copy()
    y = np.asarray(objs["y"], dtype=float).copy()
    _refine_centroids(sub, bad, x, y, np.arange(len(x)), psf.sigma)
    phot = psf_photometry(sub, variance, bad, psf, x, y, pixel_weights=False)  # unbiased for bright stars
    ap_flux, ap_err, _ = aperture_photometry(sub, variance, bad, x, y, config.aperture_radius)
    snr = np.asarray(phot["flux"] / phot["fluxErr"])
    pos_err = np.sqrt(2.0) * psf.sigma / np.maximum(np.abs(snr), 1e-3)

    ny, nx = image.shape
    labels = np.arange(1, len(objs) + 1)

    def footprint_has(bits: int) -> np.ndarray:
        hit = (mask & bits) != 0
        found = np.zeros(len(objs) + 1, dtype=bool)
        found[np.unique(seg[hit & (seg > 0)])] = True
        return found[labels]

    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    edge = (
        (x < psf.size // 2)
        | (y < psf.size // 2)
        | (x > nx - 1 - psf.size // 2)
        | (y > ny - 1 - psf.size // 2)
    )
    sources = Table(
        {
            "x": x,
            "y": y,
            "xErr": pos_err,
            "yErr": pos_err,
            "psfFlux": np.asarray(phot["flux"]),
            "psfFluxErr": np.asarray(phot["fluxErr"]),
            "psfChi2": np.asarray(phot["chi2"]),
            "apFlux": ap_flux,
            "apFluxErr": ap_err,
            "ixx": np.asarray(objs["x2"]),
            "iyy": np.asarray(objs["y2"]),
            "ixy": np.asarray(objs["xy"]),
            "sky": background[iy, ix],
            "snr": snr,
            "peak": np.asarray(objs["peak"]),
            "psfCandidate": np.isin(np.arange(len(objs)), stars),
            "flag_saturated": footprint_has(plane_bits("SAT")),
            "flag_cr": footprint_has(plane_bits("CR")),
            "flag_bad": footprint_has(plane_bits("BAD")),
            "flag_edge": edge | footprint_has(plane_bits("EDGE")),
        }
    )
    out = exposure.copy()
    out.data = sub
    if illum is not None:
        out.variance = variance
    out.mask = mask | np.where(seg > 0, np.int32(1 << MASK_PLANES["DETECTED"]), np.int32(0))
    out.meta["PSF_FWHM"] = (psf.fwhm, "PSF FWHM in pixels (pixelized model)")
    out.meta["PSF_NSTR"] = (psf.n_stars, "stars in the PSF model")
    out.meta["BGMEAN"] = (float(np.median(background)), "median background subtracted")
    out.meta["ILLUMBOX"] = (
        config.illumination_box if illum is not None else 0,
        "sky-flat correction mesh (px; 0: none)",
    )
    out.meta["ILLUMRMS"] = (
        float(np.std(illum[::4, ::4])) if illum is not None else 0.0,
        "rms of the sky-flat correction divided out",
    )
    return Characterization(exposure=out, background=background, psf=psf, sources=sources)
