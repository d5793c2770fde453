"""Single-visit processing for a release: every detector-visit calibrated by prompt processing's steps.

:func:`calibrate_quantum` is the unit of parallel work. It reuses
:func:`pachon.pipelines.prompt.calibrate.calibrate_detector` (ISR → characterize → astrometry
→ photometric zero point) unchanged and never writes, so a failed detector leaves nothing
half-written; the driver (:mod:`pachon.pipelines.drp.run`) writes the outputs in the parent
process, the ``source`` table last, so "``source`` exists" means "quantum done" when resuming.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from astropy.table import Table

from pachon.core.image import Exposure
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.pipeline import ExposureInfo, calibrate_from_repo
from pachon.pipelines.prompt.psf import PsfModel

__all__ = ["QuantumResult", "calibrate_quantum", "psf_from_dict", "psf_to_dict"]


@dataclass
class QuantumResult:
    """What one detector-visit produced, or why it failed."""

    visit: int
    detector: int
    ok: bool
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    visit_image: Exposure | None = None
    sources: Table | None = None
    psf: dict[str, Any] | None = None


def psf_to_dict(psf: PsfModel) -> dict[str, Any]:
    """A JSON-able PSF model (stored as ``drp_psf`` so forced photometry uses the fitted PSF)."""
    return {
        "components": np.asarray(psf.components, dtype=float).tolist(),
        "shape": list(psf.shape),
        "fwhm": float(psf.fwhm),
        "n_stars": int(psf.n_stars),
    }


def psf_from_dict(data: dict[str, Any]) -> PsfModel:
    """Inverse of :func:`psf_to_dict`."""
    return PsfModel(
        components=np.asarray(data["components"], dtype=float),
        shape=(int(data["shape"][0]), int(data["shape"][1])),
        fwhm=float(data["fwhm"]),
        n_stars=int(data.get("n_stars", 0)),
    )


def calibrate_quantum(
    repo_path: str, exposure: ExposureInfo, detector: int, config_json: str
) -> QuantumResult:
    """Calibrate one detector-visit with prompt processing's calibration; never raises for bad data."""
    config = PromptConfig.model_validate_json(config_json)
    out = QuantumResult(visit=exposure.id, detector=detector, ok=False)
    try:
        cal, _has_flat = calibrate_from_repo(repo_path, exposure, detector, config)
        out.timings.update(cal.timings)
        src = cal.sources
        src["midpointMjdTai"] = np.full(len(src), exposure.mjd)
        src["physical_filter"] = np.full(len(src), f"{exposure.band}_sim")
        meta = cal.visit_image.meta
        meta["PSF_FWHM"] = (float(cal.psf.fwhm), "PSF FWHM (pixels)")
        meta["EXPTIME"] = exposure.exposure_time
        out.visit_image = cal.visit_image
        out.sources = src
        out.psf = psf_to_dict(cal.psf)
        out.ok = True
    except Exception as exc:  # one detector's failure is recorded; the release goes on without it
        out.reason = f"{type(exc).__name__}: {exc}"
    return out
