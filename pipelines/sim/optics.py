"""Optics of the simulated camera: focal-plane geometry, WCS with distortion, PSF, jitter.

Geometry. All detectors share one tangent plane centred on the boresight. A detector
pixel ``(x, y)`` (0-based, imaging area) has focal-plane offset
``u = x − (nx−1)/2 + ox``, ``v = y − (ny−1)/2 + oy`` pixels from the boresight, where
``(ox, oy)`` is the detector centre (:meth:`CameraConfig.detector_offset_px`).

Distortion. The optics add a radial cubic term: the ideal (undistorted) position is
``u′ = u (1 + κ (u² + v²))`` with ``κ = distortion / (3600/scale)²`` (``distortion`` is
the fractional scale change 1° from the axis). This is exactly a SIP polynomial with
``A_3_0 = A_1_2 = B_2_1 = B_0_3 = κ`` when CRPIX is the boresight, so each detector's
FITS WCS is a ``RA---TAN-SIP`` with CRPIX outside the chip for off-axis detectors; the
inverse (``AP``, ``BP``) is the series ``−κ r² + 3 κ² r⁴``, accurate to 10⁻³ px here.

Two WCSs per detector-visit: the *nominal* one (commanded pointing and rotation, what
the raw header carries) and the *true* one (actual pointing and rotation, in truth).
They differ by the pointing error the pipeline must solve for.

PSF. An elliptical Moffat profile (β = 3.5) whose FWHM grows across the field as
``seeing × (1 + 0.04 (θ/10′)²)`` and whose ellipticity has a per-visit constant part
plus a gradient of 0.03 per 10′, so PSF models must vary spatially.

Jitter. Atmospheric turbulence displaces each source by a few mas, coherently over
arcminutes: a sum of 12 random plane waves (wavelengths 2′–30′, log-uniform) scaled to
``jitter_mas`` rms per axis, drawn per visit (all detectors see the same field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS, Sip
from numpy.typing import NDArray

from pachon.pipelines.sim.config import CameraConfig

__all__ = [
    "MOFFAT_BETA",
    "DetectorGeometry",
    "Jitter",
    "PsfModel",
    "gnomonic",
    "inverse_gnomonic",
    "make_wcs",
]

MOFFAT_BETA = 3.5
Array = NDArray[np.float64]


def gnomonic(ra: Array, dec: Array, ra0: float, dec0: float) -> tuple[Array, Array]:
    """Tangent-plane coordinates (ξ, η) in degrees of (ra, dec) about (ra0, dec0)."""
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return np.degrees(xi), np.degrees(eta)


def inverse_gnomonic(xi: Array, eta: Array, ra0: float, dec0: float) -> tuple[Array, Array]:
    """(ra, dec) in degrees of tangent-plane coordinates (ξ, η) in degrees."""
    x, y = np.radians(xi), np.radians(eta)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0.0))
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


@dataclass(frozen=True)
class DetectorGeometry:
    """One detector's place in the focal plane and its pointing-dependent WCS."""

    camera: CameraConfig
    detector: int

    @property
    def kappa(self) -> float:
        # 12 significant digits: the value prints the same way in every FITS header (determinism)
        return float(f"{self.camera.distortion / (3600.0 / self.camera.pixel_scale) ** 2:.12e}")

    @property
    def crpix(self) -> tuple[float, float]:
        """1-based FITS CRPIX: the boresight in this detector's pixel frame."""
        ox, oy = self.camera.detector_offset_px(self.detector)
        return ((self.camera.nx - 1) / 2.0 - ox + 1.0, (self.camera.ny - 1) / 2.0 - oy + 1.0)

    def cd(self, sky_angle: float) -> NDArray[np.float64]:
        """CD matrix (deg/px): north up, east left, rotated by ``sky_angle`` degrees."""
        s = self.camera.pixel_scale / 3600.0
        t = math.radians(sky_angle)
        return s * np.array([[-math.cos(t), math.sin(t)], [math.sin(t), math.cos(t)]])

    def world_to_pixel(
        self, ra: Array, dec: Array, ra0: float, dec0: float, sky_angle: float
    ) -> tuple[Array, Array]:
        """0-based pixel (x, y) of sky positions, inverting the distortion exactly (Newton)."""
        xi, eta = gnomonic(ra, dec, ra0, dec0)
        inv = np.linalg.inv(self.cd(sky_angle))
        wx = inv[0, 0] * xi + inv[0, 1] * eta
        wy = inv[1, 0] * xi + inv[1, 1] * eta
        rw = np.hypot(wx, wy)
        k = self.kappa
        r = rw.copy()
        for _ in range(4):  # solve r (1 + k r²) = rw
            r -= (r * (1 + k * r * r) - rw) / (1 + 3 * k * r * r)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(rw > 0, r / rw, 1.0)
        cx, cy = self.crpix
        return wx * f + cx - 1.0, wy * f + cy - 1.0

    def focal_plane_arcmin(self, x: Array, y: Array) -> tuple[Array, Array]:
        """Approximate focal-plane position (arcmin from the boresight) of detector pixels."""
        cx, cy = self.crpix
        s = self.camera.pixel_scale / 60.0
        return (np.asarray(x) - cx + 1.0) * s, (np.asarray(y) - cy + 1.0) * s

    def wcs(self, ra0: float, dec0: float, sky_angle: float) -> WCS:
        return make_wcs(self.crpix, self.cd(sky_angle), ra0, dec0, self.kappa)


def make_wcs(
    crpix: tuple[float, float], cd: NDArray[np.float64], ra0: float, dec0: float, kappa: float
) -> WCS:
    """A TAN-SIP WCS with the radial cubic distortion ``κ`` about CRPIX (see the module docstring)."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = list(crpix)
    w.wcs.cd = cd
    w.wcs.radesys = "ICRS"
    w.wcs.cunit = ["deg", "deg"]
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[3, 0] = a[1, 2] = kappa
    b[2, 1] = b[0, 3] = kappa
    ap = np.zeros((6, 6))
    bp = np.zeros((6, 6))
    ap[3, 0] = ap[1, 2] = -kappa
    bp[2, 1] = bp[0, 3] = -kappa
    k2 = 3 * kappa * kappa
    ap[5, 0], ap[3, 2], ap[1, 4] = k2, 2 * k2, k2
    bp[0, 5], bp[2, 3], bp[4, 1] = k2, 2 * k2, k2
    w.sip = Sip(a, b, ap, bp, list(crpix))
    w.wcs.set()
    # Canonicalise through the FITS text form, so a WCS that was pickled to a worker process and
    # back (which goes through that text) writes byte-identical headers to one that was not.
    return WCS(w.to_header(relax=True))


@dataclass(frozen=True)
class PsfModel:
    """The visit's PSF: elliptical Moffat (β = 3.5) varying with focal-plane position."""

    seeing: float  # FWHM at the field centre, arcsec
    e1: float
    e2: float
    pixel_scale: float
    beta: float = MOFFAT_BETA

    def at(self, fx: Array | float, fy: Array | float) -> tuple[Array, Array, Array]:
        """(FWHM arcsec, e1, e2) at focal-plane positions in arcmin."""
        fx, fy = np.asarray(fx, float), np.asarray(fy, float)
        theta2 = (fx * fx + fy * fy) / 100.0
        fwhm = self.seeing * (1.0 + 0.04 * theta2)
        e1 = self.e1 + 0.03 * fx / 10.0
        e2 = self.e2 + 0.03 * fy / 10.0
        return fwhm, e1, e2

    def alpha_px(self, fwhm_arcsec: float) -> float:
        return fwhm_arcsec / self.pixel_scale / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    def render(
        self, dx: Array, dy: Array, fwhm_arcsec: float, e1: float, e2: float, oversample: int = 3
    ) -> Array:
        """Pixel-integrated, unit-flux PSF on a grid of pixel offsets ``dx``, ``dy`` (2-D arrays).

        The integral over each pixel is a mean of ``oversample²`` sub-pixel samples, so the
        image has the profile's true FWHM convolved with the pixel, as a real detector does.
        """
        alpha = self.alpha_px(fwhm_arcsec)
        # inverse shape matrix with unit determinant: ellipticity (e1, e2) stretches along x for e1 > 0
        m = np.array([[1.0 + e1, e2], [e2, 1.0 - e1]])
        m /= math.sqrt(np.linalg.det(m))
        inv = np.linalg.inv(m)
        step = (np.arange(oversample) + 0.5) / oversample - 0.5
        out = np.zeros(np.shape(dx))
        for sy in step:
            for sx in step:
                px, py = dx + sx, dy + sy
                rho2 = inv[0, 0] * px * px + 2 * inv[0, 1] * px * py + inv[1, 1] * py * py
                out += (1.0 + rho2 / (alpha * alpha)) ** (-self.beta)
        return np.asarray(out * (self.beta - 1.0) / (math.pi * alpha * alpha) / oversample**2)

    def enclosed_fraction(self, radius_px: float, fwhm_arcsec: float) -> float:
        """Fraction of a (round) Moffat's flux inside ``radius_px``: 1 − (1 + r²/α²)^(1−β)."""
        alpha = self.alpha_px(fwhm_arcsec)
        return 1.0 - (1.0 + radius_px**2 / alpha**2) ** (1.0 - self.beta)


@dataclass(frozen=True)
class Jitter:
    """Per-visit atmospheric astrometric displacement field (mas), coherent over arcminutes."""

    kx: Array  # rad per arcmin
    ky: Array
    phase: Array
    ax: Array  # mas
    ay: Array

    @classmethod
    def draw(cls, seed: int, rms_mas: float, n_modes: int = 12) -> Jitter:
        rng = np.random.default_rng(seed)
        wavelength = np.exp(rng.uniform(math.log(2.0), math.log(30.0), n_modes))  # arcmin
        angle = rng.uniform(0, 2 * math.pi, n_modes)
        k = 2 * math.pi / wavelength
        amp_dir = rng.uniform(0, 2 * math.pi, n_modes)
        weight = np.sqrt(wavelength)
        # each cosine mode has variance a²/2; scale so the rms per axis is rms_mas
        norm = rms_mas / math.sqrt(0.5 * float(np.sum(weight**2)) / 2.0)
        return cls(
            kx=k * np.cos(angle),
            ky=k * np.sin(angle),
            phase=rng.uniform(0, 2 * math.pi, n_modes),
            ax=norm * weight * np.cos(amp_dir),
            ay=norm * weight * np.sin(amp_dir),
        )

    def displacement(self, fx: Array, fy: Array) -> tuple[Array, Array]:
        """(Δξ, Δη) in mas at focal-plane positions (arcmin)."""
        fx, fy = np.atleast_1d(fx), np.atleast_1d(fy)
        arg = fx[:, None] * self.kx[None, :] + fy[:, None] * self.ky[None, :] + self.phase[None, :]
        c = np.cos(arg)
        return c @ self.ax, c @ self.ay

    def as_dict(self) -> dict[str, list[float]]:
        return {k: [float(v) for v in getattr(self, k)] for k in ("kx", "ky", "phase", "ax", "ay")}
