"""PSF-matched, inverse-variance weighted coaddition of warped calibrated images (the template maker).

Each input is warped onto the coadd grid, convolved with a Gaussian that brings its PSF to the
broadest input PSF (so the coadd has one well-defined PSF, which image differencing needs), and
combined with per-input weights that minimise the coadd's **point-source flux variance**. Pixels deviating by more than ``clip`` σ from the
per-pixel median of the inputs (a transient or an asteroid present in one early visit, a missed
cosmic ray) are rejected before averaging, when at least three inputs cover the pixel.

Weights and noise of a PSF-matched coadd (Gaussian PSFs of width σ_i, target σ_t, kernel
k_i² = σ_t² − σ_i², input pixel variance v_i before matching). A PSF fit with the target PSF on
the matched input measures the flux with variance ``v_i · 4πσ_t² · σ_t²/(2σ_t² − σ_i²)``: the
kernel correlates the noise, and a fit that assumes white noise is no longer optimal (the input's
better seeing is *not* recovered after matching, only partly kept). The coadd's PSF flux is the
weighted mean of those per-input fits, so its variance is smallest with weights
``w_i ∝ (2σ_t² − σ_i²) / (σ_t² v_i)`` — at most a factor 2 between the best and the worst
seeing. Weighting by the inverse variance *after* matching (``4πk_i²/v_i``, what this module did
before) instead gave inputs close to the worst seeing (k_i → 0) almost no weight, and cost
0.5–1 mag of depth on the ``tiny`` preset's coadds.

The variance plane is the per-pixel variance (right for one pixel), which under-states the noise
of any PSF-weighted sum because warping and matching correlate neighbouring pixels. The header
therefore also carries ``PSFNVAR``: the median over covered pixels of the *white-noise-equivalent*
variance ``Σ w_i² W_i / (Σ w_i)²`` with ``W_i = v_i σ_t²/(2σ_t² − σ_i²)`` — a PSF fit's flux
variance on the coadd is ``PSFNVAR / Σ P²`` (P the normalised coadd PSF), i.e. the noise-limited
point-source depth. ``NOISECF`` = PSFNVAR / median(variance plane) is the correlated-noise factor.
The warp's variance plane is interpolated linearly from the input's (not reduced by the image's
spline interpolation), so ``v_i`` is the input's own pixel variance, which is what a PSF fit's flux
variance is made of before matching. ``tests/unit/drp/test_drp_coadd_noise.py`` checks both the
weights and ``PSFNVAR`` against the scatter of PSF fits on simulated noise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.psf import PsfModel
from pachon.pipelines.prompt.warp import warp_exposure

__all__ = ["CoaddInput", "coadd", "matched_white_variance"]

_NO_DATA = 1 << MASK_PLANES["NO_DATA"]


@dataclass
class CoaddInput:
    """One calibrated exposure (nJy) and its PSF FWHM in pixels (same pixel scale as the coadd)."""

    exposure: Exposure
    fwhm: float
    psf: PsfModel | None = None


def matched_white_variance(pixel_variance: float, fwhm: float, target_fwhm: float) -> float:
    """White-noise-equivalent variance of an input of ``fwhm`` matched to ``target_fwhm`` (module docstring).

    A target-PSF fit on the matched input has flux variance ``this × 4πσ_t²``; its inverse is the
    input's coadd weight.
    """
    st2, si2 = (target_fwhm / 2.3548) ** 2, (fwhm / 2.3548) ** 2
    return float(pixel_variance) * st2 / max(2 * st2 - si2, st2)


def _bbox(exposure: Exposure, wcs: WCS, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The (y0, y1, x0, x1) box of ``shape`` that ``exposure`` covers (with a small margin), or None."""
    ny_s, nx_s = np.shape(exposure.data)
    edge = np.linspace(0, 1, 9)
    xs = np.concatenate([edge * (nx_s - 1), np.full(9, nx_s - 1.0), edge * (nx_s - 1), np.zeros(9)])
    ys = np.concatenate([np.zeros(9), edge * (ny_s - 1), np.full(9, ny_s - 1.0), edge * (ny_s - 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = exposure.wcs.all_pix2world(xs, ys, 0)
        tx, ty = wcs.all_world2pix(ra, dec, 0)
    ny, nx = shape
    x0, x1 = max(int(np.floor(tx.min())) - 4, 0), min(int(np.ceil(tx.max())) + 5, nx)
    y0, y1 = max(int(np.floor(ty.min())) - 4, 0), min(int(np.ceil(ty.max())) + 5, ny)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


def coadd(
    inputs: list[CoaddInput],
    wcs: WCS,
    shape: tuple[int, int],
    *,
    clip: float = 5.0,
    target_fwhm: float | None = None,
) -> Exposure:
    """Warp, PSF-match and optimally average ``inputs`` onto ``wcs``/``shape``.

    ``target_fwhm`` (pixels) overrides the matched PSF (default 1.02 × the broadest input's), e.g.
    to give two half-coadds the same PSF; it must not be narrower than any input's. Returns an Exposure in nJy whose header has ``PSF_FWHM`` (pixels) and ``NINPUTS``; pixels no input
    covers carry ``NO_DATA``.
    """
    if not inputs:
        raise ValueError("no inputs to coadd")
    target = max(i.fwhm for i in inputs) * 1.02
    if target_fwhm is not None:
        if target_fwhm < max(i.fwhm for i in inputs):
            raise ValueError(
                f"target_fwhm {target_fwhm:.2f} px is narrower than the broadest input PSF "
                f"({max(i.fwhm for i in inputs):.2f} px): PSF matching can only broaden"
            )
        target = float(target_fwhm)
    st = target / 2.3548
    num = np.zeros(shape, dtype=np.float64)
    den = np.zeros(shape, dtype=np.float64)
    var_num = np.zeros(shape, dtype=np.float64)
    white_num = np.zeros(shape, dtype=np.float64)
    stack, weights, valid = [], [], []
    white: list[float] = []
    boxes = []
    variances: list[np.ndarray] = []
    for item in inputs:
        box = _bbox(item.exposure, wcs, shape)
        if box is None:
            continue
        (y0, y1, x0, x1) = box
        sub_wcs = wcs.deepcopy()
        sub_wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0])
        sub_wcs.wcs.set()
        warped = warp_exposure(item.exposure, sub_wcs, (y1 - y0, x1 - x0))
        ok = (np.asarray(warped.mask) & _NO_DATA) == 0
        if not ok.any():
            continue
        img = np.asarray(warped.data, dtype=np.float32)
        var = np.asarray(warped.variance, dtype=np.float32)
        si = item.fwhm / 2.3548
        ks = float(np.sqrt(max(st**2 - si**2, 0.0)))
        # white-noise-equivalent variance of the matched input for a target-PSF fit (module docstring)
        white_i = matched_white_variance(float(np.median(var[ok])), item.fwhm, target)
        if ks > 0.05:
            img = ndimage.gaussian_filter(np.where(ok, img, 0.0), ks, mode="constant").astype(np.float32)
            # variance of a Gaussian-filtered image: filter with the squared kernel (a Gaussian of
            # width ks/√2, whose peak normalisation brings the 1/(4π ks²) factor)
            var = (
                ndimage.gaussian_filter(np.where(ok, var, 0.0), ks / np.sqrt(2), mode="constant")
                / (4 * np.pi * ks**2)
            ).astype(np.float32)
            ok = ndimage.binary_erosion(ok, iterations=int(np.ceil(3 * ks))) if ks > 0.3 else ok
        w = 1.0 / white_i
        white.append(white_i)
        stack.append(np.where(ok, img, np.nan))
        weights.append(w)
        valid.append(ok)
        variances.append(var)
        boxes.append(box)
        del warped
    if not stack:
        raise ValueError("no input overlaps the coadd area")
    if len(stack) >= 3:
        # leave-one-out outlier rejection: compare each input with the weighted mean of the others
        num_all = np.zeros(shape, dtype=np.float64)
        den_all = np.zeros(shape, dtype=np.float64)
        for k, w in enumerate(weights):
            y0, y1, x0, x1 = boxes[k]
            ok = valid[k]
            num_all[y0:y1, x0:x1][ok] += w * stack[k][ok]
            den_all[y0:y1, x0:x1][ok] += w
        for k, w in enumerate(weights):
            y0, y1, x0, x1 = boxes[k]
            ok = valid[k]
            n_o = num_all[y0:y1, x0:x1] - np.where(ok, w * np.nan_to_num(stack[k]), 0.0)
            d_o = den_all[y0:y1, x0:x1] - np.where(ok, w, 0.0)
            others = d_o > 0.5 * w  # at least one comparable other input
            with np.errstate(invalid="ignore", divide="ignore"):
                loo = n_o / d_o
                # per-pixel: the input's own variance (Poisson noise of bright stars included)
                # plus that of the others' mean
                sigma = np.sqrt(np.maximum(variances[k], 0.0) + 1.0 / np.where(others, d_o, np.inf))
                outlier = others & ok & (np.abs(np.nan_to_num(stack[k]) - loo) > clip * sigma)
            valid[k] = ok & ~outlier
    for k, w in enumerate(weights):
        y0, y1, x0, x1 = boxes[k]
        ok = valid[k]
        region = (slice(y0, y1), slice(x0, x1))
        num[region][ok] += w * stack[k][ok]
        den[region][ok] += w
        var_num[region][ok] += w * w * variances[k][ok]  # Σ w² σ² / (Σ w)²
        white_num[region][ok] += w * w * white[k]
    covered = den > 0
    image = np.zeros(shape, dtype=np.float32)
    variance = np.zeros(shape, dtype=np.float32)
    image[covered] = (num[covered] / den[covered]).astype(np.float32)
    variance[covered] = (var_num[covered] / den[covered] ** 2).astype(np.float32)
    psf_nvar = float(np.median(white_num[covered] / den[covered] ** 2)) if covered.any() else float("nan")
    pix_var = float(np.median(variance[covered])) if covered.any() else float("nan")
    mask = np.where(covered, 0, _NO_DATA).astype(np.int32)
    result = Exposure(image, unit="nJy", mask=mask, wcs=wcs.deepcopy(), meta=fits.Header())
    result.variance = variance
    result.meta["PSF_FWHM"] = (float(target), "coadd PSF FWHM after PSF matching (pixels)")
    result.meta["NINPUTS"] = (len(stack), "inputs combined")
    if np.isfinite(psf_nvar) and psf_nvar > 0:
        result.meta["PSFNVAR"] = (psf_nvar, "white-equivalent variance for PSF fits (nJy2)")
        if np.isfinite(pix_var) and pix_var > 0:
            result.meta["NOISECF"] = (psf_nvar / pix_var, "PSFNVAR / median pixel variance")
    return result
