"""Background, detection and measurement primitives shared by the direct and difference images.

All functions take plain arrays (image, variance, boolean bad-pixel mask) so the same code
measures a visit image, a difference image or a coadd. Detection uses ``sep`` (SExtractor's
algorithms as a library; ~2 s for 12k sources on 4k² here) with a matched filter built from
the PSF model, so the threshold is a PSF signal-to-noise.
"""

from __future__ import annotations

import numpy as np
import sep
from astropy.table import Table

from pachon.pipelines.prompt.psf import PsfModel

__all__ = [
    "aperture_photometry",
    "detect",
    "estimate_background",
    "estimate_illumination",
    "psf_aperture_ratio",
    "psf_fit_aperture",
    "psf_fit_radius",
    "psf_photometry",
    "psf_photometry_at_pixels",
]

sep.set_extract_pixstack(5_000_000)
sep.set_sub_object_limit(4096)


def estimate_background(
    image: np.ndarray, bad: np.ndarray, *, box: int = 128, filter_size: int = 3
) -> np.ndarray:
    """A smooth sky model (sep's SExtractor mesh background) with bad pixels excluded."""
    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data, mask=bad, bw=box, bh=box, fw=filter_size, fh=filter_size)
    return np.asarray(bkg.back(), dtype=np.float32)


def _poly_terms(order: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]


def _poly_surface(coeffs: np.ndarray, order: int, shape: tuple[int, int]) -> np.ndarray:
    """``Σ c_ij u^i v^j`` on every pixel of ``shape`` (u, v: column and row scaled to [−1, 1]), float32.

    As one (ny × J) @ (J × nx) product of powers of v and u-polynomials: a 4k² surface in ~30 ms,
    where summing full-frame term images cost a second.
    """
    ny, nx = shape
    u = 2.0 * np.arange(nx) / max(nx - 1, 1) - 1.0
    v = 2.0 * np.arange(ny) / max(ny - 1, 1) - 1.0
    rows = np.zeros((order + 1, nx))
    for c, (i, j) in zip(coeffs, _poly_terms(order), strict=True):
        rows[j] += c * u**i
    powers = np.column_stack([v**j for j in range(order + 1)])
    return np.asarray(powers.astype(np.float32) @ rows.astype(np.float32))


def estimate_illumination(
    image: np.ndarray,
    bad: np.ndarray,
    variance: np.ndarray,
    *,
    box: int = 64,
    order: int = 1,
    max_noise: float = 2e-3,
    clip: float = 0.05,
) -> np.ndarray | None:
    """The flat field's error, measured on the night sky: a multiplicative map to divide the image by.

    Why: the flat the pipeline is given is imperfect (the simulator's ``pipeline_flat`` carries a
    0.5 % rms error on scales of 400–2000 px, as dome flats do), and flat-fielding with it leaves the
    sky × that error on the image. Measured on ``tiny`` before this step: a sky pattern of 0.15 σ per
    pixel rms that a 128-px background mesh does not follow, which made PSF fluxes at empty positions
    scatter 1.47× their photon noise (the coadds' depth 0.5–1.1 mag short of truth), and star fluxes
    carry the same error (15 mmag rms beyond photon noise on S/N > 50 stars, which the per-detector
    cubic star flat of the ubercal cannot follow). The dark sky over one detector is a plane to far
    better than 0.1 %, so a fine background mesh (``box`` px; sep's clipped mode, bad pixels
    excluded) divided by a polynomial of ``order`` fitted to it *is* the flat's error, as in the
    sky-flat (illumination) corrections of survey pipelines. Dividing the image (and variance by its
    square) by the map flattens the sky and corrects the sources' fluxes together.

    Returns the map normalised to median 1 over good pixels, or ``None`` when the sky is too faint for
    the map to be better than ``max_noise`` (relative noise of one mesh, ≈ 1.25 σ_pix / (box · sky));
    deviations beyond ``±clip`` are clipped (a mesh dominated by a bright star's halo, not the flat).
    """
    data = np.asarray(image, dtype=np.float32)
    good = ~bad & np.isfinite(data)
    if good.sum() < 0.25 * data.size or min(data.shape) < 2 * box:
        return None
    fine = estimate_background(data, ~good, box=box, filter_size=1)
    ny, nx = data.shape
    step = max(1, box // 4)
    sub = fine[::step, ::step]
    v = (2.0 * np.arange(0, ny, step) / max(ny - 1, 1) - 1.0)[:, None] * np.ones((1, sub.shape[1]))
    u = (2.0 * np.arange(0, nx, step) / max(nx - 1, 1) - 1.0)[None, :] * np.ones((sub.shape[0], 1))
    design = np.column_stack([(u**i * v**j).ravel() for i, j in _poly_terms(order)])
    coeffs, *_ = np.linalg.lstsq(design, sub.ravel().astype(np.float64), rcond=None)
    sky = _poly_surface(coeffs, order, (ny, nx))
    level = float(np.median(sky))
    sigma = float(np.sqrt(np.median(np.asarray(variance, np.float64)[::4, ::4][good[::4, ::4]])))
    if not (level > 0 and np.isfinite(sigma)) or 1.25 * sigma / (box * level) > max_noise or sky.min() <= 0:
        return None
    illum = np.divide(fine, sky, out=fine)
    np.clip(illum, 1.0 - clip, 1.0 + clip, out=illum)
    illum /= np.float32(np.median(illum[::4, ::4][good[::4, ::4]]))
    return illum


def _filter_kernel(psf: PsfModel) -> np.ndarray:
    """A compact matched-filter kernel from the PSF (the central ±2σ, at least 3×3)."""
    img = psf.image()
    c = img.shape[0] // 2
    half = int(min(c, 3, max(1, np.ceil(1.5 * psf.sigma))))  # ≤ 7×7: sep's filter cost grows with its area
    return np.ascontiguousarray(img[c - half : c + half + 1, c - half : c + half + 1], dtype=np.float32)


def detect(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    *,
    threshold: float = 5.0,
    min_area: int = 5,
    deblend: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect sources above ``threshold`` matched-filter sigma; returns (sep objects, segmentation map)."""
    data = np.ascontiguousarray(np.where(bad, 0.0, image), dtype=np.float32)
    var = np.ascontiguousarray(
        np.where(bad | ~np.isfinite(variance) | (variance <= 0), 1e30, variance), dtype=np.float32
    )
    kernel = _filter_kernel(psf)
    # sep's "matched" mode with a variance map costs 10× its "conv" mode; for a smooth variance the
    # two agree once the threshold is scaled by the filter's noise gain √Σk² / Σk
    gain = float(np.sqrt((kernel**2).sum()) / kernel.sum())
    objs, seg = sep.extract(
        data,
        threshold * gain,
        var=var,
        mask=bad,
        minarea=min_area,
        filter_kernel=kernel,
        filter_type="conv",
        deblend_cont=0.005 if deblend else 1.0,
        segmentation_map=True,
    )
    return objs, seg


def psf_fit_radius(psf: PsfModel) -> float:
    """The default radius of a PSF fit (:func:`psf_photometry`): 2 FWHM, at least 3 px."""
    return max(2.0 * psf.fwhm, 3.0)


def psf_fit_aperture(psf: PsfModel, fit_radius: float | None = None) -> np.ndarray:
    """The pixels of a PSF stamp a fit uses: within ``fit_radius`` (default :func:`psf_fit_radius`)."""
    half = psf.size // 2
    yy, xx = np.mgrid[: psf.size, : psf.size] - half
    radius = fit_radius or psf_fit_radius(psf)
    return np.asarray((xx**2 + yy**2) <= radius**2)


def psf_photometry(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    x: np.ndarray,
    y: np.ndarray,
    *,
    fit_radius: float | None = None,
    pixel_weights: bool = True,
) -> Table:
    """Linear PSF-flux fit at fixed positions (forced photometry when the positions come from elsewhere).

    flux = Σ P·D/V / Σ P²/V and σ² = 1 / Σ P²/V over unmasked pixels within ``fit_radius``
    (default 2·FWHM) of the position; also returns the reduced χ² of the fit and the fraction of
    the PSF's weight that fell on masked pixels (large values mean the flux is extrapolated).
    ``pixel_weights=False`` fits with uniform weights (flux = Σ P·D / Σ P², σ² = Σ P²·V / (Σ P²)²),
    as Rubin's ``PsfFlux`` does: a variance plane that holds the source's own Poisson noise
    down-weights a bright star's core, so any PSF-model error biases bright and faint stars
    differently (measured: bright stars 50 mmag too faint on ``small``).
    """
    n = len(x)
    flux = np.full(n, np.nan)
    err = np.full(n, np.nan)
    chi2 = np.full(n, np.nan)
    masked_frac = np.ones(n)
    size = psf.size
    half = size // 2
    ny, nx = image.shape
    aperture = psf_fit_aperture(psf, fit_radius)
    for i in range(n):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        ix, iy = round(x[i]), round(y[i])
        x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
        if x1 <= x0 or y1 <= y0:
            continue
        model = psf.image(x[i], y[i], dx=x[i] - ix, dy=y[i] - iy)
        sub = (slice(y0 - iy + half, y1 - iy + half), slice(x0 - ix + half, x1 - ix + half))
        p = model[sub]
        ap = aperture[sub]
        d = image[y0:y1, x0:x1]
        v = variance[y0:y1, x0:x1]
        ok = ap & ~bad[y0:y1, x0:x1] & np.isfinite(d) & (v > 0)
        total = (model * aperture).sum()
        masked_frac[i] = 1.0 - (p * ok).sum() / total if total > 0 else 1.0
        if ok.sum() < 3:
            continue
        if pixel_weights:
            w = p[ok] ** 2 / v[ok]
            denom = w.sum()
            if denom <= 0:
                continue
            f = (p[ok] * d[ok] / v[ok]).sum() / denom
            flux[i] = f
            err[i] = 1.0 / np.sqrt(denom)
        else:
            pp = (p[ok] ** 2).sum()
            if pp <= 0:
                continue
            f = (p[ok] * d[ok]).sum() / pp
            flux[i] = f
            err[i] = np.sqrt((p[ok] ** 2 * v[ok]).sum()) / pp
        chi2[i] = ((d[ok] - f * p[ok]) ** 2 / v[ok]).sum() / max(ok.sum() - 1, 1)
    return Table({"flux": flux, "fluxErr": err, "chi2": chi2, "maskedFraction": masked_frac})


def psf_photometry_at_pixels(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    ix: np.ndarray,
    iy: np.ndarray,
    *,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`psf_photometry` (flux, error, reduced χ²) at whole pixels, with the default fit radius.

    The same fit, vectorised over stamps: positions are whole pixels at least half a PSF stamp from the
    edges, so no sub-pixel shift and no clipped stamp; the PSF's linear spatial terms are evaluated per
    position. Measured on a 4k image: 32,000 fits in 0.4 s instead of 1.1 s one by one.
    """
    size = psf.size
    half = size // 2
    aperture = psf_fit_aperture(psf).ravel()
    windows = {
        name: np.lib.stride_tricks.sliding_window_view(a, (size, size))
        for name, a in (("d", image), ("v", variance), ("b", bad))
    }
    n = len(ix)
    flux, err, chi2 = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        r, c = iy[sl] - half, ix[sl] - half
        d = windows["d"][r, c].reshape(len(r), -1).astype(np.float64)
        v = windows["v"][r, c].reshape(len(r), -1).astype(np.float64)
        ok = aperture[None, :] & ~windows["b"][r, c].reshape(len(r), -1) & np.isfinite(d) & (v > 0)
        model = psf.stamps(ix[sl], iy[sl]).reshape(len(r), -1)
        inv_v = np.where(ok, 1.0 / np.where(ok, v, 1.0), 0.0)
        d = np.where(ok, d, 0.0)
        denom = (model**2 * inv_v).sum(axis=1)
        fit = (ok.sum(axis=1) >= 3) & (denom > 0)
        f = np.where(fit, (model * d * inv_v).sum(axis=1) / np.where(fit, denom, 1.0), np.nan)
        flux[sl] = f
        err[sl] = np.where(fit, 1.0 / np.sqrt(np.where(fit, denom, 1.0)), np.nan)
        resid = ((d - np.nan_to_num(f)[:, None] * model) ** 2 * inv_v).sum(axis=1)
        chi2[sl] = np.where(fit, resid / np.maximum(ok.sum(axis=1) - 1, 1), np.nan)
    return flux, err, chi2


def aperture_photometry(
    image: np.ndarray, variance: np.ndarray, bad: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Circular-aperture flux, error and sep flags (masked pixels excluded; sep flag bit 0x10 if any)."""
    data = np.ascontiguousarray(image, dtype=np.float32)
    var = np.ascontiguousarray(np.where(np.isfinite(variance), variance, 0.0), dtype=np.float32)
    if len(x) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int16)
    flux, err, flag = sep.sum_circle(
        data, np.asarray(x, float), np.asarray(y, float), radius, var=var, mask=bad, subpix=5
    )
    return np.asarray(flux), np.asarray(err), np.asarray(flag)


def psf_aperture_ratio(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    psf: PsfModel,
    x: np.ndarray,
    y: np.ndarray,
    radius: float,
) -> tuple[np.ndarray, np.ndarray]:
    """PSF flux over the flux in a ``radius`` aperture at each (x, y), and the PSF flux's S/N.

    The ratio is the same for every point source and lower for extended ones, so divided by its
    value on the image's stars it calls sources stars or galaxies (NaN where the aperture flux is
    not positive).
    """
    phot = psf_photometry(image, variance, bad, psf, x, y)
    pf = np.asarray(phot["flux"])
    af = aperture_photometry(image, variance, bad, x, y, radius)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(af > 0, pf / af, np.nan), pf / np.asarray(phot["fluxErr"])
