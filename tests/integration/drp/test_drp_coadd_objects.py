"""Objects detected and measured on the deep coadds of the ``tiny`` release, checked against truth.

Uses the session's release (``drp_release``, tests/fixtures/drp.py). ``tiny`` has 20 visits in
g, r, i over 4 detectors, so each band's coadd has only 6–8 visits; the bounds are looser than the
issue's ``small`` acceptance (completeness ≥ 90 % one magnitude above the 5σ depth) where the
statistics are thin, and the values measured when the tests were written are in the comments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from astropy.table import Table
from fixtures.drp import catalog_rows
from scipy.spatial import cKDTree

pytestmark = pytest.mark.slow

RUN = "Pachon/runs/dp1"


def _xyz(ra: Any, dec: Any) -> np.ndarray:
    r, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)])


@pytest.fixture(scope="module")
def products(drp_release: Any) -> dict[str, Any]:
    """Objects, truth (stars + galaxies) and which truth lies on a coadd patch's inner, covered area."""
    from pachon.core.repo import DataRepository

    repo = DataRepository.open(drp_release.path)
    butler = repo.butler
    objects = butler.get("drp_object_table", instrument="Pachon", collections=RUN)
    stars = butler.get("truth_stars", collections="Pachon/truth")
    gals = butler.get("truth_galaxies", collections="Pachon/truth")
    truth = Table(
        {
            "ra": np.r_[stars["ra"], gals["ra"]],
            "dec": np.r_[stars["dec"], gals["dec"]],
            "mag_r": np.r_[stars["mag_r"], gals["mag_r"]],
            "galaxy": np.r_[np.zeros(len(stars), bool), np.ones(len(gals), bool)],
            "pm": np.r_[np.hypot(stars["pm_ra"], stars["pm_dec"]), np.zeros(len(gals))],
        }
    )
    inside = np.zeros(len(truth), bool)
    refs = list(
        butler.query_datasets("deep_coadd", collections=RUN, find_first=True, explain=False, where="band='r'")
    )
    for ref in refs:
        image = butler.get(ref)
        border = int(image.meta["BORDER"])
        ny, nx = np.shape(image.data)
        x, y = image.wcs.all_world2pix(truth["ra"], truth["dec"], 0)
        ok = (x >= border + 10) & (x < nx - border - 10) & (y >= border + 10) & (y < ny - border - 10)
        xi = np.clip(np.round(x).astype(int), 0, nx - 1)
        yi = np.clip(np.round(y).astype(int), 0, ny - 1)
        inside |= ok & (np.asarray(image.mask)[yi, xi] == 0)
    truth["inside"] = inside
    return {"repo": repo, "objects": objects, "truth": truth, "report": drp_release.report}


def _match(objects: Table, truth: Table, radius_arcsec: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(truth → object index or −1, object → truth index or −1), nearest within the radius."""
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    ovec, tvec = _xyz(objects["coord_ra"], objects["coord_dec"]), _xyz(truth["ra"], truth["dec"])
    d1, j1 = cKDTree(ovec).query(tvec, distance_upper_bound=chord)
    d2, j2 = cKDTree(tvec).query(ovec, distance_upper_bound=chord)
    return np.where(np.isfinite(d1), j1, -1), np.where(np.isfinite(d2), j2, -1)


def test_objects_come_from_coadd_detection(products: dict[str, Any]) -> None:
    objects, report = products["objects"], products["report"]
    assert report.patches_measured + report.patches_skipped >= 2
    assert report.n_objects == len(objects) > 300  # measured 448
    ids = np.asarray(objects["objectId"], np.int64)
    assert len(np.unique(ids)) == len(ids) and np.all(np.diff(ids) > 0)
    assert set(np.asarray(objects["tract"]).tolist()) == {0}
    assert len(set(np.asarray(objects["patch"]).tolist())) >= 2
    # every row was measured in every band on the coadds, with the schema's columns
    for band in "gri":
        for col in ("psfFlux", "cModelFlux", "kronFlux", "ap12Flux", "ixx", "extendedness", "epoch"):
            assert f"{band}_{col}" in objects.colnames
        assert np.isfinite(np.asarray(objects[f"{band}_psfFlux"], float)).mean() > 0.95, report.failures
        assert np.isfinite(np.asarray(objects[f"{band}_cModelFlux"], float)).mean() > 0.9
    assert set(np.asarray(objects["refBand"]).astype(str)) == {"r"}
    blended = np.asarray(objects["detect_fromBlend"], bool)
    assert np.all(np.asarray(objects["parentObjectId"])[blended] > 0)
    assert np.all(np.asarray(objects["parentObjectId"])[~blended] == 0)
    assert blended.sum() >= 2  # measured 15 deblended children
    assert np.isfinite(np.asarray(objects["shape_xx"], float)).mean() > 0.9
    # the astrometric solution joined onto the coadd Objects (bright stars all have it)
    # (most; the coadds reach ~1 mag below the single visits, whose faint Objects have too few
    # single-visit detections for a fit: measured 458 of 791, 420 of 448 with 0.9 mag shallower coadds)
    assert report.n_objects_with_astrometry > 0.5 * report.n_objects
    assert np.isfinite(np.asarray(objects["pmRa"], float)).sum() > 150


def test_completeness_one_magnitude_above_depth(products: dict[str, Any]) -> None:
    """Truth sources on the coadds (r band) one magnitude above the r coadd's 5σ depth are found."""
    objects, truth, report = products["objects"], products["truth"], products["report"]
    depth = report.coadd_depth["r"]
    assert 23.5 < depth < 25.0  # measured 24.55 (23.65 before the sky-flat correction)
    t2o, o2t = _match(objects, truth, 0.5)
    sel = truth["inside"] & (truth["mag_r"] >= depth - 1.25) & (truth["mag_r"] < depth - 0.75)
    completeness = float((t2o[sel] >= 0).mean())
    assert sel.sum() > 40
    assert completeness >= 0.85, (completeness, int(sel.sum()))  # measured 0.94 (issue: ≥ 0.9 on small)
    bright = truth["inside"] & (truth["mag_r"] < depth - 2)
    assert (t2o[bright] >= 0).mean() >= 0.95  # measured 0.99
    # below the depth the detections must stop (the sky model ends at r = 25.5, so look 0.75 mag down)
    faint = truth["inside"] & (truth["mag_r"] > depth + 0.75)
    assert faint.sum() >= 10
    assert (t2o[faint] >= 0).mean() < 0.4
    # purity: Objects brighter than the depth have a truth counterpart within 0.5″
    rmag = -2.5 * np.log10(np.asarray(objects["r_psfFlux"], float)) + 31.4
    real = rmag < depth - 0.5
    assert (o2t[real] >= 0).mean() >= 0.9  # measured 0.99


def test_star_galaxy_separation_and_photometry(products: dict[str, Any]) -> None:
    objects, truth = products["objects"], products["truth"]
    _, o2t = _match(objects, truth, 0.5)
    m = o2t >= 0
    t = truth[o2t[m]]
    ext = np.asarray(objects["refExtendedness"], float)[m] > 0.5
    bright = np.asarray(t["mag_r"]) < 22.0
    accuracy = float((ext[bright] == np.asarray(t["galaxy"])[bright]).mean())
    assert accuracy >= 0.85, accuracy  # measured 0.93 (0.85 to r = 23)
    star = ~np.asarray(t["galaxy"]) & (np.asarray(t["mag_r"]) > 17) & (np.asarray(t["mag_r"]) < 21)
    psf_mag = -2.5 * np.log10(np.asarray(objects["r_psfFlux"], float)[m]) + 31.4
    assert abs(np.nanmedian(psf_mag[star] - np.asarray(t["mag_r"])[star])) < 0.03  # measured 0.004
    cm_mag = -2.5 * np.log10(np.asarray(objects["r_cModelFlux"], float)[m]) + 31.4
    gal = np.asarray(t["galaxy"]) & (np.asarray(t["mag_r"]) < 22)
    assert abs(np.nanmedian(cm_mag[gal] - np.asarray(t["mag_r"])[gal])) < 0.1  # measured −0.01
    # PSF-flux errors describe the scatter of faint stars about the truth (noise factor applied)
    faint = ~np.asarray(t["galaxy"]) & (np.asarray(t["mag_r"]) > 21.5)
    true_flux = 10 ** (-0.4 * (np.asarray(t["mag_r"])[faint] - 31.4))
    pull = (np.asarray(objects["r_psfFlux"], float)[m][faint] - true_flux) / np.asarray(
        objects["r_psfFluxErr"], float
    )[m][faint]
    spread = 1.4826 * float(np.nanmedian(np.abs(pull - np.nanmedian(pull))))
    assert 0.6 < spread < 1.6, spread  # measured 1.08


def test_forced_sources_at_the_coadd_objects(products: dict[str, Any]) -> None:
    from pachon.core.repo import DataRepository

    objects, report = products["objects"], products["report"]
    repo: DataRepository = products["repo"]
    forced = repo.butler.get("drp_forced_source_table", instrument="Pachon", collections=RUN)
    assert set(np.unique(np.asarray(forced["objectId"]))) <= set(np.asarray(objects["objectId"]).tolist())
    assert len(forced) == report.n_forced > 10 * len(objects)
    for col in ("tract", "patch", "parentObjectId"):
        assert col in forced.colnames
    # a bright isolated star's forced fluxes scatter around its coadd flux
    r = np.asarray(objects["r_psfFlux"], float)
    iso = np.asarray(objects["detect_isIsolated"], bool) & (np.asarray(objects["refExtendedness"]) == 0)
    in_r = np.asarray(forced["band"]).astype(str) == "r"
    counts = dict(zip(*np.unique(np.asarray(forced["objectId"])[in_r], return_counts=True), strict=True))
    candidates = np.flatnonzero(iso & (r > 2e4) & (r < 1e5))
    pick = max(candidates, key=lambda i: counts.get(int(objects["objectId"][i]), 0))
    oid = int(objects["objectId"][pick])
    mine = forced[(np.asarray(forced["objectId"]) == oid) & in_r]
    assert len(mine) >= 4
    assert abs(np.median(np.asarray(mine["psfFlux"])) / r[pick] - 1) < 0.05


def test_rerun_skips_every_quantum_and_is_idempotent(products: dict[str, Any], drp_release: Any) -> None:
    """A second run re-uses every quantum; a patch whose measurement is lost is redone alone."""
    from pachon.core.repo import DataRepository
    from pachon.pipelines.drp import run_release

    repo = DataRepository.open(drp_release.path, writeable=True)
    first = products["report"]
    refs = list(
        repo.butler.query_datasets("drp_coadd_objects", collections=RUN, find_first=True, explain=False)
    )
    lost = refs[0]
    repo.butler.pruneDatasets([lost], disassociate=True, unstore=True, purge=True)  # an interrupted patch
    report = run_release(drp_release.path, "dp1", workers=1, show_progress=False, compute_metrics=False)
    assert report.processed == 0 and report.skipped == first.processed + first.skipped
    assert report.coadds_built == 0 and report.coadds_skipped == first.coadds_built + first.coadds_skipped
    assert report.patches_measured == 1 and report.patches_skipped == len(refs) - 1
    assert report.n_objects == first.n_objects and report.n_forced == first.n_forced
    objects = repo.butler.get("drp_object_table", instrument="Pachon", collections=RUN)
    assert np.array_equal(np.asarray(objects["objectId"]), np.asarray(products["objects"]["objectId"]))
    assert catalog_rows(report.catalog_url, "SELECT COUNT(*) FROM dp1.Object")[0][0] == first.n_objects
    assert catalog_rows(report.catalog_url, "SELECT COUNT(*) FROM dp1.ForcedSource")[0][0] == first.n_forced


def test_catalog_serves_coadd_columns(products: dict[str, Any]) -> None:
    rows = catalog_rows(
        products["report"].catalog_url,
        "SELECT TOP 3 o.objectId, o.tract, o.patch, o.r_cModelFlux, o.r_kronFlux, o.shape_xx, "
        "o.refExtendedness, COUNT(*) AS n FROM dp1.Object AS o JOIN dp1.ForcedSource AS f "
        "ON f.objectId = o.objectId WHERE o.r_psfFlux > 20000 "
        "GROUP BY o.objectId, o.tract, o.patch, o.r_cModelFlux, o.r_kronFlux, o.shape_xx, o.refExtendedness "
        "ORDER BY n DESC",
    )
    assert len(rows) == 3
    for _oid, tract, patch, cm, kron, sxx, _ext, n in rows:
        assert tract == 0 and patch >= 0 and cm > 0 and kron > 0 and sxx > 0 and n >= 10
    prov = dict(catalog_rows(products["report"].catalog_url, "SELECT key, value FROM dp1.Provenance"))
    assert "coadd" in prov["objects_from"]
