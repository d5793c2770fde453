"""Instrument signature removal (ISR): raw ADU with overscan → an electron image with mask and variance.

Steps, in the order the detector imprinted them in reverse: saturation is flagged on the raw
ADU (before anything changes the scale), the overscan (a row-wise polynomial, so bias drifts
along the readout are followed) and an optional bias frame are subtracted, ADU become
electrons through the gain, the flat divides out pixel response and vignetting, bad columns
are found from their column statistics (or taken from the flat's mask), a variance plane is
built from Poisson + read noise *before* flat-fielding scales it, and cosmic rays are found
by their sharpness (:func:`find_cosmic_rays`) and interpolated over. Every modified pixel keeps its mask
bit (``SAT``, ``BAD``, ``CR``, ``INTRP``, ``EDGE``), as in the LSST stack.
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits
from scipy import ndimage

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import IsrConfig

__all__ = ["IsrError", "parse_section", "run_isr"]

_SECTION = re.compile(r"\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]")


class IsrError(ValueError):
    """The raw cannot be processed (wrong shape, missing section, non-finite pixels)."""


def parse_section(text: str) -> tuple[slice, slice]:
    """A FITS/IRAF section ``[x1:x2,y1:y2]`` (1-based, inclusive) → numpy ``(rows, cols)`` slices."""
    match = _SECTION.fullmatch(str(text).strip())
    if match is None:
        raise IsrError(f"cannot parse image section {text!r}; expected the FITS form [x1:x2,y1:y2]")
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    return slice(y1 - 1, y2), slice(x1 - 1, x2)


def _sections(
    header: fits.Header, shape: tuple[int, int], config: IsrConfig
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    if "DATASEC" in header and "BIASSEC" in header:
        return parse_section(header["DATASEC"]), parse_section(header["BIASSEC"])
    ny, nx = shape
    n = config.overscan_columns
    if nx <= n:
        raise IsrError(
            f"raw is {nx} columns wide, not more than the {n}-column overscan; set DATASEC/BIASSEC"
        )
    return (slice(0, ny), slice(0, nx - n)), (slice(0, ny), slice(nx - n, nx))


def _overscan_model(overscan: np.ndarray, order: int) -> np.ndarray:
    """Row-wise robust overscan level, smoothed by a polynomial in the row number."""
    level = np.median(overscan, axis=1)
    rows = np.arange(level.size, dtype=float)
    if order <= 0 or level.size <= order + 1:
        return np.full(level.size, float(np.median(level)))
    coeffs = np.polynomial.polynomial.polyfit(rows, level, order)
    resid = level - np.polynomial.polynomial.polyval(rows, coeffs)
    mad = 1.4826 * np.median(np.abs(resid)) + 1e-6
    good = np.abs(resid) < 5 * mad
    coeffs = np.polynomial.polynomial.polyfit(rows[good], level[good], order)
    return np.asarray(np.polynomial.polynomial.polyval(rows, coeffs))


def _bad_columns(image: np.ndarray, sigma: float) -> np.ndarray:
    """Columns whose median departs from their neighbours' by ``sigma`` robust sigmas (hot or dead)."""
    col = np.median(image, axis=0)
    local = ndimage.median_filter(col, size=15, mode="nearest")
    resid = col - local
    # A column median of n pixels has scatter ≈ 1.25·σ_pix/√n; estimate σ_pix robustly from pixel rows.
    pix_sigma = (
        1.4826 * np.median(np.abs(np.diff(image[:, :: max(1, image.shape[1] // 64)], axis=0))) / np.sqrt(2)
    )
    col_sigma = max(1.25 * pix_sigma / np.sqrt(image.shape[0]), 1.4826 * np.median(np.abs(resid)), 1e-6)
    return np.abs(resid) > sigma * col_sigma


def _interpolate_bad(image: np.ndarray, bad: np.ndarray) -> None:
    """Replace bad pixels in place by linear interpolation along their row between good neighbours.

    Along rows because the defects of a CCD are columns (hot, dead, bleed-prone), so the nearest
    good pixels of a bad column lie in the same row. Each maximal run of bad pixels in a row is
    bridged from the good pixel before it to the one after it (the nearest good one alone at a row
    end), exactly what ``np.interp`` over the row's good pixels gives, computed for all runs at
    once instead of row by row (a bad column touches all 4096 rows of a detector). Rows with fewer
    than two good pixels are left as they are.
    """
    ny, nx = image.shape
    flat_bad = np.flatnonzero(bad)
    if flat_bad.size == 0:
        return
    rows = flat_bad // nx
    cols = flat_bad - rows * nx
    # runs: consecutive flat indices in the same row
    new_run = np.ones(flat_bad.size, dtype=bool)
    new_run[1:] = (np.diff(flat_bad) != 1) | (rows[1:] != rows[:-1])
    run_id = np.cumsum(new_run) - 1
    starts = flat_bad[new_run]
    ends = flat_bad[np.r_[np.flatnonzero(new_run)[1:] - 1, flat_bad.size - 1]]
    run_row = starts // nx
    left = starts - run_row * nx - 1  # column of the good pixel before the run (-1: none)
    right = ends - run_row * nx + 1  # column of the good pixel after it (nx: none)
    n_bad_in_row = np.bincount(rows, minlength=ny)
    usable = (nx - n_bad_in_row[run_row]) >= 2
    has_l = left >= 0
    has_r = right < nx
    vl = image[run_row, np.clip(left, 0, nx - 1)].astype(np.float64)
    vr = image[run_row, np.clip(right, 0, nx - 1)].astype(np.float64)
    # per bad pixel, from its run
    r = run_id
    both = (has_l & has_r)[r]
    slope = np.where(both, (vr[r] - vl[r]) / np.where(both, right[r] - left[r], 1), 0.0)
    value = np.where(has_l[r], vl[r] + slope * (cols - left[r]), vr[r])
    ok = usable[r]
    image[rows[ok], cols[ok]] = value[ok]


def _dilate(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_dilation(mask, iterations=1)`` (4-neighbour cross), by shifted ORs: 20× faster."""
    out = mask.copy()
    out[1:, :] |= mask[:-1, :]
    out[:-1, :] |= mask[1:, :]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def find_cosmic_rays(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    *,
    psf_fwhm: float,
    threshold: float = 5.0,
    grow: int = 1,
) -> np.ndarray:
    """Pixels hit by cosmic rays: significant and sharper than any PSF can make them.

    For a PSF of Gaussian width s, a pixel's neighbours along every axis hold at least
    exp(−1/2s²) of its flux (minus noise). A cosmic-ray track is only one or two pixels wide, so
    across the track the neighbour pair is near the background. We flag pixels above
    ``threshold`` σ whose *lowest* opposite-neighbour-pair mean is below 60 % of the PSF bound
    and whose excess over that pair is itself significant, then add adjacent pixels of the
    track above 2.5σ and grow by ``grow`` pixels. A vectorised variant of the LSST stack's
    ``findCosmicRays`` (astroscrappy's L.A.Cosmic took 3.5 s per 1k² here; this takes ~0.1 s).
    """
    ny, nx = image.shape
    coarse = ndimage.median_filter(image[::8, ::8], size=9, mode="nearest")
    zoom = (ny / coarse.shape[0], nx / coarse.shape[1])
    bg = ndimage.zoom(coarse, zoom, order=1)[:ny, :nx]
    # Every test below is local, so it is evaluated only at pixels above threshold·σ (a few per
    # cent of a detector: stars and tracks), not as ~30 full-image array passes.
    d_full = image - bg
    sigma_full = np.sqrt(np.maximum(variance, 1e-6))
    above = (d_full > threshold * sigma_full) & ~bad
    iy, ix = np.nonzero(above)
    s = max(psf_fwhm, 1.0) / 2.3548
    ratio = 0.6 * float(np.exp(-1.0 / (2 * s * s)))

    def d_at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # np.pad(mode="edge") semantics
        return d_full[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)]

    c = d_full[iy, ix]
    sig = sigma_full[iy, ix]
    low = np.minimum.reduce(
        [
            0.5 * (d_at(iy, ix - 1) + d_at(iy, ix + 1)),
            0.5 * (d_at(iy - 1, ix) + d_at(iy + 1, ix)),
            0.5 * (d_at(iy - 1, ix - 1) + d_at(iy + 1, ix + 1)),
            0.5 * (d_at(iy - 1, ix + 1) + d_at(iy + 1, ix - 1)),
        ]
    )
    is_cand = (low < ratio * c) & ((c - low) > threshold * sig)
    candidate = np.zeros(image.shape, dtype=bool)
    candidate[iy[is_cand], ix[is_cand]] = True
    if not is_cand.any():
        return candidate
    # the rest of each track: connected pixels above 2.5σ next to a candidate
    near = _dilate(candidate)
    ny_, nx_ = np.nonzero(near)
    track = candidate.copy()
    track[ny_, nx_] |= (d_full[ny_, nx_] > 2.5 * sigma_full[ny_, nx_]) & ~bad[ny_, nx_]
    lab, nlab = ndimage.label(track)
    if nlab:
        keep = np.zeros(nlab + 1, dtype=bool)
        keep[np.unique(lab[candidate])] = True
        keep[0] = False
        track = keep[lab]
    if not grow:
        return track
    for _ in range(grow):
        track = _dilate(track)
    return track & ~bad


def run_isr(
    raw: Exposure,
    *,
    flat: Exposure | None = None,
    bias: np.ndarray | None = None,
    config: IsrConfig | None = None,
) -> Exposure:
    """Remove the instrument signature from one raw detector image.

    Parameters
    ----------
    raw
        The raw Exposure in ADU, with overscan columns (``DATASEC``/``BIASSEC`` keywords, or the
        configured overscan width at the right edge) and ``GAIN``/``RDNOISE``/``SATURATE`` keywords.
    flat
        The flat field for this detector and filter (normalised here to median 1); its ``BAD`` mask
        bits, if any, mark known defects.
    bias
        An optional residual bias frame in ADU, already overscan-subtracted, same shape as the data section.

    Returns
    -------
    Exposure
        Image and variance in electrons, int32 mask, the raw's WCS and metadata (plus ``ISR_*`` keywords).

    Examples
    --------
    >>> from pachon.pipelines.prompt.testing import make_raw      # doctest: +SKIP
    >>> post = run_isr(make_raw().raw)                              # doctest: +SKIP
    """
    config = config or IsrConfig()
    header = raw.header_copy()
    data = np.asarray(raw.data, dtype=np.float32)
    if data.ndim != 2:
        raise IsrError(f"raw image has {data.ndim} dimensions; expected a 2-d detector image")
    (rows, cols), (brows, bcols) = _sections(header, data.shape, config)
    gain = float(header.get("GAIN", config.default_gain))
    read_noise = float(header.get("RDNOISE", config.default_read_noise))
    saturation = float(header.get("SATURATE", config.default_saturation))
    image_adu = data[rows, cols].astype(np.float32)
    overscan = data[brows, bcols]
    if image_adu.size == 0 or overscan.size == 0:
        raise IsrError(f"empty data or overscan section (DATASEC/BIASSEC) in a raw of shape {data.shape}")
    nonfinite = ~np.isfinite(image_adu)
    if nonfinite.mean() > 0.5:
        raise IsrError(f"{nonfinite.mean():.0%} of the raw pixels are NaN or infinite; the raw is corrupt")

    mask = np.zeros(image_adu.shape, dtype=np.int32)
    if raw.mask is not None and np.shape(raw.mask) == data.shape:
        # known defects shipped with the raw (the camera's defect list) stay BAD
        mask |= np.asarray(raw.mask)[rows, cols] & np.int32(1 << MASK_PLANES["BAD"])
    sat = image_adu >= saturation
    if sat.any():
        sat = _dilate(sat)
    mask[sat] |= 1 << MASK_PLANES["SAT"]
    mask[nonfinite] |= 1 << MASK_PLANES["NO_DATA"]
    image_adu[nonfinite] = 0.0

    level = _overscan_model(
        np.where(np.isfinite(overscan), overscan, np.nanmedian(overscan)), config.overscan_fit_order
    )
    image = image_adu - level[: image_adu.shape[0], None].astype(np.float32)
    if bias is not None:
        image -= bias.astype(np.float32)
    image *= gain  # electrons

    variance = np.maximum(image, 0.0) + read_noise**2
    if flat is not None:
        f = np.asarray(flat.data, dtype=np.float32)
        if f.shape != image.shape:
            raise IsrError(f"flat shape {f.shape} does not match the raw data section {image.shape}")
        # The level of a flat cancels in the photometric calibration, so a 1/16 subsample's median
        # (within ~1e-5 of the full one) sets both the dead-pixel cut and the normalisation; two
        # full-frame medians cost 0.3 s per detector.
        good = np.isfinite(f) & (f > 0.05 * np.nanmedian(f[::4, ::4]))
        f = f / np.median(f[::4, ::4][good[::4, ::4]])
        f = np.where(good, f, 1.0)
        image /= f
        variance /= f**2
        mask[~good] |= 1 << MASK_PLANES["BAD"]
        if flat.mask is not None and np.any(flat.mask):
            mask[(np.asarray(flat.mask) & (1 << MASK_PLANES["BAD"])) != 0] |= 1 << MASK_PLANES["BAD"]

    badcols = _bad_columns(image, config.bad_column_sigma)
    if badcols.any():
        mask[:, badcols] |= 1 << MASK_PLANES["BAD"]
    bad_pix = (mask & (1 << MASK_PLANES["BAD"])) != 0
    if bad_pix.any():
        mask[bad_pix] |= 1 << MASK_PLANES["INTRP"]
        _interpolate_bad(image, bad_pix)
        _interpolate_bad(variance, bad_pix)

    n_cr = 0
    if config.cosmic_rays:
        crmask = find_cosmic_rays(
            image,
            variance,
            (mask & ((1 << MASK_PLANES["SAT"]) | (1 << MASK_PLANES["BAD"]))) != 0,
            psf_fwhm=float(header.get("SEEING", 0.8)) / float(header.get("PIXSCALE", 0.2)),
            threshold=config.cr_sigclip,
        )
        n_cr = int(crmask.sum())
        if n_cr:
            mask[crmask] |= (1 << MASK_PLANES["CR"]) | (1 << MASK_PLANES["INTRP"])
            _interpolate_bad(image, crmask)
            _interpolate_bad(variance, crmask)

    edge = np.zeros_like(mask, dtype=bool)
    edge[:2, :] = edge[-2:, :] = edge[:, :2] = edge[:, -2:] = True
    mask[edge] |= 1 << MASK_PLANES["EDGE"]

    header["ISR_GAIN"] = (gain, "gain used (e-/ADU)")
    header["ISR_RN"] = (read_noise, "read noise used (e-)")
    header["ISR_OSCN"] = (float(np.median(level)), "median overscan level (ADU)")
    header["ISR_NCR"] = (n_cr, "pixels masked as cosmic rays")
    header["ISR_NBAD"] = (int(badcols.sum()), "bad columns found")
    header["ISR_NSAT"] = (int(sat.sum()), "saturated pixels")
    return _with_variance(image, mask, variance, raw, header, (rows.start or 0, cols.start or 0))


def _with_variance(
    image: np.ndarray,
    mask: np.ndarray,
    variance: np.ndarray,
    raw: Exposure,
    header: fits.Header,
    origin: tuple[int, int],
) -> Exposure:
    wcs = raw.wcs.deepcopy() if raw.wcs is not None else None
    if wcs is not None and any(origin):
        # The WCS describes the raw array; shift its reference pixel to the trimmed data section.
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([origin[1], origin[0]], dtype=float)
    exp = Exposure(image.astype(np.float32), unit="electron", mask=mask, wcs=wcs, meta=header)
    exp.variance = variance.astype(np.float32)
    return exp
