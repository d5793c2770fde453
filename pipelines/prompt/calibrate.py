"""Single-visit calibration of one detector: raw → ``visit_image`` (nJy, fitted WCS) and ``source``.

The chain is ISR → characterize (background, detection, PSF, centroids, photometry) →
astrometry (refcat match, TAN-SIP fit) → photometric zero point, each a reusable step with its
own config. Nothing touches the repository here: :func:`calibrate_detector` takes arrays and
tables and returns them, so the data-release pipeline and the tests call it directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from astropy.time import Time

from pachon.core.image import Exposure
from pachon.pipelines.prompt.apcorr import ApertureCorrection, fit_aperture_correction
from pachon.pipelines.prompt.astrometry import AstrometryResult, fit_astrometry
from pachon.pipelines.prompt.characterize import BAD_BITS, Characterization, characterize
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.ids import ccd_visit_id, pack_ids
from pachon.pipelines.prompt.isr import run_isr
from pachon.pipelines.prompt.measure import aperture_photometry
from pachon.pipelines.prompt.photocal import PhotoCalib, fit_zero_point
from pachon.pipelines.prompt.psf import PsfModel

__all__ = ["CalibratedDetector", "calibrate_detector", "ref_flux_column"]


@dataclass
class CalibratedDetector:
    """Outputs of :func:`calibrate_detector`."""

    visit_image: Exposure
    sources: Table
    psf: PsfModel
    astrometry: AstrometryResult
    photocal: PhotoCalib
    timings: dict[str, float] = field(default_factory=dict)
    cpu_timings: dict[str, float] = field(default_factory=dict)
    """CPU seconds of this process per step (``timings`` is wall time; they differ on a loaded machine)."""


def ref_flux_column(refcat: Table, band: str) -> str:
    """The refcat's flux column for ``band`` (``{band}_flux`` in nJy, or a Gaia-like fallback)."""
    for name in (f"{band}_flux", f"phot_{band}_flux", f"{band}Flux"):
        if name in refcat.colnames:
            return name
    raise KeyError(f"the reference catalog has no flux column for band {band!r} (looked for {band}_flux)")


def _aperture_correction(char: Characterization) -> ApertureCorrection:
    """Fit and apply (in place, to ``psfFlux``/``psfFluxErr``) the aperture correction of :mod:`.apcorr`."""
    src = char.sources
    exp = char.exposure
    radius = max(2.5 * char.psf.fwhm, 8.0)  # 99 % of a β = 3.5 Moffat's light, ±0.3 % for ±5 % in FWHM
    bad = (np.asarray(exp.mask) & BAD_BITS) != 0
    ap, ap_err, _ = aperture_photometry(
        np.asarray(exp.data),
        np.asarray(exp.variance),
        bad,
        np.asarray(src["x"]),
        np.asarray(src["y"]),
        radius,
    )
    psf_flux = np.asarray(src["psfFlux"], float)
    ratio = psf_flux / np.asarray(src["apFlux"], float)
    cand = np.asarray(src["psfCandidate"], bool)
    stellar = np.nanmedian(ratio[cand]) if cand.any() else np.nanmedian(ratio)
    flags = np.zeros(len(src), bool)
    for col in ("flag_saturated", "flag_cr", "flag_bad", "flag_edge"):
        flags |= np.asarray(src[col], bool)
    point = np.abs(ratio / stellar - 1) < 0.1
    corr = fit_aperture_correction(
        np.asarray(src["x"]), np.asarray(src["y"]), psf_flux, ap, ap_err, point & ~flags,
        exp.data.shape, radius=radius, psf_flux_err=np.asarray(src["psfFluxErr"], float),
    )  # fmt: skip
    factor = corr(np.asarray(src["x"]), np.asarray(src["y"]))
    src["psfFlux"] = psf_flux * factor
    src["psfFluxErr"] = np.asarray(src["psfFluxErr"], float) * factor
    return corr


def calibrate_detector(
    raw: Exposure,
    *,
    refcat: Table,
    band: str,
    epoch: Time,
    visit: int = 0,
    detector: int = 0,
    flat: Exposure | None = None,
    config: PromptConfig | None = None,
) -> CalibratedDetector:
    """Calibrate one raw detector image against the reference catalog.

    Returns the ``visit_image`` (image and variance in nJy, int mask, fitted TAN-SIP WCS, header
    keywords ``ZEROPT``, ``ASTRMS``, ``PSF_FWHM``…) and a DP1-Source-like table in nJy.

    Raises
    ------
    IsrError, CharacterizeError, AstrometryError, PhotoCalError
        each with what went wrong; the visit-level driver records it per detector.
    """
    config = config or PromptConfig()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    post = run_isr(raw, flat=flat, config=config.isr)
    timings["isr"], cpu["isr"] = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    char = characterize(post, config=config.characterize)
    timings["characterize"], cpu["characterize"] = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    if raw.wcs is None:
        from pachon.pipelines.prompt.astrometry import AstrometryError

        raise AstrometryError("the raw has no nominal WCS to start the astrometric fit from")
    shape = char.exposure.data.shape
    astro = fit_astrometry(char.sources, refcat, raw.wcs, epoch, shape, config=config.astrometry)
    timings["astrometry"], cpu["astrometry"] = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    apcorr = _aperture_correction(char)  # before the zero point: it is fitted to corrected fluxes
    flux_col = ref_flux_column(refcat, band)
    src_i = np.asarray(astro.matches["source_index"])
    ref_rows = np.asarray(astro.matches["ref_row"])
    ok = ~np.asarray(char.sources["flag_saturated"])[src_i]
    photocal = fit_zero_point(
        np.asarray(char.sources["psfFlux"])[src_i][ok],
        np.asarray(char.sources["psfFluxErr"])[src_i][ok],
        np.asarray(refcat[flux_col])[ref_rows][ok],
        config=config.photocal,
    )
    timings["photocal"], cpu["photocal"] = time.perf_counter() - t0, time.process_time() - c0

    s = photocal.scale
    exp = char.exposure
    visit_image = Exposure(
        (np.asarray(exp.data) * s).astype(np.float32),
        unit="nJy",
        mask=np.asarray(exp.mask),
        wcs=astro.wcs,
        meta=exp.header_copy(),
    )
    visit_image.variance = (np.asarray(exp.variance) * s * s).astype(np.float32)
    meta = visit_image.meta
    meta["VISIT"] = visit
    meta["DETECTOR"] = detector
    meta["BAND"] = band
    meta["MJD-OBS"] = float(epoch.tai.mjd)
    meta["ZEROPT"] = (photocal.zero_point, "AB mag of one electron")
    meta["ZEROPTER"] = (photocal.zero_point_err, "zero point error (mag)")
    meta["NJYPERE"] = (s, "nJy per electron")
    meta["ASTRMS"] = (astro.rms_mas, "astrometric fit rms per coordinate (mas)")
    meta["ASTNMTCH"] = (astro.n_matches, "refcat matches in the WCS fit")
    apcorr.to_header(meta)

    src = char.sources
    ra, dec = astro.wcs.all_pix2world(np.asarray(src["x"]), np.asarray(src["y"]), 0)
    scale_arcsec = float(np.sqrt(abs(np.linalg.det(astro.wcs.pixel_scale_matrix))) * 3600)
    pos_err_deg = np.asarray(src["xErr"]) * scale_arcsec / 3600
    ratio = np.asarray(src["psfFlux"]) / np.asarray(src["apFlux"])
    stellar = np.nanmedian(ratio[np.asarray(src["psfCandidate"])]) if np.any(src["psfCandidate"]) else 1.0
    n = len(src)
    used = np.zeros(n, dtype=bool)
    used[src_i] = True
    sources = Table(
        {
            "sourceId": pack_ids(visit, detector, np.arange(n)),
            "visit": np.full(n, visit, dtype=np.int64),
            "detector": np.full(n, detector, dtype=np.int16),
            "ccdVisitId": np.full(n, ccd_visit_id(visit, detector), dtype=np.int64),
            "band": np.full(n, band),
            "x": np.asarray(src["x"]),
            "y": np.asarray(src["y"]),
            "xErr": np.asarray(src["xErr"], dtype=np.float32),
            "yErr": np.asarray(src["yErr"], dtype=np.float32),
            "coord_ra": ra,
            "coord_dec": dec,
            "coord_raErr": pos_err_deg.astype(np.float32),
            "coord_decErr": pos_err_deg.astype(np.float32),
            "psfFlux": np.asarray(src["psfFlux"]) * s,
            "psfFluxErr": np.asarray(src["psfFluxErr"]) * s,
            "psfChi2": np.asarray(src["psfChi2"]),
            "ap12Flux": np.asarray(src["apFlux"]) * s,
            "ap12FluxErr": np.asarray(src["apFluxErr"]) * s,
            "sky": np.asarray(src["sky"]) * s,
            "ixx": np.asarray(src["ixx"], dtype=np.float32),
            "iyy": np.asarray(src["iyy"], dtype=np.float32),
            "ixy": np.asarray(src["ixy"], dtype=np.float32),
            "extendedness": (ratio < 0.85 * stellar).astype(np.float32),
            "pixelFlags_saturated": np.asarray(src["flag_saturated"]),
            "pixelFlags_cr": np.asarray(src["flag_cr"]),
            "pixelFlags_bad": np.asarray(src["flag_bad"]),
            "pixelFlags_edge": np.asarray(src["flag_edge"]),
            "calib_psf_used": np.asarray(src["psfCandidate"]),
            "calib_astrometry_used": used,
        }
    )
    for name, unit in (
        ("psfFlux", "nJy"),
        ("psfFluxErr", "nJy"),
        ("ap12Flux", "nJy"),
        ("ap12FluxErr", "nJy"),
        ("sky", "nJy"),
        ("coord_ra", "deg"),
        ("coord_dec", "deg"),
        ("coord_raErr", "deg"),
        ("coord_decErr", "deg"),
    ):
        sources[name].unit = unit
    return CalibratedDetector(
        visit_image=visit_image,
        sources=sources,
        psf=char.psf,
        astrometry=astro,
        photocal=photocal,
        timings=timings,
        cpu_timings=cpu,
    )
