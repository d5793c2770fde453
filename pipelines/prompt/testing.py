"""Synthetic detector visits with known truth, for the prompt pipeline's unit tests and benchmarks.

The survey simulator (:mod:`pachon.pipelines.sim`) is the real input; this module makes single
detector images quickly, with the same kind of imperfections (overscan and bias drift, gain,
imperfect flat, bad columns, saturation with bleed trails, cosmic rays, a nominal WCS with a
pointing error and SIP distortion, a Gaia-like reference catalog with proper motions) so each
step can be scored against truth in isolation and at any size (1k² in tests, 4k² in benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from pachon.core.image import Exposure

__all__ = ["SyntheticField", "SyntheticVisit", "make_field", "make_visit", "moffat_stamp"]

NJY_AB_ZERO = 31.4  # AB magnitude of 1 nJy


@dataclass
class SyntheticField:
    """Stars on the sky at the reference epoch, and the detector geometry they are seen with."""

    ra0: float
    dec0: float
    nx: int
    ny: int
    pixel_scale: float
    stars: Table
    ref_epoch: float = 2016.0
    rng_seed: int = 0

    def refcat(self, *, mag_limit: float = 21.0, seed: int = 1) -> Table:
        """A Gaia-like reference catalog: bright stars, ref-epoch positions with ~0.2–1 mas errors."""
        rng = np.random.default_rng(seed)
        s = self.stars[self.stars["mag"] < mag_limit]
        n = len(s)
        pos_err = 0.1 + 0.4 * 10 ** (0.4 * (s["mag"] - 21))  # mas
        cosd = np.cos(np.radians(self.dec0))
        ra = s["ra"] + rng.normal(0, pos_err) / 3.6e6 / cosd
        dec = s["dec"] + rng.normal(0, pos_err) / 3.6e6
        flux = 10 ** (-0.4 * (s["mag"] - NJY_AB_ZERO))
        return Table(
            {
                "id": np.arange(n, dtype=np.int64),
                "coord_ra": ra,
                "coord_dec": dec,
                "coord_raErr": pos_err,
                "coord_decErr": pos_err,
                "pm_ra": s["pm_ra"] + rng.normal(0, 0.05, n),
                "pm_dec": s["pm_dec"] + rng.normal(0, 0.05, n),
                "parallax": s["parallax"],
                "epoch": np.full(n, 51544.5 + (self.ref_epoch - 2000.0) * 365.25),  # MJD, as the simulator
                "r_flux": flux * (1 + rng.normal(0, 0.003, n)),
                "r_fluxErr": flux * 0.003,
                "g_flux": flux * (1 + rng.normal(0, 0.003, n)),
                "g_fluxErr": flux * 0.003,
            }
        )


@dataclass
class SyntheticVisit:
    """One simulated raw detector image and everything true about it."""

    raw: Exposure
    flat: Exposure
    true_wcs: WCS
    truth: Table
    zero_point: float  # AB mag of 1 electron
    epoch: float
    seeing_px: float
    transients: Table = field(default_factory=Table)


def make_field(
    *,
    nx: int = 1024,
    ny: int = 1024,
    n_stars: int = 1500,
    seed: int = 0,
    ra0: float = 150.0,
    dec0: float = 2.0,
) -> SyntheticField:
    """Random stars (mag 14–23, proper motions of tens of mas/yr) covering a detector plus margin."""
    rng = np.random.default_rng(seed)
    scale = 0.2
    half_x = (nx / 2 + 60) * scale / 3600
    half_y = (ny / 2 + 60) * scale / 3600
    cosd = np.cos(np.radians(dec0))
    mag = 23.5 - rng.power(2.2, n_stars) * 9.0  # more faint than bright stars
    mag[:4] = rng.uniform(11.0, 12.5, 4)  # a few saturated stars with bleed trails
    stars = Table(
        {
            "id": np.arange(n_stars, dtype=np.int64),
            "ra": ra0 + rng.uniform(-half_x, half_x, n_stars) / cosd,
            "dec": dec0 + rng.uniform(-half_y, half_y, n_stars),
            "mag": mag,
            "pm_ra": rng.normal(0, 15, n_stars),
            "pm_dec": rng.normal(-5, 15, n_stars),
            "parallax": np.abs(rng.normal(0, 1.0, n_stars)),
        }
    )
    return SyntheticField(ra0=ra0, dec0=dec0, nx=nx, ny=ny, pixel_scale=scale, stars=stars, rng_seed=seed)


def _wcs(field_: SyntheticField, ra0: float, dec0: float, rot_deg: float, sip: bool) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip else ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [field_.nx / 2 + 0.5, field_.ny / 2 + 0.5]
    s = field_.pixel_scale / 3600
    c, sn = np.cos(np.radians(rot_deg)), np.sin(np.radians(rot_deg))
    w.wcs.cd = np.array([[-s * c, s * sn], [s * sn, s * c]])
    w.wcs.set()
    if sip:
        from astropy.wcs import Sip

        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        # ~1.5 px of cubic radial-like distortion at the detector corner (1k²)
        k = 1.5 / (field_.nx / 2) ** 3
        a[3, 0] = k
        a[1, 2] = k
        b[0, 3] = k
        b[2, 1] = k
        a[2, 0] = 2e-7
        b[0, 2] = -2e-7
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
    return w


def moffat_stamp(
    fwhm: float, size: int, dx: float, dy: float, beta: float = 3.0, e1: float = 0.0
) -> np.ndarray:
    """A unit-flux Moffat profile sampled at pixel centres, centred at (c+dx, c+dy)."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    c = size // 2
    yy, xx = np.mgrid[:size, :size]
    u = xx - c - dx
    v = yy - c - dy
    r2 = ((1 - e1) * u**2 + (1 + e1) * v**2) / alpha**2
    img = (1 + r2) ** (-beta)
    total = np.pi * alpha**2 / (beta - 1) / np.sqrt((1 - e1) * (1 + e1))
    return img / total


def make_visit(
    field_: SyntheticField,
    *,
    seed: int = 1,
    mjd: float = 61000.0,
    seeing_arcsec: float = 0.8,
    sky_e: float = 300.0,
    zero_point: float = 28.0,
    pointing_error_arcsec: float = 8.0,
    n_cosmic_rays: int = 30,
    transients: Table | None = None,
    variable_scale: dict[int, float] | None = None,
    overscan: int = 32,
    psf_gradient: float = 0.1,
) -> SyntheticVisit:
    """Render one raw detector visit of a synthetic field.

    ``transients`` (columns ``ra``, ``dec``, ``mag``) are added as point sources; ``variable_scale``
    multiplies the flux of the listed star ids (variable stars). ``psf_gradient`` is the fractional
    FWHM change from the left to the right edge (a spatially varying PSF, as from optics).
    """
    rng = np.random.default_rng(seed)
    nx, ny = field_.nx, field_.ny
    true_wcs = _wcs(field_, field_.ra0, field_.dec0, 0.05, sip=True)
    ang = rng.uniform(0, 2 * np.pi)
    cosd = np.cos(np.radians(field_.dec0))
    off = pointing_error_arcsec / 3600
    nominal = _wcs(
        field_,
        field_.ra0 + off * np.cos(ang) / cosd,
        field_.dec0 + off * np.sin(ang),
        0.05 + rng.normal(0, 0.003),
        sip=True,
    )
    epoch = float(Time(mjd, format="mjd", scale="tai").jyear)
    dt = epoch - field_.ref_epoch
    s = field_.stars
    ra = s["ra"] + s["pm_ra"] * dt / 3.6e6 / cosd
    dec = s["dec"] + s["pm_dec"] * dt / 3.6e6
    mags = np.array(s["mag"], dtype=float)
    if variable_scale:
        for sid, scale in variable_scale.items():
            mags[sid] -= 2.5 * np.log10(scale)
    kinds = ["star"] * len(s)
    ids = list(np.asarray(s["id"]))
    if transients is not None and len(transients):
        ra = np.concatenate([ra, transients["ra"]])
        dec = np.concatenate([dec, transients["dec"]])
        mags = np.concatenate([mags, transients["mag"]])
        kinds += ["transient"] * len(transients)
        ids += list(np.arange(len(transients)) + 10_000_000)
    x, y = true_wcs.all_world2pix(ra, dec, 0)
    flux = 10 ** (-0.4 * (mags - zero_point))
    seeing_px = seeing_arcsec / field_.pixel_scale
    img = np.full((ny, nx), sky_e, dtype=np.float64)
    size = 31
    half = size // 2
    inside = (x > -half) & (x < nx + half) & (y > -half) & (y < ny + half)
    for i in np.flatnonzero(inside):
        ix, iy = round(x[i]), round(y[i])
        fwhm = seeing_px * (1 + psf_gradient * (x[i] / nx - 0.5))
        stamp = flux[i] * moffat_stamp(fwhm, size, x[i] - ix, y[i] - iy, e1=0.03)
        x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
        y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
        if x1 <= x0 or y1 <= y0:
            continue
        img[y0:y1, x0:x1] += stamp[y0 - iy + half : y1 - iy + half, x0 - ix + half : x1 - ix + half]
    img = rng.poisson(img).astype(np.float64)
    # flat: vignetting and pixel response; the pipeline gets it with a 0.5 % error
    yy, xx = np.mgrid[:ny, :nx]
    r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (nx / 2) ** 2
    true_flat = (1 - 0.05 * r2) * (1 + rng.normal(0, 0.01, (ny, nx)))
    img *= true_flat
    # bad columns: one hot, one dead
    hot, dead = rng.integers(50, nx - 50, 2)
    img[:, hot] += 400.0
    img[:, dead] *= 0.05
    # cosmic rays: short tracks of a few pixels
    for _ in range(n_cosmic_rays):
        cx, cy = rng.integers(5, nx - 5), rng.integers(5, ny - 5)
        length = rng.integers(1, 6)
        theta = rng.uniform(0, np.pi)
        for t in range(length):
            px = int(cx + t * np.cos(theta))
            py = int(cy + t * np.sin(theta))
            img[py, px] += rng.uniform(2000, 20000)
    gain, read_noise, bias = 1.5, 6.0, 1000.0
    full_well = 90000.0  # electrons
    # saturation with bleed: excess charge spills up and down the column
    over = img > full_well
    if over.any():
        for col in np.unique(np.nonzero(over)[1]):
            column = img[:, col]
            excess = np.clip(column - full_well, 0, None).sum()
            column[column > full_well] = full_well
            rows = np.flatnonzero(column >= full_well)
            lo, hi = rows.min(), rows.max()
            while excess > 0 and (lo > 0 or hi < ny - 1):
                for r in (lo - 1, hi + 1):
                    if 0 <= r < ny and excess > 0:
                        add = min(full_well - column[r], excess)
                        column[r] += add
                        excess -= add
                lo, hi = max(lo - 1, 0), min(hi + 1, ny - 1)
            img[:, col] = column
    adu = img / gain + rng.normal(0, read_noise / gain, (ny, nx))
    row_drift = 3.0 * np.arange(ny) / ny
    raw = np.empty((ny, nx + overscan), dtype=np.float32)
    raw[:, :nx] = adu + bias + row_drift[:, None]
    raw[:, nx:] = bias + row_drift[:, None] + rng.normal(0, read_noise / gain, (ny, overscan))
    saturate = full_well / gain + bias
    raw = np.minimum(raw, saturate)
    header = fits.Header()
    header["GAIN"] = gain
    header["RDNOISE"] = read_noise
    header["SATURATE"] = saturate
    header["DATASEC"] = f"[1:{nx},1:{ny}]"
    header["BIASSEC"] = f"[{nx + 1}:{nx + overscan},1:{ny}]"
    header["SEEING"] = seeing_arcsec
    header["PIXSCALE"] = field_.pixel_scale
    header["MJD-OBS"] = mjd
    header["BAND"] = "r"
    raw_exp = Exposure(raw, unit="adu", wcs=nominal, meta=header)
    flat = Exposure((true_flat * (1 + rng.normal(0, 0.005, (ny, nx)))).astype(np.float32), unit="")
    truth = Table(
        {
            "id": np.asarray(ids, dtype=np.int64),
            "kind": kinds,
            "ra": ra,
            "dec": dec,
            "x": x,
            "y": y,
            "mag": mags,
            "flux_e": flux,
            "flux_nJy": 10 ** (-0.4 * (mags - NJY_AB_ZERO)),
        }
    )
    return SyntheticVisit(
        raw=raw_exp,
        flat=flat,
        true_wcs=true_wcs,
        truth=truth,
        zero_point=zero_point,
        epoch=epoch,
        seeing_px=seeing_px,
        transients=transients if transients is not None else Table(),
    )
