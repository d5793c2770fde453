"""Multi-band detection on the deep coadds of one patch, with SExtractor's multi-threshold deblending.

Detection image
    The per-band coadds (nJy, same patch grid) are combined pixel by pixel with inverse-variance
    weights, ``D = Σ_b I_b/V_b / Σ_b 1/V_b`` with ``V_D = 1/Σ_b 1/V_b`` — the flat-spectrum
    ("white") detection image of a χ²-like multi-band detection, which reaches fainter than any
    single band for ordinary colours and gives one set of **merged footprints** for all bands
    (no per-band footprint merging is needed afterwards). Each band's variance plane is first
    rescaled by its :func:`noise_factor` (warping and PSF matching correlate the coadd's pixel
    noise, so the plane under-states the noise of a PSF-filtered sum; Rubin's coadds rescale
    their variance for the same reason), so the 5σ threshold is a true 5σ.
Detection
    ``sep`` (SExtractor's algorithms) through prompt processing's
    :func:`~pachon.pipelines.prompt.measure.detect`: a matched filter with a Gaussian of the
    bands' mean PSF width, ``threshold`` σ, ``min_area`` pixels.
Deblending
    SExtractor's multi-threshold deblending (``sep``: 32 exponentially spaced sub-thresholds
    between the detection threshold and the peak; a branch becomes a separate child when it
    holds more than ``deblend_cont`` of the parent's flux). The parents are the same detection
    without deblending; each child records its parent, the parent's number of children and
    peaks. Child *fluxes* are not split here: measurement fits the children of one parent
    simultaneously (PSF fluxes) or masks the other children's segments (Kron, models), see
    :mod:`pachon.pipelines.drp.measure_coadd`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep
from astropy.table import Table
from scipy.signal import fftconvolve

from pachon.pipelines.prompt.measure import detect
from pachon.pipelines.prompt.psf import PsfModel, gaussian_psf

__all__ = ["Detections", "detect_patch", "detection_image", "noise_factor"]


def noise_factor(image: np.ndarray, variance: np.ndarray, good: np.ndarray, psf: np.ndarray) -> float:
    """Ratio of the true to the variance-plane noise of the PSF-filtered image (≥ 1 with correlated noise).

    The filtered signal-to-noise map ``(I ⊛ P) / √(V ⊛ P²)`` has unit spread for uncorrelated
    noise. Its spread is measured on the *negative* side (median − 15.87th percentile), which
    sources do not touch, over pixels whose whole filter footprint is covered.
    """
    if good.sum() < 1000:
        return 1.0
    img = np.where(good, image, 0.0).astype(np.float64)
    var = np.where(good, variance, 0.0).astype(np.float64)
    num = fftconvolve(img, psf, mode="same")
    den = fftconvolve(var, psf**2, mode="same")
    cov = fftconvolve(good.astype(np.float64), np.ones_like(psf), mode="same") > psf.size - 0.5
    ok = cov & (den > 0)
    if ok.sum() < 1000:
        return 1.0
    snr = num[ok] / np.sqrt(den[ok])
    med = float(np.median(snr))
    sigma = med - float(np.percentile(snr, 15.865))
    return float(np.clip(sigma, 0.5, 10.0)) if np.isfinite(sigma) else 1.0


def detection_image(
    images: list[np.ndarray], variances: list[np.ndarray], goods: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-variance weighted sum of bands: (image, variance, covered) on the common grid."""
    num = np.zeros(images[0].shape, np.float64)
    wsum = np.zeros(images[0].shape, np.float64)
    for img, var, good in zip(images, variances, goods, strict=True):
        ok = good & np.isfinite(img) & (var > 0)
        w = np.where(ok, 1.0 / np.where(ok, var, 1.0), 0.0)
        num += w * np.where(ok, img, 0.0)
        wsum += w
    covered = wsum > 0
    image = np.where(covered, num / np.where(covered, wsum, 1.0), 0.0).astype(np.float32)
    variance = np.where(covered, 1.0 / np.where(covered, wsum, 1.0), np.inf).astype(np.float32)
    return image, variance, covered


@dataclass
class Detections:
    """Deblended children of one patch and the maps measurement needs.

    ``table`` columns: ``id`` (1-based, the child's label in ``segmap``), ``x``, ``y`` (windowed
    centroids on the detection image, patch pixels), ``xErr``, ``yErr``, ``a``, ``b``, ``theta``
    (detection-image ellipse, pixels/radians), ``peak_x``, ``peak_y``, ``npix`` (footprint
    area), ``parent`` (label in ``parent_map``), ``nChild`` and ``nPeaks`` of that parent,
    ``snr`` (detection S/N of the PSF-filtered detection image at the centroid).
    """

    table: Table
    segmap: np.ndarray
    parent_map: np.ndarray
    psf_sigma: float


def detect_patch(
    image: np.ndarray,
    variance: np.ndarray,
    covered: np.ndarray,
    psf_sigma: float,
    *,
    threshold: float = 5.0,
    min_area: int = 5,
    deblend_cont: float = 0.005,
) -> Detections:
    """Detect and deblend on the detection image (see the module docstring)."""
    bad = ~covered
    psf: PsfModel = gaussian_psf(psf_sigma, size=2 * int(np.ceil(3 * psf_sigma)) + 1)
    var = np.where(covered, variance, np.inf)
    parents, parent_map = detect(image, var, bad, psf, threshold=threshold, min_area=min_area, deblend=False)
    objs, segmap = _deblended(image, var, bad, psf, threshold, min_area, deblend_cont)
    n = len(objs)
    x = np.asarray(objs["x"], float)
    y = np.asarray(objs["y"], float)
    if n:
        data = np.ascontiguousarray(np.where(bad, 0.0, image), dtype=np.float32)
        wx, wy, wflag = sep.winpos(data, x, y, psf_sigma, mask=bad)
        use = (wflag == 0) & (np.hypot(wx - x, wy - y) < 1.5)
        x = np.where(use, wx, x)
        y = np.where(use, wy, y)
    ny, nx = image.shape
    px = np.clip(np.asarray(objs["xpeak"], int), 0, nx - 1) if n else np.zeros(0, int)
    py = np.clip(np.asarray(objs["ypeak"], int), 0, ny - 1) if n else np.zeros(0, int)
    parent = parent_map[py, px].astype(np.int64) if n else np.zeros(0, np.int64)
    n_child = np.bincount(parent, minlength=len(parents) + 1)[parent] if n else np.zeros(0, np.int64)
    # S/N of a PSF-weighted flux at the centroid from the matched-filtered detection image
    kern = psf.image()
    num = fftconvolve(np.where(covered, image, 0.0), kern, mode="same")
    den = fftconvolve(np.where(covered, variance, 0.0), kern**2, mode="same")
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = num[iy, ix] / np.sqrt(den[iy, ix]) if n else np.zeros(0)
    pos_err = np.sqrt(2.0) * psf_sigma / np.maximum(np.abs(snr), 1e-3)
    table = Table(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "x": x,
            "y": y,
            "xErr": pos_err,
            "yErr": pos_err,
            "a": np.asarray(objs["a"], float),
            "b": np.asarray(objs["b"], float),
            "theta": np.asarray(objs["theta"], float),
            "peak_x": px,
            "peak_y": py,
            "npix": np.asarray(objs["npix"], np.int64),
            "parent": parent,
            "nChild": n_child.astype(np.int64),
            "nPeaks": n_child.astype(np.int64),
            "snr": np.asarray(snr, float),
            "sep_flag": np.asarray(objs["flag"], np.int64),
        }
    )
    return Detections(table=table, segmap=segmap, parent_map=parent_map, psf_sigma=psf_sigma)


def _deblended(
    image: np.ndarray,
    var: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    threshold: float,
    min_area: int,
    deblend_cont: float,
) -> tuple[np.ndarray, np.ndarray]:
    """sep detection with multi-threshold deblending at ``deblend_cont`` (prompt's ``detect`` fixes 0.005)."""
    if abs(deblend_cont - 0.005) < 1e-12:
        return detect(image, var, bad, psf, threshold=threshold, min_area=min_area, deblend=True)
    data = np.ascontiguousarray(np.where(bad, 0.0, image), dtype=np.float32)
    v = np.ascontiguousarray(np.where(bad | ~np.isfinite(var), 1e30, var), dtype=np.float32)
    img = psf.image()
    c = img.shape[0] // 2
    half = int(min(c, 3, max(1, np.ceil(1.5 * psf.sigma))))
    kernel = np.ascontiguousarray(img[c - half : c + half + 1, c - half : c + half + 1], dtype=np.float32)
    gain = float(np.sqrt((kernel**2).sum()) / kernel.sum())
    return sep.extract(  # type: ignore[no-any-return]
        data,
        threshold * gain,
        var=v,
        mask=bad,
        minarea=min_area,
        filter_kernel=kernel,
        filter_type="conv",
        deblend_nthresh=32,
        deblend_cont=deblend_cont,
        segmentation_map=True,
    )
