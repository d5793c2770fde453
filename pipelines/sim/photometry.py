"""Photometric system of the simulated camera: AB fluxes in nJy → electrons, sky per band.

Conventions used across the simulator and its truth tables:

* fluxes are AB, in nJy, above the atmosphere: ``mag = 31.4 − 2.5 log10(flux_nJy)``;
* ``ZERO_POINT[band]`` is the AB magnitude that yields 1 e⁻/s at airmass 0 and clear sky
  (values close to Rubin's 8.4 m system);
* the electrons a source delivers in one exposure are
  ``flux × 10^(0.4 (zp − 31.4)) × t × 10^(−0.4 (k X + cloud))`` with ``k`` the extinction per
  airmass and ``cloud`` the visit's transparency loss (0–0.3 mag). These *expected
  electrons* are the ``counts`` column of the per-visit truth, before the flat field.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DARK_SKY",
    "EXTINCTION",
    "LAMBDA_NM",
    "ZERO_POINT",
    "electrons_per_njy",
    "flux_to_mag",
    "mag_to_flux",
    "sky_electrons_per_pixel",
]

ZERO_POINT = {"u": 26.52, "g": 28.51, "r": 28.36, "i": 28.17, "z": 27.78, "y": 26.82}
"""AB magnitude giving 1 e⁻/s above the atmosphere."""

EXTINCTION = {"u": 0.47, "g": 0.21, "r": 0.13, "i": 0.10, "z": 0.07, "y": 0.18}
"""Atmospheric extinction, mag per airmass."""

DARK_SKY = {"u": 22.9, "g": 22.3, "r": 21.2, "i": 20.5, "z": 19.6, "y": 18.6}
"""Dark-time zenith sky brightness, AB mag/arcsec²."""

MOON_BRIGHTENING = {"u": 2.6, "g": 2.1, "r": 1.3, "i": 0.9, "z": 0.5, "y": 0.3}
"""Sky brightening (mag) at full moon; scaled by the illuminated fraction."""

LAMBDA_NM = {"u": 368.0, "g": 480.0, "r": 622.0, "i": 754.0, "z": 869.0, "y": 971.0}


def mag_to_flux(mag: ArrayLike) -> NDArray[np.float64]:
    """AB magnitude → flux in nJy."""
    return np.asarray(10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - 31.4)))


def flux_to_mag(flux: ArrayLike) -> NDArray[np.float64]:
    """Flux in nJy → AB magnitude (NaN for non-positive fluxes)."""
    f = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, 31.4 - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def electrons_per_njy(band: str, exposure_time: float, airmass: float, cloud: float) -> float:
    """Expected photo-electrons per nJy of AB flux for one exposure (before the flat)."""
    return float(
        10.0 ** (0.4 * (ZERO_POINT[band] - 31.4))
        * exposure_time
        * 10.0 ** (-0.4 * (EXTINCTION[band] * airmass + cloud))
    )


def sky_mag(band: str, airmass: float, moon_illumination: float) -> float:
    """Sky surface brightness (mag/arcsec²): dark sky, brighter with airmass and moonlight.

    The moon term is a plain interpolation in the illuminated fraction (no moon–field
    geometry): good enough to make bright time cost depth in the blue bands.
    """
    moon = -2.5 * np.log10(1.0 + (10.0 ** (0.4 * MOON_BRIGHTENING[band]) - 1.0) * moon_illumination**1.5)
    return float(DARK_SKY[band] - 0.25 * (airmass - 1.0) + moon)


def sky_electrons_per_pixel(
    band: str, sky_mag_arcsec2: float, exposure_time: float, pixel_scale: float
) -> float:
    """Sky electrons collected per pixel in one exposure (sky brightness is measured at the ground)."""
    return float(10.0 ** (0.4 * (ZERO_POINT[band] - sky_mag_arcsec2)) * pixel_scale**2 * exposure_time)
