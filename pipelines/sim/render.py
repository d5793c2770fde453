"""Render one detector-visit: the sky through atmosphere, optics and detector into a raw image.

The signal chain, in the order physics applies it (electrons unless noted):

1. every source's expected electrons ``counts = flux × electrons_per_njy`` (truth ``counts``),
   placed at its position through the *true* WCS plus the visit's atmospheric jitter;
   stars and supernovae as the local PSF, asteroids as PSFs along their trail, galaxies as
   Sérsic profiles convolved with the local PSF (numpy FFT on an oversampled stamp);
2. the sky (constant per visit, a 1 % gradient across the detector);
3. the true flat field (vignetting, per-detector QE, 0.5 % pixel response, dead columns);
4. Poisson noise; cosmic rays (tracks of 500–4000 e⁻/px);
5. saturation at the full well with charge bleeding along columns (charge conserved);
6. gain (e⁻/ADU), a bias level with a row-dependent drift shared by the overscan, Gaussian
   read noise, hot columns, and 16-bit digitisation (0…65535).

The raw carries the *nominal* WCS and the defects as ``BAD`` in its mask; everything else
(saturation, cosmic rays, the flat, the bias) is for the pipeline to find.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from numpy.typing import NDArray
from scipy import fft as sfft

from pachon.core.image import Exposure
from pachon.pipelines.sim.cadence import Visit
from pachon.pipelines.sim.config import BANDS, SimConfig
from pachon.pipelines.sim.optics import MOFFAT_BETA, DetectorGeometry, Jitter, PsfModel
from pachon.pipelines.sim.photometry import (
    EXTINCTION,
    ZERO_POINT,
    electrons_per_njy,
    flux_to_mag,
    sky_electrons_per_pixel,
)
from pachon.pipelines.sim.skymodel import SourceKind

__all__ = [
    "DetectorElectronics",
    "RenderResult",
    "detector_electronics",
    "pipeline_flat",
    "render_detector_visit",
    "true_flat",
]

Array = NDArray[np.float64]
FULL_WELL = 90_000.0  # e⁻
ADC_MAX = 65535.0
PIXEL_CM = 10e-4  # 10 µm pixels


@dataclass(frozen=True)
class DetectorElectronics:
    """Per-detector constants (fixed for the run): gain, noise, bias, defects."""

    gain: float  # e⁻/ADU
    read_noise: float  # e⁻
    bias: float  # ADU
    hot_column: int
    hot_start: int
    dead_column: int
    dead_start: int
    qe: float

    @property
    def saturate_adu(self) -> float:
        return min(ADC_MAX, self.bias + FULL_WELL / self.gain)


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(p) % (2**63) for p in parts]))


def detector_electronics(seed: int, detector: int, nx: int, ny: int) -> DetectorElectronics:
    rng = _seed(seed, 7, detector)
    return DetectorElectronics(
        gain=round(float(rng.uniform(1.5, 1.8)), 4),
        read_noise=round(float(rng.uniform(5.0, 7.0)), 3),
        bias=round(float(rng.uniform(900, 1100)), 2),
        hot_column=int(rng.integers(20, nx - 20)),
        hot_start=int(rng.integers(0, ny // 2)),
        dead_column=int(rng.integers(20, nx - 20)),
        dead_start=int(rng.integers(ny // 4, ny)),
        qe=float(rng.normal(1.0, 0.02)),
    )


def defect_mask(el: DetectorElectronics, nx: int, ny: int) -> NDArray[np.bool_]:
    bad = np.zeros((ny, nx), bool)
    bad[el.hot_start :, el.hot_column] = True
    bad[el.dead_start :, el.dead_column] = True
    return bad


@lru_cache(maxsize=16)
def true_flat(config_json: str, seed: int, detector: int, band: str) -> NDArray[np.float32]:
    """The detector's real response (mean ≈ its QE × vignetting): what the photons see."""
    config = SimConfig.model_validate_json(config_json)
    cam = config.camera
    geom = DetectorGeometry(cam, detector)
    el = detector_electronics(seed, detector, cam.nx, cam.ny)
    y, x = np.ogrid[0 : cam.ny, 0 : cam.nx]
    fx, fy = geom.focal_plane_arcmin(x.astype(np.float64), y.astype(np.float64))
    vignetting = 1.0 - 0.02 * (fx * fx + fy * fy) / 100.0
    rng = _seed(seed, 11, detector)
    prnu = 1.0 + rng.normal(0, 0.005, (cam.ny, cam.nx))
    chroma = 1.0 + 0.01 * (BANDS.index(band) - 2.5) / 2.5 * (fx / max(cam.field_width_arcmin, 1.0))
    flat = el.qe * vignetting * prnu * chroma
    flat[el.dead_start :, el.dead_column] *= 0.1
    return flat.astype(np.float32)


@lru_cache(maxsize=16)
def pipeline_flat(config_json: str, seed: int, detector: int, band: str) -> NDArray[np.float32]:
    """The flat the pipeline receives: the truth times a smooth error of ``flat_error`` rms + 0.1 % noise."""
    config = SimConfig.model_validate_json(config_json)
    cam = config.camera
    rng = _seed(seed, 13, detector, BANDS.index(band))
    yo, xo = np.ogrid[0 : cam.ny, 0 : cam.nx]
    y, x = yo.astype(np.float64), xo.astype(np.float64)
    err = np.zeros((cam.ny, cam.nx))
    for _ in range(4):
        kx, ky = rng.uniform(0.5, 2.5, 2) * 2 * math.pi / np.array([cam.nx, cam.ny])
        err += np.cos(kx * x + ky * y + rng.uniform(0, 2 * math.pi))
    err *= config.flat_error / max(float(err.std()), 1e-12)
    err -= err.mean()
    noise = rng.normal(0, 0.001, err.shape)
    return (true_flat(config_json, seed, detector, band) * (1.0 + err + noise)).astype(np.float32)


@dataclass
class RenderResult:
    """What one detector-visit produces."""

    raw: Exposure
    truth: Table
    info: dict[str, Any]


def _stamp_radius(counts: float, alpha: float, sky_sigma: float, fwhm_px: float) -> int:
    peak = counts * (MOFFAT_BETA - 1) / (math.pi * alpha * alpha)
    ratio = peak / (0.05 * sky_sigma)
    r = alpha * math.sqrt(max(ratio ** (1 / MOFFAT_BETA) - 1.0, 0.0))
    return int(np.clip(math.ceil(r), math.ceil(2.5 * fwhm_px), 250))


def _add_point(
    image: Array, psf: PsfModel, x: float, y: float, counts: float, fwhm: float, e1: float, e2: float, h: int
) -> None:
    ny, nx = image.shape
    ix, iy = round(x), round(y)
    x0, x1 = max(ix - h, 0), min(ix + h + 1, nx)
    y0, y1 = max(iy - h, 0), min(iy + h + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return
    gy, gx = np.mgrid[y0:y1, x0:x1]
    image[y0:y1, x0:x1] += counts * psf.render(gx - x, gy - y, fwhm, e1, e2)


def _convolve_same(image: Array, kernel: Array) -> Array:
    """Linear (zero-padded) convolution cropped to ``image``'s shape: scipy's ``fftconvolve(mode="same")``
    without its per-call checks, which dominate for the thousands of small galaxy stamps."""
    sy, sx = image.shape
    ky, kx = kernel.shape
    shape = (sfft.next_fast_len(sy + ky - 1, real=True), sfft.next_fast_len(sx + kx - 1, real=True))
    full = sfft.irfft2(sfft.rfft2(image, shape) * sfft.rfft2(kernel, shape), shape)
    y0, x0 = (ky - 1) // 2, (kx - 1) // 2
    return np.asarray(full[y0 : y0 + sy, x0 : x0 + sx])


def _sersic_bn(n: float) -> float:
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n * n)


def _add_galaxy(
    image: Array,
    psf: PsfModel,
    x: float,
    y: float,
    counts: float,
    fwhm: float,
    e1: float,
    e2: float,
    n: float,
    r_half_px: float,
    q: float,
    pa_deg: float,
    sky_angle: float,
    oversample: int = 3,
) -> None:
    """Add a Sérsic galaxy convolved with the local PSF (FFT on a stamp, oversampled if asked)."""
    ny, nx = image.shape
    fwhm_px = fwhm / psf.pixel_scale
    h = int(np.clip(math.ceil(4 * r_half_px + 2.5 * fwhm_px), 6, 100))
    ix, iy = round(x), round(y)
    if ix + h < 0 or iy + h < 0 or ix - h >= nx or iy - h >= ny:
        return
    os_ = oversample if r_half_px < 6 else 1
    side = (2 * h + 1) * os_
    sub = (np.arange(side) + 0.5) / os_ - (h + 0.5)
    dx = sub[None, :] + (ix - x)
    dy = sub[:, None] + (iy - y)
    # major axis at position angle (east of north); east = −x, north = +y for sky_angle 0
    theta = math.radians(pa_deg + sky_angle)
    ux, uy = -math.sin(theta), math.cos(theta)
    a_coord = dx * ux + dy * uy
    b_coord = -dx * uy + dy * ux
    rr = np.sqrt(a_coord**2 + (b_coord / q) ** 2)
    bn = _sersic_bn(n)
    prof = np.exp(-bn * (rr / r_half_px) ** (1.0 / n))
    prof[rr > 6 * r_half_px] = 0.0
    kh = math.ceil(2.5 * fwhm_px) * os_
    kgrid = (np.arange(2 * kh + 1) - kh) / os_
    kern = psf.render(
        kgrid[None, :] + 0 * kgrid[:, None], kgrid[:, None] + 0 * kgrid[None, :], fwhm, e1, e2, 1
    )
    conv = _convolve_same(prof, kern)
    if os_ > 1:
        conv = conv.reshape(2 * h + 1, os_, 2 * h + 1, os_).sum(axis=(1, 3))
    total = conv.sum()
    if total <= 0:
        return
    conv *= counts / total
    x0, y0 = ix - h, iy - h
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = min(2 * h + 1, nx - x0)
    sy1 = min(2 * h + 1, ny - y0)
    image[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1] += conv[sy0:sy1, sx0:sx1]


def _bleed(image: Array) -> None:
    """Move charge above the full well along its column, half up and half down (conserving it)."""
    ny = image.shape[0]
    cols = np.flatnonzero((image > FULL_WELL).any(axis=0))
    for c in cols:
        col = image[:, c]
        over = np.flatnonzero(col > FULL_WELL)
        # contiguous runs
        splits = np.flatnonzero(np.diff(over) > 1) + 1
        for run in np.split(over, splits):
            excess = float(np.sum(col[run] - FULL_WELL))
            col[run] = FULL_WELL
            for direction, start in ((1, run[-1] + 1), (-1, run[0] - 1)):
                budget = excess / 2
                k = start
                while budget > 0 and 0 <= k < ny:
                    add = min(FULL_WELL - col[k], budget)
                    if add > 0:
                        col[k] += add
                        budget -= add
                    k += direction
        image[:, c] = col


def _cosmic_rays(image: Array, rng: np.random.Generator, rate: float, exptime: float) -> int:
    ny, nx = image.shape
    area = nx * ny * PIXEL_CM**2
    n = int(rng.poisson(rate * area * exptime))
    for _ in range(n):
        length = float(rng.exponential(6.0))
        angle = rng.uniform(0, math.pi)
        x0, y0 = rng.uniform(0, nx), rng.uniform(0, ny)
        steps = max(1, int(length * 2))
        t = np.linspace(0, length, steps)
        xs = np.clip(np.round(x0 + t * math.cos(angle)).astype(int), 0, nx - 1)
        ys = np.clip(np.round(y0 + t * math.sin(angle)).astype(int), 0, ny - 1)
        pix = np.unique(ys * nx + xs)
        image.flat[pix] += rng.uniform(500, 4000, len(pix))
    return n


def render_detector_visit(
    config: SimConfig,
    seed: int,
    visit: Visit,
    detector: int,
    sources: Table,
) -> RenderResult:
    """Render one detector of one visit from the visit's source list (see the module docstring)."""
    cam = config.camera
    nx, ny = cam.nx, cam.ny
    geom = DetectorGeometry(cam, detector)
    el = detector_electronics(seed, detector, nx, ny)
    rng = _seed(seed, visit.exposure, detector)
    config_json = config.model_dump_json()

    psf = PsfModel(visit.seeing, visit.psf_e1, visit.psf_e2, cam.pixel_scale)
    jitter = Jitter.draw(visit.jitter_seed, config.jitter_mas)
    ra = np.asarray(sources["ra"], float)
    dec = np.asarray(sources["dec"], float)
    x, y = geom.world_to_pixel(ra, dec, visit.true_ra, visit.true_dec, visit.true_sky_angle)
    margin = 260
    near = (x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin)
    src = sources[near]
    x, y = x[near], y[near]
    fx, fy = geom.focal_plane_arcmin(x, y)
    jx, jy = jitter.displacement(fx, fy)  # mas along ξ (east) and η (north)
    x = x - jx / 1000.0 / cam.pixel_scale
    y = y + jy / 1000.0 / cam.pixel_scale
    fwhm, pe1, pe2 = psf.at(fx, fy)
    e_per_njy = electrons_per_njy(visit.band, visit.exposure_time, visit.airmass, visit.cloud)
    flux = np.asarray(src["flux"], float)
    counts = flux * e_per_njy
    sky_e = sky_electrons_per_pixel(visit.band, visit.sky_mag, visit.exposure_time, cam.pixel_scale)
    sky_sigma = math.sqrt(sky_e)

    image = np.zeros((ny, nx))
    kinds = np.asarray(src["type"])
    for k in range(len(src)):
        if counts[k] <= 0:
            continue
        kind = kinds[k]
        if kind == SourceKind.GALAXY:
            _add_galaxy(
                image, psf, x[k], y[k], counts[k], fwhm[k], pe1[k], pe2[k],
                float(src["sersic_n"][k]), float(src["r_half"][k]) / cam.pixel_scale,
                float(src["axis_ratio"][k]), float(src["position_angle"][k]), visit.true_sky_angle,
                3 if counts[k] > 30 * sky_sigma else 1,  # faint ones: sampling errors are lost in the noise
            )  # fmt: skip
            continue
        alpha = psf.alpha_px(fwhm[k])
        h = _stamp_radius(counts[k], alpha, sky_sigma, fwhm[k] / cam.pixel_scale)
        if kind == SourceKind.ASTEROID:
            xs, ys = geom.world_to_pixel(
                np.array([src["ra_start"][k], src["ra_end"][k]]),
                np.array([src["dec_start"][k], src["dec_end"][k]]),
                visit.true_ra, visit.true_dec, visit.true_sky_angle,
            )  # fmt: skip
            xs = xs + (x[k] - 0.5 * (xs[0] + xs[1]))
            ys = ys + (y[k] - 0.5 * (ys[0] + ys[1]))
            length = float(np.hypot(xs[1] - xs[0], ys[1] - ys[0]))
            steps = max(1, math.ceil(2 * length))
            for t in (np.arange(steps) + 0.5) / steps:
                _add_point(
                    image, psf, xs[0] + t * (xs[1] - xs[0]), ys[0] + t * (ys[1] - ys[0]),
                    counts[k] / steps, fwhm[k], pe1[k], pe2[k], h + math.ceil(length / 2),
                )  # fmt: skip
            continue
        _add_point(image, psf, x[k], y[k], counts[k], fwhm[k], pe1[k], pe2[k], h)

    yy, xx = np.ogrid[0:ny, 0:nx]
    gradient = 1.0 + 0.01 * ((xx - nx / 2) / nx * math.cos(visit.jitter_seed) + (yy - ny / 2) / ny)
    flat = true_flat(config_json, seed, detector, visit.band)
    expected = (image + sky_e * gradient) * flat
    electrons = rng.poisson(expected).astype(np.float64)
    n_cr = _cosmic_rays(electrons, rng, config.cosmic_ray_rate, visit.exposure_time)
    saturated_px = electrons > FULL_WELL
    _bleed(electrons)

    # electronics: gain, bias (row drift shared with the overscan), read noise, hot column
    rows = np.arange(ny)
    bias_rows = el.bias + 2.0 * np.sin(2 * math.pi * rows / ny + detector) + rng.normal(0, 0.3, ny)
    raw = np.empty((ny, nx + cam.overscan))
    raw[:, :nx] = electrons / el.gain
    raw[:, nx:] = 0.0
    raw += bias_rows[:, None]
    raw += rng.normal(0, el.read_noise / el.gain, raw.shape)
    raw[el.hot_start :, el.hot_column] += 600.0
    raw = np.clip(np.floor(raw), 0, ADC_MAX).astype(np.float32)

    mask = np.zeros(raw.shape, np.int32)
    mask[:, :nx][defect_mask(el, nx, ny)] = 1 << 0  # BAD

    nominal_wcs = geom.wcs(visit.ra, visit.dec, visit.sky_angle)
    true_wcs = geom.wcs(visit.true_ra, visit.true_dec, visit.true_sky_angle)
    header = raw_header(config, visit, detector, el)
    exposure = Exposure(raw, unit="adu", mask=mask, wcs=nominal_wcs, meta=header)

    on = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    ix = np.clip(np.round(x).astype(int), 0, nx - 1)
    iy = np.clip(np.round(y).astype(int), 0, ny - 1)
    sat_src = saturated_px[iy, ix]
    truth = Table(
        {
            "id": np.asarray(src["id"], np.int64)[on],
            "type": np.asarray(src["type"]).astype(str)[on],
            "ra": ra[near][on],
            "dec": dec[near][on],
            "x": x[on],
            "y": y[on],
            "flux": flux[on],
            "counts": counts[on],
            "mag": flux_to_mag(flux[on]),
            "psf_fwhm": fwhm[on],
            "is_saturated": sat_src[on],
        },
        meta={
            "description": "every source whose centre falls on this detector-visit: ra/dec astrometric at "
            "mid-exposure (deg, no jitter); x/y 0-based raw pixel where it was rendered (true WCS + "
            "jitter); flux nJy above the atmosphere in the visit band; counts = expected e- before the "
            "flat; psf_fwhm arcsec at that position",
            "exposure": visit.exposure,
            "detector": detector,
            "band": visit.band,
        },
    )
    sip_header = true_wcs.to_header(relax=True)
    info: dict[str, Any] = {
        "exposure": visit.exposure,
        "detector": detector,
        "band": visit.band,
        "true_wcs": {k: _plain(sip_header[k]) for k in sip_header},
        "nominal_wcs": {k: _plain(v) for k, v in nominal_wcs.to_header(relax=True).items()},
        "pointing_error_arcsec": config.pointing_error_arcsec,
        "psf": {
            "model": "Moffat",
            "beta": MOFFAT_BETA,
            "seeing": visit.seeing,
            "e1": visit.psf_e1,
            "e2": visit.psf_e2,
            "fwhm_variation": "seeing*(1+0.04*(theta/10')^2)",
            "e_gradient": "e1 += 0.03*fx/10', e2 += 0.03*fy/10'",
        },
        "sky_electrons": sky_e,
        "electrons_per_njy": e_per_njy,
        "cloud": visit.cloud,
        "gain": el.gain,
        "read_noise": el.read_noise,
        "bias": el.bias,
        "full_well": FULL_WELL,
        "cosmic_rays": n_cr,
        "jitter_mas_rms": config.jitter_mas,
        "jitter_modes": jitter.as_dict(),
        "defects": {
            "hot_column": el.hot_column,
            "hot_start_row": el.hot_start,
            "dead_column": el.dead_column,
            "dead_start_row": el.dead_start,
        },
    }
    return RenderResult(raw=exposure, truth=truth, info=info)


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


def raw_header(config: SimConfig, visit: Visit, detector: int, el: DetectorElectronics) -> fits.Header:
    """The raw's metadata: what the observatory and camera record (deterministic, no run timestamps)."""
    cam = config.camera
    h = fits.Header()
    t = Time(visit.mjd_start, format="mjd", scale="tai")
    h["TELESCOP"] = ("Pachon", "simulated survey telescope")
    h["INSTRUME"] = ("Pachon", "instrument name (Butler)")
    h["EXPOSURE"] = (visit.exposure, "= visit id = day_obs*1000 + seq_num")
    h["VISIT"] = (visit.exposure, "visit id")
    h["DAYOBS"] = (visit.day_obs, "observing night (UTC-12h date)")
    h["SEQNUM"] = (visit.seq_num, "sequence number in the night")
    h["DETECTOR"] = (detector, "detector id")
    h["DETNAME"] = (detector_name(config, detector), "detector name")
    h["MJD-OBS"] = (visit.mjd_start, "exposure start, MJD TAI")
    h["MJD-MID"] = (visit.mjd_mid, "mid-exposure, MJD TAI")
    h["DATE-OBS"] = (t.isot, "exposure start (TAI)")
    h["TIMESYS"] = "TAI"
    h["EXPTIME"] = (visit.exposure_time, "s")
    h["FILTER"] = (f"{visit.band}_sim", "physical filter")
    h["BAND"] = (visit.band, "abstract band")
    h["AIRMASS"] = (visit.airmass, "at mid-exposure")
    h["SEEING"] = (visit.seeing, "PSF FWHM at field centre, arcsec")
    h["RA"] = (visit.ra, "commanded boresight RA, deg")
    h["DEC"] = (visit.dec, "commanded boresight Dec, deg")
    h["ROTPA"] = (visit.sky_angle, "commanded sky rotation, deg")
    h["PTGERR"] = (config.pointing_error_arcsec, "max nominal-WCS error on chip, arcsec")
    h["MOONILL"] = (visit.moon_illumination, "moon illuminated fraction")
    h["ZPTNOM"] = (ZERO_POINT[visit.band], "AB mag giving 1 e-/s above atmosphere")
    h["EXTCOEF"] = (EXTINCTION[visit.band], "nominal extinction, mag/airmass")
    h["PIXSCALE"] = (cam.pixel_scale, "arcsec/pixel at the boresight")
    h["GAIN"] = (el.gain, "e-/ADU")
    h["RDNOISE"] = (el.read_noise, "read noise, e-")
    h["BIASLEV"] = (el.bias, "nominal bias, ADU (use the overscan)")
    h["SATURATE"] = (round(el.saturate_adu, 1), "ADU level of saturation")
    h["FULLWELL"] = (FULL_WELL, "e-")
    h["DATASEC"] = (f"[1:{cam.nx},1:{cam.ny}]", "imaging area (FITS 1-based)")
    h["BIASSEC"] = (f"[{cam.nx + 1}:{cam.nx + cam.overscan},1:{cam.ny}]", "serial overscan")
    h["SIMULATD"] = (True, "simulated by pachon.pipelines.sim")
    return h


def detector_name(config: SimConfig, detector: int) -> str:
    col, row = detector % config.camera.n_col, detector // config.camera.n_col
    return f"S{row}{col}"
