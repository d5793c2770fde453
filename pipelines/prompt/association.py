"""Association of a visit's DiaSources with DiaObjects in the APDB, and forced photometry.

The APDB is the real ``lsst-dax-apdb`` (SQLite in ``REPO/apdb/`` by default, any SQLAlchemy URL —
PostgreSQL — when configured), with the ``apdb.yaml`` schema of ``lsst-sdm-schemas``, so the column
names and units are Rubin's. Per visit:

1. read the DiaObjects inside the visit's region (``Apdb.getDiaObjects``);
2. match each DiaSource to the nearest DiaObject within ``radius_arcsec``, one-to-one (two
   DiaSources of one visit never join the same DiaObject, as the DPDD requires), nearest pairs first;
3. unmatched DiaSources found new DiaObjects whose ``diaObjectId`` is the founding
   ``diaSourceId`` (deterministic: a re-run reproduces it);
4. recompute the summary columns of every touched DiaObject from its DiaSource history
   (``history_days``): mean position, ``nDiaSources``, per-band ``psfFluxMean/MeanErr/Sigma/Ndata/
   Min/Max/ErrMean``, ``scienceFluxMean``, first/last DiaSource times;
5. forced PSF photometry on the difference and science images at every DiaObject on the visit's
   detectors (``DiaForcedSource``), including the new ones;
6. store all three in one ``Apdb.store`` call (the APDB writes them in one transaction).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.table import Table
from astropy.time import Time
from lsst.sphgeom import ConvexPolygon, LonLat, Region, UnitVector3d
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.pipelines.prompt.config import AssociationConfig
from pachon.pipelines.prompt.ids import KINDS, pack_ids
from pachon.pipelines.prompt.measure import psf_photometry
from pachon.pipelines.prompt.psf import PsfModel

__all__ = [
    "ApdbHandle",
    "AssociationResult",
    "DetectorImages",
    "associate_visit",
    "open_apdb",
    "unit_vectors",
]

BANDS = ("u", "g", "r", "i", "z", "y")
_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])


def unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors of positions in degrees (chord distance ≈ angle for small separations)."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.column_stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])


@dataclass
class ApdbHandle:
    """An open APDB and where its configuration lives."""

    apdb: Any
    config_path: Path


def open_apdb(repo_path: str | Path, *, db_url: str | None = None) -> ApdbHandle:
    """Open (creating on first use) the repo's APDB: ``REPO/apdb/apdb.sqlite3`` unless ``db_url`` is given."""
    from lsst.dax.apdb import Apdb, ApdbSql
    from lsst.dax.apdb.sql import ApdbSqlConfig

    folder = Path(repo_path) / "apdb"
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "apdb-config.json"
    if cfg_path.exists():
        config = ApdbSqlConfig.model_validate_json(cfg_path.read_text())
    else:
        url = db_url or f"sqlite:///{(folder / 'apdb.sqlite3').resolve()}"
        config = ApdbSql.init_database(db_url=url)
        cfg_path.write_text(config.model_dump_json())
    return ApdbHandle(apdb=Apdb.from_config(config), config_path=cfg_path)


@dataclass
class DetectorImages:
    """What forced photometry needs from one processed detector."""

    detector: int
    difference: Exposure
    science: Exposure
    psf: PsfModel


@dataclass
class AssociationResult:
    """The visit's DiaSources (with ``diaObjectId``), the updated DiaObjects and the forced sources."""

    dia_sources: Table
    dia_objects: pd.DataFrame
    forced_sources: pd.DataFrame
    n_new: int
    n_matched: int


def visit_region(images: Sequence[DetectorImages]) -> Region:
    """A convex polygon around the visit's detectors (their corners), for APDB spatial queries."""
    ra_all, dec_all = [], []
    for im in images:
        ny, nx = np.shape(im.science.data)
        ra, dec = im.science.wcs.all_pix2world([0, nx - 1, nx - 1, 0], [0, 0, ny - 1, ny - 1], 0)
        ra_all.extend(ra)
        dec_all.extend(dec)
    vecs = [
        UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra_all, dec_all, strict=True)
    ]
    return ConvexPolygon.convexHull(vecs)


def _summaries(objects: dict[int, dict[str, Any]], history: pd.DataFrame, visit_mjd: float) -> pd.DataFrame:
    rows = []
    for oid, base in objects.items():
        h = history[history["diaObjectId"] == oid]
        row = dict(base)
        row["diaObjectId"] = int(oid)
        row["validityStartMjdTai"] = visit_mjd
        if len(h):
            w = (
                1.0 / np.maximum(np.asarray(h["raErr"], float) ** 2, 1e-16)
                if "raErr" in h
                else np.ones(len(h))
            )
            w = np.nan_to_num(w, nan=1.0)
            uv = unit_vectors(h["ra"].to_numpy(), h["dec"].to_numpy())
            mean = (uv * w[:, None]).sum(axis=0)
            mean /= np.linalg.norm(mean)
            row["ra"] = float(np.degrees(np.arctan2(mean[1], mean[0])) % 360)
            row["dec"] = float(np.degrees(np.arcsin(mean[2])))
            row["raErr"] = float(np.sqrt(1.0 / w.sum())) if "raErr" in h else None
            row["decErr"] = row["raErr"]
            row["nDiaSources"] = len(h)
            row["firstDiaSourceMjdTai"] = float(h["midpointMjdTai"].min())
            row["lastDiaSourceMjdTai"] = float(h["midpointMjdTai"].max())
        for band in BANDS:
            hb = h[h["band"] == band] if len(h) else h
            n = len(hb)
            row[f"{band}_psfFluxNdata"] = n
            if n:
                f = np.asarray(hb["psfFlux"], float)
                e = np.asarray(hb["psfFluxErr"], float)
                wb = 1.0 / np.maximum(e**2, 1e-30)
                row[f"{band}_psfFluxMean"] = float((f * wb).sum() / wb.sum())
                row[f"{band}_psfFluxMeanErr"] = float(np.sqrt(1.0 / wb.sum()))
                row[f"{band}_psfFluxSigma"] = float(np.std(f, ddof=1)) if n > 1 else None
                row[f"{band}_psfFluxMin"] = float(f.min())
                row[f"{band}_psfFluxMax"] = float(f.max())
                row[f"{band}_psfFluxErrMean"] = float(e.mean())
                if "scienceFlux" in hb:
                    sf = np.asarray(hb["scienceFlux"], float)
                    row[f"{band}_scienceFluxMean"] = float(np.nanmean(sf)) if np.isfinite(sf).any() else None
        rows.append(row)
    return pd.DataFrame(rows)


_DIA_COLUMNS = (
    "diaSourceId", "visit", "detector", "diaObjectId", "midpointMjdTai", "exposureTime", "ra", "raErr", "dec",
    "decErr", "x", "xErr", "y", "yErr", "centroid_flag", "apFlux", "apFluxErr", "isNegative", "snr", "psfFlux",
    "psfFluxErr", "psfChi2", "psfNdata", "psfFlux_flag", "psfFlux_flag_edge", "dipoleMeanFlux", "dipoleFluxDiff",
    "dipoleLength", "dipoleAngle", "dipoleNdata", "scienceFlux", "scienceFluxErr", "templateFlux",
    "templateFluxErr", "ixx", "iyy", "ixy", "ixxPSF", "iyyPSF", "ixyPSF", "reliability", "reliabilityVersion",
    "band", "isDipole", "timeProcessedMjdTai", "bboxSize", "trailFlux", "trailLength", "trailAngle", "trailChi2",
    "trailNdata", "pixelFlags_bad", "pixelFlags_cr",
    "pixelFlags_crCenter", "pixelFlags_edge", "pixelFlags_nodata", "pixelFlags_nodataCenter",
    "pixelFlags_interpolated", "pixelFlags_interpolatedCenter", "pixelFlags_saturated",
    "pixelFlags_saturatedCenter", "pixelFlags_suspect", "pixelFlags_suspectCenter",
)  # fmt: skip
"""The DiaSource columns we fill (the APDB schema's names); the rest stay NULL."""


def dia_frame(table: Table) -> pd.DataFrame:
    """The APDB DiaSource DataFrame of a DIA table (only schema columns, native types)."""
    cols = {c: np.asarray(table[c]) for c in _DIA_COLUMNS if c in table.colnames}
    frame = pd.DataFrame(cols)
    for c in frame.columns:
        if frame[c].dtype == bool:
            frame[c] = frame[c].astype(bool)
    return frame


def associate_visit(
    handle: ApdbHandle,
    dia_sources: Table,
    images: Sequence[DetectorImages],
    *,
    visit: int,
    visit_mjd: float,
    band: str,
    config: AssociationConfig | None = None,
) -> AssociationResult:
    """Associate one visit's (real/bogus-selected) DiaSources, update DiaObjects, force-photometer, store."""
    config = config or AssociationConfig()
    apdb = handle.apdb
    visit_time = Time(visit_mjd, format="mjd", scale="tai")
    region = visit_region(images)
    existing = apdb.getDiaObjects(region)
    existing = existing if existing is not None else pd.DataFrame()
    n = len(dia_sources)
    obj_ids = np.zeros(n, dtype=np.int64)
    matched = np.zeros(n, dtype=bool)
    if n and len(existing):
        tree = cKDTree(unit_vectors(np.asarray(existing["ra"]), np.asarray(existing["dec"])))
        radius = np.radians(config.radius_arcsec / 3600.0)
        dist, idx = tree.query(
            unit_vectors(dia_sources["ra"], dia_sources["dec"]), distance_upper_bound=radius
        )
        used: set[int] = set()
        for i in np.argsort(dist):
            if not np.isfinite(dist[i]) or int(idx[i]) in used:
                continue
            used.add(int(idx[i]))
            obj_ids[i] = int(existing["diaObjectId"].iloc[int(idx[i])])
            matched[i] = True
    new = ~matched
    obj_ids[new] = np.asarray(dia_sources["diaSourceId"])[new]
    dia_sources["diaObjectId"] = obj_ids
    dia_sources["timeProcessedMjdTai"] = np.full(n, Time.now().tai.mjd)
    frame = dia_frame(dia_sources)

    touched = sorted(set(obj_ids.tolist()))
    history_start = Time(visit_mjd - config.history_days, format="mjd", scale="tai")
    old = apdb.getDiaSources(
        region, [i for i in touched if i not in set(obj_ids[new].tolist())], visit_time, history_start
    )
    history = (
        pd.concat([h for h in (old, frame) if h is not None and len(h)], ignore_index=True)
        if n
        else pd.DataFrame()
    )
    base: dict[int, dict[str, Any]] = {}
    for oid in touched:
        base[oid] = {"ra": float("nan"), "dec": float("nan"), "nDiaSources": 0}
    objects = _summaries(base, history, visit_mjd) if touched else pd.DataFrame()

    # forced photometry of every DiaObject (existing + new) on each detector it falls on
    all_objects = pd.concat([existing, objects], ignore_index=True) if len(existing) else objects
    if len(all_objects):
        all_objects = all_objects.drop_duplicates("diaObjectId", keep="last")
    forced_rows = []
    for im in images:
        if not len(all_objects):
            break
        ny, nx = np.shape(im.difference.data)
        x, y = im.difference.wcs.all_world2pix(
            np.asarray(all_objects["ra"], float), np.asarray(all_objects["dec"], float), 0, quiet=True
        )
        on = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        if not on.any():
            continue
        d = im.difference
        bad = (np.asarray(d.mask) & _UNUSABLE) != 0
        diff = psf_photometry(
            np.asarray(d.data, np.float32), np.asarray(d.variance, np.float32), bad, im.psf, x[on], y[on]
        )
        diff["fluxErr"] = np.asarray(diff["fluxErr"]) * float(d.meta.get("DIFNOISE", 1.0))
        s = im.science
        sbad = (np.asarray(s.mask) & _UNUSABLE) != 0
        sci = psf_photometry(
            np.asarray(s.data, np.float32), np.asarray(s.variance, np.float32), sbad, im.psf, x[on], y[on]
        )
        k = int(on.sum())
        forced_rows.append(
            pd.DataFrame(
                {
                    "diaForcedSourceId": pack_ids(
                        visit, im.detector, np.arange(k), kind=KINDS["dia_forced_source"]
                    ),
                    "diaObjectId": np.asarray(all_objects["diaObjectId"], np.int64)[on],
                    "ra": np.asarray(all_objects["ra"], float)[on],
                    "dec": np.asarray(all_objects["dec"], float)[on],
                    "visit": np.full(k, visit, np.int64),
                    "detector": np.full(k, im.detector, np.int16),
                    "psfFlux": np.asarray(diff["flux"], np.float32),
                    "psfFluxErr": np.asarray(diff["fluxErr"], np.float32),
                    "midpointMjdTai": np.full(k, visit_mjd),
                    "scienceFlux": np.asarray(sci["flux"], np.float32),
                    "scienceFluxErr": np.asarray(sci["fluxErr"], np.float32),
                    "band": np.full(k, band),
                    "timeProcessedMjdTai": np.full(k, Time.now().tai.mjd),
                }
            )
        )
    forced = pd.concat(forced_rows, ignore_index=True) if forced_rows else None
    if len(objects):
        apdb.store(visit_time, objects, frame, forced)
    elif forced is not None:
        empty = pd.DataFrame({"diaObjectId": np.zeros(0, np.int64), "ra": np.zeros(0), "dec": np.zeros(0)})
        apdb.store(visit_time, empty, None, forced)
    return AssociationResult(
        dia_sources=dia_sources,
        dia_objects=objects,
        forced_sources=forced if forced is not None else pd.DataFrame(),
        n_new=int(new.sum()),
        n_matched=int(matched.sum()),
    )


def apdb_summary(handle: ApdbHandle) -> dict[str, Any]:
    """Row counts of the APDB tables (for reports)."""
    from lsst.dax.apdb import ApdbTables

    out = {}
    for table in (ApdbTables.DiaObject, ApdbTables.DiaSource, ApdbTables.DiaForcedSource):
        try:
            out[table.name] = handle.apdb.tableRowCount().get(table.table_name(), None)
        except Exception:
            out[table.name] = None
    return json.loads(json.dumps(out, default=str))
