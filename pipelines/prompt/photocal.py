"""Photometric calibration: the zero point from reference-star fluxes, as a nJy-per-count scale.

We fit one multiplicative scale per detector, s = median(f_ref / f_inst) over matched,
unsaturated, high-SNR stars with iterative sigma-clipping in magnitudes; the zero point (AB
magnitude of one count) is ZP = 31.4 − 2.5 log₁₀ s, since 1 nJy is AB 31.4. Its error is the clipped scatter over √N. Colour terms are not fitted: the simulator's
bands are the reference catalog's bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pachon.pipelines.prompt.config import PhotoCalConfig

__all__ = ["NJY_AB_ZERO", "PhotoCalError", "PhotoCalib", "fit_zero_point"]

NJY_AB_ZERO = 31.4
"""AB magnitude of a 1 nJy source: m_AB = 31.4 − 2.5 log₁₀(f / nJy)."""


class PhotoCalError(RuntimeError):
    """Too few usable reference stars to calibrate the detector."""


@dataclass(frozen=True)
class PhotoCalib:
    """Counts → nJy: ``flux_nJy = scale * counts``; ``zero_point`` is the AB magnitude of one count."""

    scale: float
    scale_err: float
    n_stars: int
    scatter_mag: float

    @property
    def zero_point(self) -> float:
        return NJY_AB_ZERO - 2.5 * float(np.log10(self.scale))

    @property
    def zero_point_err(self) -> float:
        return 1.0857 * self.scale_err / self.scale


def fit_zero_point(
    inst_flux: np.ndarray,
    inst_flux_err: np.ndarray,
    ref_flux: np.ndarray,
    *,
    config: PhotoCalConfig | None = None,
) -> PhotoCalib:
    """Fit the scale from matched instrumental and reference fluxes (arrays of equal length).

    Examples
    --------
    >>> import numpy as np
    >>> pc = fit_zero_point(np.array([100.0] * 10), np.array([1.0] * 10), np.array([250.0] * 10))
    >>> round(pc.scale, 3)
    2.5
    """
    config = config or PhotoCalConfig()
    inst = np.asarray(inst_flux, dtype=float)
    err = np.asarray(inst_flux_err, dtype=float)
    ref = np.asarray(ref_flux, dtype=float)
    ok = np.isfinite(inst) & np.isfinite(ref) & (inst > 0) & (ref > 0) & (inst / err > config.min_snr)
    if ok.sum() < config.min_stars:
        raise PhotoCalError(
            f"only {int(ok.sum())} reference stars with SNR > {config.min_snr} (need {config.min_stars}); "
            "the refcat may lack this band or the detector is mostly masked"
        )
    dm = -2.5 * np.log10(ref[ok] / inst[ok])
    keep = np.ones(dm.size, dtype=bool)
    for _ in range(5):
        med = np.median(dm[keep])
        sig = 1.4826 * np.median(np.abs(dm[keep] - med)) + 1e-4
        new = np.abs(dm - med) < config.clip_sigma * sig
        if (new == keep).all():
            break
        keep = new
    med = float(np.median(dm[keep]))
    scatter = float(1.4826 * np.median(np.abs(dm[keep] - med)))
    scale = 10 ** (-0.4 * med)
    n = int(keep.sum())
    return PhotoCalib(
        scale=scale, scale_err=scale * scatter / 1.0857 / np.sqrt(n) * 1.2533, n_stars=n, scatter_mag=scatter
    )
