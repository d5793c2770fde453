"""DP1 tables of a release (Object, Source, ForcedSource, Visit, CcdVisit) from the pipeline's products.

Column names, meanings and units are those of the DP1 Felis schema (fluxes in nJy, angles in
degrees, proper motions in mas/yr, parallax in mas) plus our extension's proper-motion and
parallax columns; only columns we compute are filled, the rest stay NULL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table
from astropy.time import Time

from pachon.pipelines.drp.multivisit import AstrometricSolution

__all__ = ["OBJECT_ID_BASE", "ccd_visit_table", "object_table", "source_table", "visit_table"]

OBJECT_ID_BASE = 10**12
"""objectId = base + Object index (indices are ordered by declination, so re-runs reproduce them)."""


def object_table(
    astro: AstrometricSolution,
    extendedness: np.ndarray,
    band_fluxes: dict[str, tuple[np.ndarray, np.ndarray]],
    shapes: tuple[np.ndarray, np.ndarray, np.ndarray],
    ref_band: str,
) -> Table:
    """One row per Object: position at J2016.0, per-band mean forced PSF flux, extendedness, 5-parameter astrometry."""
    n = len(astro.ra)
    cov = astro.cov
    motion = astro.fitted_motion
    nan = np.full(n, np.nan)

    def m(x: np.ndarray) -> np.ndarray:
        return np.where(motion, x, np.nan)

    t = Table(
        {
            "objectId": OBJECT_ID_BASE + np.arange(n, dtype=np.int64),
            "coord_ra": astro.ra,
            "coord_dec": astro.dec,
            "coord_raErr": np.sqrt(cov[:, 0, 0]) / 3.6e6,
            "coord_decErr": np.sqrt(cov[:, 1, 1]) / 3.6e6,
            "coord_ra_dec_Cov": cov[:, 0, 1] / 3.6e6**2,
            "refBand": np.full(n, ref_band),
            "refExtendedness": extendedness.astype(float),
            "shape_xx": shapes[0],
            "shape_yy": shapes[1],
            "shape_xy": shapes[2],
            "pmRa": m(astro.params[:, 2]),
            "pmDec": m(astro.params[:, 3]),
            "parallax": m(astro.params[:, 4]),
            "pmRaErr": m(np.sqrt(cov[:, 2, 2])),
            "pmDecErr": m(np.sqrt(cov[:, 3, 3])),
            "parallaxErr": m(np.sqrt(cov[:, 4, 4])),
            "pmRa_pmDec_Cov": m(cov[:, 2, 3]),
            "pmRa_parallax_Cov": m(cov[:, 2, 4]),
            "pmDec_parallax_Cov": m(cov[:, 3, 4]),
            "pmParallaxChi2": astro.chi2,
            "pmParallaxNdata": 2 * astro.ndata,
            "pmParallaxLnL": -0.5 * astro.chi2,
        }
    )
    for band, (flux, err) in sorted(band_fluxes.items()):
        t[f"{band}_psfFlux"] = flux
        t[f"{band}_psfFluxErr"] = err
        with np.errstate(divide="ignore", invalid="ignore"):
            t[f"{band}_psfMag"] = np.where(flux > 0, -2.5 * np.log10(flux) + 31.4, np.nan)
            t[f"{band}_psfMagErr"] = np.where(flux > 0, 1.0857 * err / flux, np.nan)
        t[f"{band}_extendedness"] = extendedness.astype(float)
        t[f"{band}_psfFlux_flag"] = ~np.isfinite(flux)
    del nan
    return t


def source_table(sources: Table, group: np.ndarray, astro: AstrometricSolution, factor: np.ndarray) -> Table:
    """DP1 Source: single-visit sources with globally corrected positions and ubercal'd fluxes."""
    s = sources
    cols: dict[str, Any] = {
        "sourceId": np.asarray(s["sourceId"], np.int64),
        "visit": np.asarray(s["visit"], np.int64),
        "detector": np.asarray(s["detector"], np.int64),
        "band": np.asarray(s["band"]).astype(str),
        "physical_filter": np.asarray(s["physical_filter"]).astype(str),
        "coord_ra": astro.source_ra,
        "coord_dec": astro.source_dec,
        "ra": astro.source_ra,
        "dec": astro.source_dec,
        "raErr": np.asarray(s["coord_raErr"], float),
        "decErr": np.asarray(s["coord_decErr"], float),
        "x": np.asarray(s["x"], float),
        "y": np.asarray(s["y"], float),
        "xErr": np.asarray(s["xErr"], float),
        "yErr": np.asarray(s["yErr"], float),
        "psfFlux": np.asarray(s["psfFlux"], float) * factor,
        "psfFluxErr": np.asarray(s["psfFluxErr"], float) * factor,
        "ap12Flux": np.asarray(s["ap12Flux"], float) * factor,
        "ap12FluxErr": np.asarray(s["ap12FluxErr"], float) * factor,
        "sky": np.asarray(s["sky"], float),
        "ixx": np.asarray(s["ixx"], float),
        "iyy": np.asarray(s["iyy"], float),
        "ixy": np.asarray(s["ixy"], float),
        "extendedness": np.asarray(s["extendedness"], float),
        "pixelFlags_saturated": np.asarray(s["pixelFlags_saturated"], bool),
        "pixelFlags_cr": np.asarray(s["pixelFlags_cr"], bool),
        "pixelFlags_bad": np.asarray(s["pixelFlags_bad"], bool),
        "pixelFlags_edge": np.asarray(s["pixelFlags_edge"], bool),
        "calib_psf_used": np.asarray(s["calib_psf_used"], bool),
        "calib_astrometry_used": np.asarray(s["calib_astrometry_used"], bool),
        "calib_photometry_used": group >= 0,
    }
    return Table(cols)


def visit_table(exposure_records: list[Any], mjd_mid: dict[int, float]) -> Table:
    """DP1 Visit from the registry's exposure records."""
    recs = sorted(exposure_records, key=lambda r: r.id)
    start = [r.timespan.begin for r in recs]
    mid = [mjd_mid.get(int(r.id), t.tai.mjd) for r, t in zip(recs, start, strict=True)]
    za = np.array([float(r.zenith_angle) for r in recs])
    return Table(
        {
            "visit": np.array([int(r.id) for r in recs], np.int64),
            "physical_filter": np.array([str(r.physical_filter) for r in recs]),
            "band": np.array([str(r.physical_filter).split("_")[0] for r in recs]),
            "ra": np.array([float(r.tracking_ra) for r in recs]),
            "dec": np.array([float(r.tracking_dec) for r in recs]),
            "skyRotation": np.array([float(r.sky_angle) for r in recs]),
            "zenithDistance": za,
            "altitude": 90.0 - za,
            "airmass": 1.0 / np.cos(np.radians(za)),
            "expTime": np.array([float(r.exposure_time) for r in recs]),
            "expMidptMJD": np.array(mid),
            "expMidpt": np.array([Time(m, format="mjd", scale="tai").isot for m in mid]),
            "obsStartMJD": np.array([t.tai.mjd for t in start]),
            "obsStart": np.array([t.tai.isot for t in start]),
        }
    )


def ccd_visit_table(rows: list[dict[str, Any]]) -> Table:
    """DP1 CcdVisit from the per-detector-visit summaries the driver collects."""
    return Table(rows=rows, names=list(rows[0].keys())) if rows else Table()
