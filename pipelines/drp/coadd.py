"""Deep coadds of a release (``deep_coadd`` per skymap patch and band), built with prompt processing's coadder.

The skymap (one TAN tract, north up, at the visits' pixel scale) is designed around every
calibrated detector of the release with :func:`pachon.pipelines.prompt.skymap.design_skymap`
(skymap ``pachon_drp_<release>``, designed on the release's first run and stored as
``drp_skymap`` so re-runs reuse it; it never clashes with the template skymap), and each band's
visit images are combined per patch by :func:`pachon.pipelines.prompt.templates.coadd_patches`,
i.e. :func:`pachon.pipelines.prompt.coadd.coadd`: warped onto the patch, **PSF-matched** (each
input convolved to 1.02 × the worst input FWHM with a Gaussian kernel), inverse-variance
weighted, with per-pixel outlier rejection at 5σ against the stack median (transients, cosmic
rays, satellite trails). The coadd PSF is the matched Gaussian (``PSF_FWHM`` in the header).

Objects are **not** yet detected on these coadds (they come from multi-visit source association);
the coadds feed the 5σ depth metric and users' image access.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from pachon.core.image import MASK_PLANES, Exposure
from pachon.core.repo import DataRepository
from pachon.pipelines.drp.singlevisit import psf_from_dict
from pachon.pipelines.prompt.coadd import CoaddInput
from pachon.pipelines.prompt.skymap import SkyMap, design_skymap
from pachon.pipelines.prompt.templates import coadd_patches

__all__ = ["SKYMAP_NAME", "CoaddReport", "build_deep_coadds", "coadd_depth"]

SKYMAP_NAME = "pachon_drp"


@dataclass
class CoaddReport:
    skymap: str = SKYMAP_NAME
    patches: dict[str, list[int]] = field(default_factory=dict)
    depth: dict[str, float] = field(default_factory=dict)  # band → median 5σ PSF depth (AB mag)
    psf_fwhm_arcsec: dict[str, float] = field(default_factory=dict)
    patch_rows: list[dict[str, object]] = field(default_factory=list)  # DP1 CoaddPatches rows

    def coadd_patches_table(self) -> Table:
        """DP1 ``CoaddPatches``: tract, patch, centre and an ADQL/STC-S polygon of every patch with data."""
        names = ["lsst_tract", "lsst_patch", "s_ra", "s_dec", "s_region"]
        if not self.patch_rows:
            return Table(names=names, dtype=[np.int64, np.int64, float, float, str])
        return Table(rows=[[r[n] for n in names] for r in self.patch_rows], names=names)


def coadd_depth(image: Exposure) -> float:
    """Median 5σ point-source depth (AB mag) over the covered pixels: flux₅ = 5 √(4π σ²_PSF · var)."""
    var = np.asarray(image.variance, float) if image.variance is not None else None
    if var is None:
        return float("nan")
    covered = ((np.asarray(image.mask) & (1 << MASK_PLANES["NO_DATA"])) == 0) & np.isfinite(var) & (var > 0)
    if not covered.any():
        return float("nan")
    sigma = float(image.meta.get("PSF_FWHM", np.nan)) / 2.3548
    flux5 = 5.0 * np.sqrt(4 * np.pi * sigma**2 * np.median(var[covered]))
    return float(-2.5 * np.log10(flux5) + 31.4)


def build_deep_coadds(
    repo: DataRepository,
    run: str,
    quanta: list[tuple[int, int, str]],
    *,
    pixel_scale: float = 0.2,
    patch_size: int = 2048,
) -> CoaddReport:
    """Coadd every band of ``quanta`` ((visit, detector, band) with a ``visit_image`` in ``run``)."""
    report = CoaddReport()
    footprints = []
    for v, d, _ in quanta:
        image = repo.get("visit_image", visit=v, detector=d, collections=run)
        ny, nx = np.shape(image.data)
        footprints.append((image.wcs, (int(ny), int(nx))))
    # one skymap per release, designed on its first run and reused after (dimension records are immutable)
    name = f"{SKYMAP_NAME}_{run.rsplit('/', 1)[-1]}"
    if repo.has("drp_skymap", run=run):
        skymap = SkyMap(**repo.get("drp_skymap", collections=run))
    else:
        skymap = design_skymap(
            footprints, name=name, pixel_scale=pixel_scale, patch_size=patch_size, margin=50
        )
        skymap.register(repo)
        repo.put(dict(skymap.__dict__), "drp_skymap", run=run)
    report.skymap = skymap.name
    covered: set[int] = set()
    for band in sorted({b for _, _, b in quanta}):
        inputs = []
        for v, d, b in quanta:
            if b != band:
                continue
            image = repo.get("visit_image", visit=v, detector=d, collections=run)
            psf = psf_from_dict(repo.get("drp_psf", visit=v, detector=d, collections=run))
            inputs.append(CoaddInput(image, psf.fwhm, psf))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            made = coadd_patches(skymap, band, inputs)
        del inputs
        depths = []
        for patch_id, image in made:
            data_id = {"skymap": skymap.name, "tract": skymap.tract, "patch": patch_id, "band": band}
            if repo.has("deep_coadd", run=run, **data_id):
                ref = repo.butler.find_dataset("deep_coadd", data_id, collections=run)
                if ref is not None:
                    repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
            repo.put(image, "deep_coadd", run=run, **data_id)
            depths.append(coadd_depth(image))
            report.psf_fwhm_arcsec[band] = float(image.meta.get("PSF_FWHM", np.nan)) * pixel_scale
        report.patches[band] = [p for p, _ in made]
        covered.update(p for p, _ in made)
        finite = [x for x in depths if np.isfinite(x)]
        report.depth[band] = float(np.median(finite)) if finite else float("nan")
    for patch in skymap.patches():
        if patch.id not in covered:
            continue
        ra, dec = patch.corners()
        cra, cdec = patch.wcs.all_pix2world([(patch.nx - 1) / 2], [(patch.ny - 1) / 2], 0)
        poly = " ".join(f"{a:.7f} {d:.7f}" for a, d in zip(ra, dec, strict=True))
        report.patch_rows.append(
            {
                "lsst_tract": skymap.tract,
                "lsst_patch": patch.id,
                "s_ra": float(cra[0]),
                "s_dec": float(cdec[0]),
                "s_region": f"POLYGON ICRS {poly}",
            }
        )
    return report
