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

__all__ = [
    "OBJECT_ID_BASE",
    "ccd_visit_table",
    "coadd_object_table",
    "dp1_columns",
    "source_table",
    "visit_table",
]

OBJECT_ID_BASE = 10**12
"""objectId = base + Object index (indices are ordered by declination, so re-runs reproduce them)."""


def dp1_columns(table: str) -> set[str]:
    """Column names of a DP1 table in our Felis schema (DP1 plus the proper-motion extension)."""
    from pachon.core.catalog.felis_schemas import schema_info

    for t in schema_info("dp1").tables:
        if t.name.split(".")[-1] == table:
            return {c.name for c in t.columns}
    raise KeyError(f"no table {table!r} in the dp1 schema")


def _filled(col: Any) -> np.ndarray:
    """A plain array from a possibly masked column: NaN for floats, False/0 otherwise."""
    arr = np.ma.asarray(col)
    if not np.ma.is_masked(arr):
        return np.asarray(arr)
    if arr.dtype.kind == "f":
        return np.asarray(arr.filled(np.nan))
    if arr.dtype.kind == "b":
        return np.asarray(arr.filled(False))
    return np.asarray(arr.filled(0))


def coadd_object_table(
    coadd: Table, astro: AstrometricSolution, star: np.ndarray, ref_band: str, pixel_scale_deg: float
) -> Table:
    """DP1 Object from the coadd measurements (merged patches) and the joined astrometric solution.

    ``star[i]`` is the index in ``astro`` of Object i's multi-visit star (−1: none).
    ``coord_ra``/``coord_dec`` are the astrometric solution's position at J2016.0 (the reference
    catalog's epoch) where that position is anchored by the reference catalog or more precise
    than the coadd centroid; otherwise the coadd centroid (epoch ``<band>_epoch``, the coadds'
    weighted mean; extrapolating a faint star's fit a decade back to J2016.0 would be less
    precise). Proper motion and parallax columns are filled where the 5-parameter fit ran.
    Every measured ``<band>_…`` column the DP1 schema defines is copied; the rest stay NULL.
    Rows keep ``coadd``'s order (by objectId when the patches are stacked in order).
    """
    n = len(coadd)
    known = dp1_columns("Object")
    has = star >= 0
    j = np.where(has, star, 0)
    cov = astro.cov[j] if len(astro.ra) else np.zeros((n, 5, 5))
    pos_err = _filled(coadd["det_xErr"]).astype(float) * pixel_scale_deg
    fit_err = np.sqrt(np.abs(cov[:, 0, 0])) / 3.6e6
    if len(astro.ra):
        precise = astro.ref_matched[j] | (astro.fitted_motion[j] & (fit_err < pos_err))
        fitted = has & precise
        motion = has & astro.fitted_motion[j]
    else:
        fitted = motion = np.zeros(n, bool)
    ra = np.where(fitted, astro.ra[j] if len(astro.ra) else 0.0, _filled(coadd["coord_ra"]))
    dec = np.where(fitted, astro.dec[j] if len(astro.dec) else 0.0, _filled(coadd["coord_dec"]))
    cols: dict[str, Any] = {
        "objectId": _filled(coadd["objectId"]).astype(np.int64),
        "parentObjectId": _filled(coadd["parentObjectId"]).astype(np.int64),
        "coord_ra": ra,
        "coord_dec": dec,
        "coord_raErr": np.where(fitted, np.sqrt(np.abs(cov[:, 0, 0])) / 3.6e6, pos_err),
        "coord_decErr": np.where(fitted, np.sqrt(np.abs(cov[:, 1, 1])) / 3.6e6, pos_err),
        "coord_ra_dec_Cov": np.where(fitted, cov[:, 0, 1] / 3.6e6**2, 0.0),
        "tract": _filled(coadd["tract"]).astype(np.int64),
        "patch": _filled(coadd["patch"]).astype(np.int64),
        "x": _filled(coadd["x"]).astype(float),
        "y": _filled(coadd["y"]).astype(float),
        "xErr": _filled(coadd["det_xErr"]).astype(float),
        "yErr": _filled(coadd["det_yErr"]).astype(float),
        "footprintArea": _filled(coadd["det_npix"]).astype(np.int64),
        "refBand": np.full(n, ref_band),
        "detect_isIsolated": _filled(coadd["det_nChild"]) <= 1,
        "detect_fromBlend": _filled(coadd["det_nChild"]) > 1,
        "deblend_nChild": np.zeros(n, np.int64),
        "deblend_nPeaks": _filled(coadd["det_nPeaks"]).astype(np.int64),
        "deblend_peak_center_x": (
            _filled(coadd["det_peak_x"]) + np.round(_filled(coadd["x"]) - _filled(coadd["det_x"]))
        ).astype(np.int64),
        "deblend_peak_center_y": (
            _filled(coadd["det_peak_y"]) + np.round(_filled(coadd["y"]) - _filled(coadd["det_y"]))
        ).astype(np.int64),
    }
    for src, dst in (
        ("extendedness", "refExtendedness"),
        ("sizeExtendedness", "refSizeExtendedness"),
        ("ixx", "shape_xx"),
        ("iyy", "shape_yy"),
        ("ixy", "shape_xy"),
        ("i_flag", "shape_flag"),
    ):
        name = f"{ref_band}_{src}"
        if name in coadd.colnames:
            cols[dst] = _filled(coadd[name])
    for name in coadd.colnames:
        if name in known and name not in cols and name[:2] in {f"{b}_" for b in "ugrizy"}:
            cols[name] = _filled(coadd[name])

    def m(x: np.ndarray) -> np.ndarray:
        return np.where(motion, x, np.nan)

    p = astro.params[j] if len(astro.ra) else np.zeros((n, 5))
    chi2 = astro.chi2[j] if len(astro.ra) else np.zeros(n)
    ndata = astro.ndata[j] if len(astro.ra) else np.zeros(n, np.int64)
    cols |= {
        "pmRa": m(p[:, 2]),
        "pmDec": m(p[:, 3]),
        "parallax": m(p[:, 4]),
        "pmRaErr": m(np.sqrt(np.abs(cov[:, 2, 2]))),
        "pmDecErr": m(np.sqrt(np.abs(cov[:, 3, 3]))),
        "parallaxErr": m(np.sqrt(np.abs(cov[:, 4, 4]))),
        "pmRa_pmDec_Cov": m(cov[:, 2, 3]),
        "pmRa_parallax_Cov": m(cov[:, 2, 4]),
        "pmDec_parallax_Cov": m(cov[:, 3, 4]),
        "pmParallaxChi2": np.where(has, chi2, np.nan),
        "pmParallaxNdata": np.where(has, 2 * ndata, 0).astype(np.int64),
        "pmParallaxLnL": np.where(has, -0.5 * chi2, np.nan),
    }
    return Table(cols)


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
