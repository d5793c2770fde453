"""DiaSource angles are bearings on the sky (APDB ``dipoleAngle``/``trailAngle``), not pixel-frame angles."""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS

from pachon.pipelines.prompt.dia import sky_bearing


def _wcs(rotation_deg: float, scale_deg: float = 0.2 / 3600) -> WCS:
    """North up and East left (the sky as seen) at rotation 0; rotated by ``rotation_deg`` East of North."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [500.0, 500.0]
    t = np.radians(rotation_deg)
    w.wcs.cd = scale_deg * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.wcs.set()
    return w


def test_bearings_follow_the_sky_not_the_pixels() -> None:
    x, y = np.full(4, 500.0), np.full(4, 500.0)
    pixel_angle = np.radians([90.0, 180.0, 0.0, 270.0])  # +y, −x, +x, −y
    straight = sky_bearing(_wcs(0.0), x, y, pixel_angle)
    wrapped = (straight - np.array([0.0, 90.0, 270.0, 180.0]) + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-4)  # N, E, W, S
    # the same pixel directions on a detector rotated 30° on the sky
    rotated = sky_bearing(_wcs(30.0), x, y, pixel_angle)
    np.testing.assert_allclose((rotated - straight + 180.0) % 360.0 - 180.0, 30.0, atol=1e-4)


def test_unknown_angles_stay_unknown() -> None:
    out = sky_bearing(_wcs(0.0), np.array([10.0, 20.0]), np.array([10.0, 20.0]), np.array([np.nan, 0.0]))
    assert np.isnan(out[0]) and np.isfinite(out[1])
