"""Synthetic APDB-style rows and stamps for tests, benchmarks and demos of the alert stream.

Not simulated science (that is ``pachon.pipelines.sim``): just rows with every column the
APDB fills and realistic value ranges, and stamps cut from a noisy image with Gaussian PSFs,
so the producer and consumers can be exercised at realistic packet sizes without running the
image pipeline. IDs are deterministic in ``(visit, detector, index)``, as the pipeline's are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pachon.core.alerts.cutouts import Cutouts, make_cutouts
from pachon.core.alerts.packet import BANDS, build_alert, complete_dia_object

__all__ = ["SampleVisit", "sample_visit"]


@dataclass
class SampleVisit:
    """Rows of one synthetic detector-visit."""

    dia_sources: list[dict[str, Any]]
    prv_sources: dict[int, list[dict[str, Any]]]
    prv_forced: dict[int, list[dict[str, Any]]]
    dia_objects: dict[int, dict[str, Any]]
    cutouts: dict[int, Cutouts]

    def alerts(self) -> list[dict[str, Any]]:
        """The alert packets of this visit, built with :func:`~pachon.core.alerts.packet.build_alert`."""
        return [
            build_alert(
                src,
                prv_sources=self.prv_sources[src["diaObjectId"]],
                prv_forced=self.prv_forced[src["diaObjectId"]],
                dia_object=self.dia_objects[src["diaObjectId"]],
                cutouts=self.cutouts.get(src["diaSourceId"]),
            )
            for src in self.dia_sources
        ]


def _wcs(ra: float, dec: float) -> Any:
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [1000.0, 1000.0]
    wcs.wcs.cd = [[-0.2 / 3600, 0.0], [0.0, 0.2 / 3600]]
    return wcs


def sample_visit(
    n_sources: int,
    *,
    visit: int = 2026112300001,
    detector: int = 0,
    history: int = 5,
    cutouts: bool = True,
    mjd: float = 61367.2,
    seed: int = 0,
    bbox_sizes: tuple[int, ...] = (30,),
) -> SampleVisit:
    """``n_sources`` DiaSources on one detector, each with ``history`` previous sources and forced points.

    ``bbox_sizes``: footprint sizes drawn at random per source (cutouts are clamped to 30–102 px).
    """
    rng = np.random.default_rng(seed + detector * 7919 + visit % 100_000)
    wcs = _wcs(150.0, -30.0)
    size = 2000
    sky_sigma = 40.0  # nJy per pixel
    science = rng.normal(0.0, sky_sigma, (size, size)).astype(np.float32)
    template = rng.normal(0.0, sky_sigma / 2, (size, size)).astype(np.float32)
    variance = np.full((size, size), sky_sigma**2, dtype=np.float32)
    xs = rng.uniform(70, size - 70, n_sources)
    ys = rng.uniform(70, size - 70, n_sources)
    fluxes = rng.lognormal(np.log(5000.0), 0.8, n_sources)
    sigma_psf = 2.0
    yy, xx = np.mgrid[-15:16, -15:16]
    for x, y, flux in zip(xs, ys, fluxes, strict=True):
        ix, iy = round(x), round(y)
        psf = np.exp(-((xx - (x - ix)) ** 2 + (yy - (y - iy)) ** 2) / (2 * sigma_psf**2))
        science[iy - 15 : iy + 16, ix - 15 : ix + 16] += (flux * psf / psf.sum()).astype(np.float32)
    difference = science - template
    band = BANDS[(visit + detector) % 6]
    out = SampleVisit([], {}, {}, {}, {})
    for i in range(n_sources):
        source_id = (visit % 10**9) * 10**6 + detector * 10**4 + i
        object_id = 10**15 + detector * 10**7 + i
        ra, dec = (float(v) for v in wcs.all_pix2world([[xs[i], ys[i]]], 0)[0])
        flux = float(fluxes[i])
        err = float(sky_sigma * np.sqrt(4 * np.pi * sigma_psf**2))
        row: dict[str, Any] = {
            "diaSourceId": source_id,
            "visit": visit,
            "detector": detector,
            "diaObjectId": object_id,
            "ssObjectId": None,
            "parentDiaSourceId": None,
            "midpointMjdTai": mjd,
            "ra": ra,
            "dec": dec,
            "raErr": 1e-5,
            "decErr": 1e-5,
            "ra_dec_Cov": 0.0,
            "x": float(xs[i]),
            "y": float(ys[i]),
            "xErr": 0.05,
            "yErr": 0.05,
            "apFlux": flux * 0.95,
            "apFluxErr": err * 1.1,
            "snr": flux / err,
            "psfFlux": flux,
            "psfFluxErr": err,
            "psfChi2": float(rng.chisquare(900)),
            "psfNdata": 961,
            "scienceFlux": flux * 1.3,
            "scienceFluxErr": err,
            "templateFlux": flux * 0.3,
            "templateFluxErr": err / 2,
            "ixx": 4.0,
            "iyy": 4.0,
            "ixy": 0.0,
            "extendedness": float(rng.uniform(0, 0.2)),
            "reliability": float(rng.uniform(0.5, 1.0)),
            "band": band,
            "isDipole": False,
            "isNegative": False,
            "trailNdata": 0,
            "dipoleNdata": 0,
            "bboxSize": int(rng.choice(bbox_sizes)),
            "timeProcessedMjdTai": mjd + 30 / 86400,
            "pixelFlags": False,
            "pixelFlags_saturated": False,
        }
        out.dia_sources.append(row)
        prv = []
        for k in range(history):
            prev = dict(row)
            prev.update(
                diaSourceId=source_id + (k + 1) * 10**15,
                visit=visit - (k + 1) * 1000,
                midpointMjdTai=mjd - 3.0 * (k + 1),
                psfFlux=flux * float(rng.uniform(0.5, 1.5)),
                band=BANDS[k % 6],
            )
            prv.append(prev)
        out.prv_sources[object_id] = prv
        out.prv_forced[object_id] = [
            {
                "diaForcedSourceId": source_id + (k + 1) * 10**15 + 5 * 10**14,
                "diaObjectId": object_id,
                "ra": ra,
                "dec": dec,
                "visit": visit - (k + 1) * 1000,
                "detector": detector,
                "psfFlux": float(rng.normal(0, err)),
                "psfFluxErr": err,
                "midpointMjdTai": mjd - 3.0 * (k + 1) - 0.01,
                "band": BANDS[k % 6],
                "timeProcessedMjdTai": mjd - 3.0 * (k + 1),
            }
            for k in range(history)
        ]
        out.dia_objects[object_id] = complete_dia_object(
            {
                "diaObjectId": object_id,
                "ra": ra,
                "dec": dec,
                "raErr": 1e-5,
                "decErr": 1e-5,
                "nDiaSources": history + 1,
                f"{band}_psfFluxMean": flux,
                f"{band}_psfFluxMeanErr": err,
                "firstDiaSourceMjdTai": mjd - 3.0 * history,
                "lastDiaSourceMjdTai": mjd,
                "validityEndMjdTai": None,
            },
            [row, *prv],
        )
        if cutouts:
            out.cutouts[source_id] = make_cutouts(
                row["x"],
                row["y"],
                difference=(difference, variance, wcs),
                science=(science, variance, wcs),
                template=(template, variance / 4, wcs),
                bbox_size=row["bboxSize"],
            )
    return out
