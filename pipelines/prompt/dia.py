"""DIA sources: detection on the difference image and the APDB DiaSource measurements.

Detection runs twice, on the difference and on its negative, with a PSF matched filter whose
threshold is a PSF signal-to-noise (``DiaConfig.threshold``, 5σ as in the SRD's transSNR).
Every candidate is measured with the Rubin DiaSource column names: PSF flux on the difference
(``psfFlux``), forced PSF flux on the science image (``scienceFlux``) and on the warped template
(``templateFlux``), aperture flux, windowed centroid with errors, adaptive-moment-like second
moments next to the PSF's, a dipole measurement (positive and negative lobes within the footprint:
``dipoleMeanFlux``, ``dipoleFluxDiff``, ``dipoleLength``, ``dipoleAngle``, ``isDipole``) and pixel
flags. The features a real/bogus classifier needs come along in extra columns prefixed ``rb_``.
"""

from __future__ import annotations

import numpy as np
import sep
from astropy.table import Table, vstack
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import DiaConfig
from pachon.pipelines.prompt.measure import aperture_photometry, detect, psf_photometry
from pachon.pipelines.prompt.psf import PsfModel

__all__ = ["RB_FEATURES", "detect_dia_sources"]

_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])

RB_FEATURES = (
    "rb_log_snr",
    "rb_chi2",
    "rb_dipole_ratio",
    "rb_size_ratio",
    "rb_log_sci_snr",
    "rb_flux_ratio",
    "rb_bright_neighbour",
    "rb_masked_fraction",
    "rb_flagged",
    "rb_peak_offset",
)
"""Feature columns of the real/bogus classifier, in order.

The sign of a DiaSource is deliberately not a feature: injected fakes are all positive, so the
classifier would learn "negative means bogus" and reject every fading variable or SN in the template.
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


def _measure(
    objs: np.ndarray,
    sign: int,
    difference: Exposure,
    science: Exposure,
    template: Exposure,
    psf: PsfModel,
    config: DiaConfig,
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
    ap, ap_err, _ = aperture_photometry(diff, var, bad, x, y, max(2.0 * psf.fwhm, 3.0))
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
            "dipoleLength": dip_len,
            "dipoleAngle": dip_ang,
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
            "rb_masked_fraction": np.asarray(phot["maskedFraction"]),
            "rb_peak_offset": np.hypot(x - np.asarray(objs["x"]), y - np.asarray(objs["y"])),
        }
    )
    return table


def psf_noise_factor(
    image: np.ndarray, variance: np.ndarray, bad: np.ndarray, psf: PsfModel, *, n: int = 600, seed: int = 0
) -> float:
    """Ratio of the true to the predicted scatter of PSF fluxes at random positions (≥ 1 when correlated).

    A difference image whose sharper input was convolved has spatially correlated noise: its variance
    plane is right pixel by pixel, but a PSF-weighted sum then varies more than the independent-pixel
    formula says. Forced PSF fluxes at random positions (transients are rare, so nearly all are sky)
    measure the factor directly; thresholds and flux errors are scaled by it.
    """
    rng = np.random.default_rng(seed)
    ny, nx = image.shape
    margin = psf.size
    # integer positions: the PSF needs no sub-pixel shift, which keeps this at a few ms
    x = rng.integers(margin, nx - margin, n).astype(float)
    y = rng.integers(margin, ny - margin, n).astype(float)
    ok = ~bad[y.astype(int), x.astype(int)]
    phot = psf_photometry(image, variance, bad, psf, x[ok], y[ok])
    pull = np.asarray(phot["flux"]) / np.asarray(phot["fluxErr"])
    pull = pull[np.isfinite(pull)]
    if pull.size < 50:
        return 1.0
    return float(max(1.0, 1.4826 * np.median(np.abs(pull - np.median(pull)))))


def detect_dia_sources(
    difference: Exposure,
    science: Exposure,
    template: Exposure,
    psf: PsfModel,
    *,
    direct_sources: Table | None = None,
    config: DiaConfig | None = None,
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

    Returns
    -------
    Table
        One row per DiaSource with APDB column names (no IDs yet) and the ``rb_*`` features.
    """
    config = config or DiaConfig()
    image = np.asarray(difference.data, dtype=np.float32)
    var = np.asarray(difference.variance, dtype=np.float32)
    bad = (np.asarray(difference.mask) & _UNUSABLE) != 0
    factor = psf_noise_factor(image, var, bad, psf)
    difference.meta["DIFNOISE"] = (factor, "PSF-flux noise / independent-pixel prediction")
    tables = []
    for sign in (1, -1):
        objs, _ = detect(
            sign * image,
            var,
            bad,
            psf,
            threshold=config.threshold * factor,
            min_area=config.min_area,
            deblend=False,
        )
        if len(objs):
            t = _measure(objs, sign, difference, science, template, psf, config)
            t["psfFluxErr"] = np.asarray(t["psfFluxErr"]) * factor
            t["apFluxErr"] = np.asarray(t["apFluxErr"]) * factor
            t["snr"] = (np.abs(np.asarray(t["psfFlux"])) / np.asarray(t["psfFluxErr"])).astype(np.float32)
            tables.append(t)
    if not tables:
        return _empty()
    table = vstack(tables, metadata_conflicts="silent")
    # a PSF-fit SNR below the threshold means the detection was a noise-shaped blob; keep at 0.8×
    table = table[np.isfinite(table["psfFlux"]) & (table["snr"] >= 0.8 * config.threshold)]
    _add_features(table, psf, direct_sources)
    return table


def _add_features(table: Table, psf: PsfModel, direct_sources: Table | None) -> None:
    n = len(table)
    snr = np.asarray(table["snr"], dtype=float)
    table["rb_log_snr"] = np.log10(np.maximum(snr, 1.0))
    table["rb_chi2"] = np.log10(
        np.clip(np.nan_to_num(np.asarray(table["psfChi2"], float), nan=100.0), 0.1, 1e4)
    )
    size = (
        (np.asarray(table["ixx"]) + np.asarray(table["iyy"]))
        / max(float(table["ixxPSF"][0] + table["iyyPSF"][0]), 1e-3)
        if n
        else np.zeros(0)
    )
    table["rb_size_ratio"] = np.clip(size, 0, 10)
    sci_snr = np.asarray(table["scienceFlux"]) / np.asarray(table["scienceFluxErr"])
    table["rb_log_sci_snr"] = np.sign(sci_snr) * np.log10(1 + np.abs(np.nan_to_num(sci_snr)))
    table["rb_flux_ratio"] = np.clip(
        np.nan_to_num(
            np.abs(np.asarray(table["psfFlux"])) / np.maximum(np.abs(np.asarray(table["scienceFlux"])), 1e-3)
        ),
        0,
        5,
    )
    bright = np.zeros(n)
    if direct_sources is not None and len(direct_sources) and n:
        dsnr = np.asarray(direct_sources["psfFlux"]) / np.asarray(direct_sources["psfFluxErr"])
        sel = np.isfinite(dsnr) & (dsnr > 50)
        if sel.any():
            tree = cKDTree(
                np.column_stack([np.asarray(direct_sources["x"])[sel], np.asarray(direct_sources["y"])[sel]])
            )
            dist, idx = tree.query(np.column_stack([table["x"], table["y"]]))
            # log SNR of the nearest bright star, fading with distance in units of the PSF FWHM
            bright = np.log10(dsnr[sel][idx]) * np.exp(-np.asarray(dist) / (1.5 * psf.fwhm))
    table["rb_bright_neighbour"] = bright
    table["rb_flagged"] = (
        np.asarray(table["pixelFlags_cr"], dtype=float)
        + np.asarray(table["pixelFlags_interpolated"], dtype=float)
        + np.asarray(table["pixelFlags_saturated"], dtype=float)
        + np.asarray(table["pixelFlags_nodata"], dtype=float)
    )


def _empty() -> Table:
    cols = ["x", "y", "ra", "dec", "psfFlux", "psfFluxErr", "snr", *RB_FEATURES]
    return Table({c: np.zeros(0) for c in cols})
