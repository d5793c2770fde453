"""Objects of a release from its deep coadds: per-patch detection/measurement quanta and the astrometry join.

:func:`measure_quantum` is the unit of parallel work (one patch, all bands): it reads the
patch's ``deep_coadd`` and ``drp_coadd_psf`` of every band and runs
:func:`pachon.pipelines.drp.measure_coadd.measure_patch`; the driver stores the result as
``drp_coadd_objects`` with the digest of its inputs, so a re-run skips patches whose coadds did
not change.

:func:`join_astrometry` attaches the global astrometric solution of multi-visit matched stars
(:func:`pachon.pipelines.drp.multivisit.fit_astrometry_global`: position at J2016.0, proper
motion, parallax, covariances, χ²) to the coadd Objects: each fitted star is propagated to the
coadds' mean epoch and matched to the nearest coadd Object within ``radius`` (mutual nearest
neighbours, so one star ↔ one Object).

Object IDs are deterministic: ``OBJECT_ID_BASE + patch·10⁶ + label`` with ``label`` the
deblended child's segmentation label on the patch (parents: ``+ 500000 + parent label``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
from astropy.table import Table
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from pachon.pipelines.drp.forced import positions_at
from pachon.pipelines.drp.measure_coadd import measure_patch
from pachon.pipelines.drp.multivisit import AstrometricSolution, unit_vectors
from pachon.pipelines.drp.singlevisit import psf_from_dict
from pachon.pipelines.drp.tables import OBJECT_ID_BASE

__all__ = ["PATCH_ID_STRIDE", "join_astrometry", "measure_digest", "measure_quantum", "object_ids"]

PATCH_ID_STRIDE = 10**6
PARENT_OFFSET = 500_000


def object_ids(patch: NDArray[np.int64], label: NDArray[np.int64]) -> NDArray[np.int64]:
    """Deterministic objectId of deblended child ``label`` of ``patch``."""
    return OBJECT_ID_BASE + np.asarray(patch, np.int64) * PATCH_ID_STRIDE + np.asarray(label, np.int64)


def measure_digest(band_digests: dict[str, str], settings: dict[str, Any]) -> str:
    """Digest of a patch's measurement inputs (its coadds' digests and the detection settings)."""
    payload = repr(sorted(band_digests.items())) + repr(sorted(settings.items()))
    return hashlib.sha1(payload.encode()).hexdigest()


def measure_quantum(
    repo_path: str,
    run: str,
    skymap_name: str,
    tract: int,
    patch: int,
    bands: list[str],
    settings: dict[str, Any],
) -> tuple[int, Table | str, float]:
    """Detect and measure one patch (all ``bands``); never writes. Returns (patch, table or reason, s)."""
    from pachon.pipelines.prompt.pipeline import open_repo

    t0 = time.perf_counter()
    try:
        repo = open_repo(repo_path)
        coadds = {}
        meta: dict[str, Any] = {}
        for band in bands:
            data_id = {"skymap": skymap_name, "tract": tract, "patch": patch, "band": band}
            image = repo.get("deep_coadd", collections=run, **data_id)
            info = repo.get("drp_coadd_psf", collections=run, **data_id)
            coadds[band] = (image, psf_from_dict(info["psf"]), float(info["epoch"]))
            meta = image.meta
        x0, y0, border = int(meta["PATCHX0"]), int(meta["PATCHY0"]), int(meta["BORDER"])
        first = coadds[bands[0]][0]
        ny, nx = np.shape(first.data)
        res = measure_patch(
            coadds,
            ref_band=str(settings["ref_band"]),
            inner=(border, nx - border, border, ny - border),
            threshold=float(settings["threshold"]),
            min_area=int(settings["min_area"]),
            deblend_cont=float(settings["deblend_cont"]),
        )
        t = res.table
        n = len(t)
        ra, dec = first.wcs.all_pix2world(np.asarray(t["det_x"], float), np.asarray(t["det_y"], float), 0)
        label = np.asarray(t["det_id"], np.int64)
        parent = np.asarray(t["det_parent"], np.int64)
        blended = np.asarray(t["det_nChild"], np.int64) > 1
        t["objectId"] = object_ids(np.full(n, patch), label)
        t["parentObjectId"] = np.where(
            blended, OBJECT_ID_BASE + patch * PATCH_ID_STRIDE + PARENT_OFFSET + parent, 0
        ).astype(np.int64)
        t["coord_ra"] = np.asarray(ra, float) % 360
        t["coord_dec"] = np.asarray(dec, float)
        t["tract"] = np.full(n, tract, np.int64)
        t["patch"] = np.full(n, patch, np.int64)
        t["x"] = np.asarray(t["det_x"], float) + x0  # tract pixels
        t["y"] = np.asarray(t["det_y"], float) + y0
        scale = float(np.sqrt(abs(np.linalg.det(first.wcs.pixel_scale_matrix))))
        t.meta["pixel_scale_deg"] = scale
        t.meta["depth"] = dict(res.depth)
        t.meta["noise_factor"] = dict(res.noise_factor)
        t.meta["ref_band"] = res.table.meta.get("ref_band", settings["ref_band"])
        t.meta["seconds"] = res.seconds
        return patch, t, time.perf_counter() - t0
    except Exception as exc:  # recorded by the driver; the release goes on without this patch
        return patch, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0


def join_astrometry(
    ra: np.ndarray,
    dec: np.ndarray,
    astro: AstrometricSolution,
    epoch_mjd: float,
    ref_epoch_mjd: float,
    *,
    radius_arcsec: float = 1.0,
) -> NDArray[np.int64]:
    """For every coadd Object, the index of its multi-visit star in ``astro`` (−1: none); one-to-one."""
    n = len(ra)
    out = np.full(n, -1, np.int64)
    if n == 0 or len(astro.ra) == 0:
        return out
    motion = {
        "coord_ra": astro.ra,
        "coord_dec": astro.dec,
        "pmRa": np.where(astro.fitted_motion, astro.params[:, 2], 0.0),
        "pmDec": np.where(astro.fitted_motion, astro.params[:, 3], 0.0),
        "parallax": np.where(astro.fitted_motion, astro.params[:, 4], 0.0),
    }
    sra, sdec = positions_at(motion, epoch_mjd, ref_epoch_mjd)
    ovec = unit_vectors(np.asarray(ra, float), np.asarray(dec, float))
    svec = unit_vectors(sra, sdec)
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    d_os, j_os = cKDTree(svec).query(ovec, distance_upper_bound=chord)
    d_so, j_so = cKDTree(ovec).query(svec, distance_upper_bound=chord)
    ok = np.isfinite(d_os)
    idx = np.flatnonzero(ok)
    mutual = j_so[j_os[idx]] == idx
    out[idx[mutual]] = j_os[idx[mutual]]
    del d_so
    return out
