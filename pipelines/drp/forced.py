"""Forced PSF photometry of every Object on every visit image (DP1 ``ForcedSource``).

Each Object's position is propagated to the visit's epoch with its fitted proper motion and
parallax, mapped to pixels with the visit's fitted WCS, and its flux fitted linearly with the
PSF model fitted on that detector-visit (stored as ``drp_psf``) — so faint Objects get a
measurement (possibly negative) in visits where they were not detected, which is what light
curves need. The Objects are the coadd detections (:mod:`pachon.pipelines.drp.objects`); the
children of one deblended parent are fitted simultaneously
(:func:`~pachon.pipelines.drp.measure_coadd.joint_psf_fluxes`), so a close pair's light is not
counted twice. The fit weights pixels uniformly (errors still from the variance plane), as the
single-visit ``Source`` PSF fluxes are fitted: inverse-variance weights that include a star's own
Poisson noise turn PSF-model errors into brightness-dependent flux errors, which the aperture
correction (fitted to uniform-weight fluxes) does not remove.

The fluxes get the detector-visit's **aperture correction** (:mod:`pachon.pipelines.prompt.apcorr`,
read back from the visit image's ``APCORR*`` header), as the single-visit ``Source`` fluxes did:
the PSF model's width errors vary across the detector, and without it ForcedSource fluxes keep
those gradients (the zero point and the ubercal star flat are fitted to corrected Source fluxes,
so they do not remove them). Detector-visits without a correction are left as fitted.
"""

from __future__ import annotations

import time

import numpy as np
from astropy.table import Table
from scipy import ndimage

from pachon.pipelines.drp.measure_coadd import joint_psf_fluxes
from pachon.pipelines.drp.multivisit import MAS_PER_DEG, parallax_factors
from pachon.pipelines.drp.singlevisit import psf_from_dict
from pachon.pipelines.prompt.apcorr import apcorr_from_header
from pachon.pipelines.prompt.characterize import BAD_BITS, plane_bits
from pachon.pipelines.prompt.pipeline import open_repo

__all__ = ["forced_quantum", "positions_at"]


def positions_at(
    objects: dict[str, np.ndarray], mjd: float, ref_epoch_mjd: float
) -> tuple[np.ndarray, np.ndarray]:
    """Apparent (ra, dec) in deg of Objects at ``mjd`` from their 5-parameter astrometry."""
    ra0, dec0 = objects["coord_ra"], objects["coord_dec"]
    dt = (mjd - ref_epoch_mjd) / 365.25
    pa, pd = parallax_factors(ra0, dec0, np.full(len(ra0), mjd))
    plx = np.nan_to_num(objects["parallax"])
    dxi = np.nan_to_num(objects["pmRa"]) * dt + plx * pa
    deta = np.nan_to_num(objects["pmDec"]) * dt + plx * pd
    return ra0 + dxi / MAS_PER_DEG / np.cos(np.radians(dec0)), dec0 + deta / MAS_PER_DEG


def _planes_near(mask: np.ndarray, ix: np.ndarray, iy: np.ndarray, radius: int) -> dict[str, np.ndarray]:
    """For each pixel (ix, iy): whether a SAT, CR or BAD pixel lies within ``radius`` (a square box).

    DP1's ``pixelFlags_saturated`` etc. mean "anywhere in the footprint"; for forced photometry the
    footprint is the PSF fit's region (2 FWHM). The ``*Center`` flags miss what matters here: a
    saturated star shredded by the coadd deblender (its masked core leaves a ring of peaks) has
    children a few pixels off the saturated core, whose fits then trade flux from visit to visit.
    """
    size = 2 * radius + 1
    out = {}
    for name in ("SAT", "CR", "BAD"):
        plane = (mask & plane_bits(name)) != 0
        if plane.any():
            out[name] = ndimage.maximum_filter(plane.view(np.uint8), size=size, mode="constant")[iy, ix] > 0
        else:
            out[name] = np.zeros(len(ix), bool)
    return out


def forced_quantum(
    repo_path: str,
    run: str,
    visit: int,
    detector: int,
    mjd: float,
    band: str,
    objects: dict[str, np.ndarray],
    ref_epoch_mjd: float,
) -> tuple[int, int, Table | str, float]:
    """Forced photometry on one detector-visit: (visit, detector, table or failure reason, seconds)."""
    t0 = time.perf_counter()
    try:
        repo = open_repo(repo_path)
        image = repo.get("visit_image", visit=visit, detector=detector, collections=run)
        psf = psf_from_dict(repo.get("drp_psf", visit=visit, detector=detector, collections=run))
        ra, dec = positions_at(objects, mjd, ref_epoch_mjd)
        assert image.wcs is not None
        x, y = image.wcs.all_world2pix(ra, dec, 0)
        ny, nx = np.shape(image.data)
        on = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
        mask = np.asarray(image.mask)
        bad = (mask & BAD_BITS) != 0
        data = np.asarray(image.data, float)
        var = np.asarray(image.variance, float) if image.variance is not None else np.full_like(data, np.nan)
        oid = np.asarray(objects["objectId"], np.int64)
        parent = np.asarray(objects.get("parentObjectId", np.zeros(len(oid), np.int64)), np.int64)
        groups = np.where(parent > 0, parent, oid)[on]
        flux, flux_err, masked = joint_psf_fluxes(
            data, var, bad, psf, x[on], y[on], groups, pixel_weights=False
        )
        apcorr = apcorr_from_header(image.meta)
        if apcorr is not None:
            corr = apcorr(x[on], y[on])
            flux, flux_err = flux * corr, flux_err * np.abs(corr)
        ix = np.clip(np.round(x[on]).astype(int), 0, nx - 1)
        iy = np.clip(np.round(y[on]).astype(int), 0, ny - 1)
        centre = mask[iy, ix]
        near = _planes_near(mask, ix, iy, int(np.ceil(max(2.0 * psf.fwhm, 3.0))))
        n = int(on.sum())
        out = Table(
            {
                "objectId": np.asarray(objects["objectId"])[on],
                "coord_ra": ra[on],
                "coord_dec": dec[on],
                "visit": np.full(n, visit, np.int64),
                "detector": np.full(n, detector, np.int64),
                "band": np.full(n, band),
                "psfFlux": flux,
                "psfFluxErr": flux_err,
                "psfFlux_flag": ~np.isfinite(flux) | (masked > 0.2),
                "pixelFlags_saturated": near["SAT"],
                "pixelFlags_saturatedCenter": (centre & plane_bits("SAT")) != 0,
                "pixelFlags_cr": near["CR"],
                "pixelFlags_crCenter": (centre & plane_bits("CR")) != 0,
                "pixelFlags_bad": near["BAD"],
                "pixelFlags_edge": (centre & plane_bits("EDGE")) != 0,
                "midpointMjdTai": np.full(n, mjd),
            }
        )
        out["x"], out["y"] = x[on], y[on]  # for the star flat; dropped by the driver
        for name in ("parentObjectId", "tract", "patch"):
            if name in objects:
                out[name] = np.asarray(objects[name], np.int64)[on]
        return visit, detector, out, time.perf_counter() - t0
    except Exception as exc:  # recorded by the driver; the release goes on
        return visit, detector, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0
