"""Template building: per-band coadds of the best-seeing early visits, stored per patch.

``build_templates`` chooses, per band, the ``max_visits`` visits with the best seeing (the header's
``SEEING``, what the observatory's seeing monitor reported) among the first ``early_fraction`` of
that band's visits in time, calibrates each of their detectors with the same single-visit steps as
prompt processing, and coadds them per patch (:func:`pachon.pipelines.prompt.coadd.coadd`: warped,
PSF-matched, inverse-variance weighted). :func:`template_for_detector` cuts and warps the template
onto one detector's grid for subtraction.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from pachon.core.image import MASK_PLANES, Exposure
from pachon.core.repo import COLLECTIONS, DataRepository
from pachon.pipelines.prompt.coadd import CoaddInput, coadd
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.skymap import Patch, SkyMap, design_skymap
from pachon.pipelines.prompt.warp import warp_exposure

__all__ = [
    "MissingTemplateError",
    "TemplateReport",
    "choose_template_visits",
    "load_template_patches",
    "load_template_refs",
    "patches_overlapping",
    "stored_skymap",
    "template_for_detector",
]


class MissingTemplateError(RuntimeError):
    """No template covers this detector in this band; run ``pachon prompt templates`` first."""


@dataclass
class TemplateReport:
    """What ``build_templates`` did."""

    skymap: str
    visits: dict[str, list[int]] = field(default_factory=dict)
    patches: dict[str, list[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def choose_template_visits(exposures: list[dict[str, Any]], config: PromptConfig) -> dict[str, list[int]]:
    """Per band: the best-seeing visits among the early ones (``exposures`` rows: id, band, mjd, seeing)."""
    out: dict[str, list[int]] = {}
    by_band: dict[str, list[dict[str, Any]]] = {}
    for e in exposures:
        by_band.setdefault(e["band"], []).append(e)
    for band, rows in sorted(by_band.items()):
        rows = sorted(rows, key=lambda r: r["mjd"])
        n_early = max(1, int(np.ceil(config.template.early_fraction * len(rows))))
        early = sorted(rows[:n_early], key=lambda r: r["seeing"])
        # PSF matching degrades every input to the worst one's seeing: skip inputs much worse than the best
        best = early[0]["seeing"]
        good = [r for r in early if r["seeing"] <= config.template.max_seeing_ratio * best]
        out[band] = sorted(r["id"] for r in good[: config.template.max_visits])
    return out


def load_template_refs(repo: DataRepository, band: str, skymap: str) -> list[Any]:
    """The dataset refs of a band's template patches (data IDs carry the patch; no pixels read)."""
    return list(
        repo.butler.registry.queryDatasets(
            "template_coadd",
            collections=COLLECTIONS["templates"],
            where="band = b AND skymap = s",
            bind={"b": band, "s": skymap},
        )
    )


def load_template_patches(repo: DataRepository, band: str, skymap: str) -> list[Exposure]:
    """Every template patch of a band (each carries its tract offset in PATCHX0/PATCHY0)."""
    return [repo.butler.get(ref) for ref in load_template_refs(repo, band, skymap)]


def stored_skymap(repo: DataRepository, name: str) -> SkyMap | None:
    """The sky map ``build_templates`` stored (``prompt_skymap``) if it is ``name``, else None."""
    try:
        if not repo.has("prompt_skymap", run=COLLECTIONS["templates"]):
            return None
        stored = dict(repo.get("prompt_skymap", collections=COLLECTIONS["templates"]))["skymap"]
        skymap = SkyMap(**stored)
    except Exception:  # an older or foreign layout: callers fall back to every patch
        return None
    return skymap if skymap.name == name else None


def patches_overlapping(skymap: SkyMap, wcs: WCS, shape: tuple[int, int], pad: int = 48) -> set[int]:
    """Ids of the patches that a detector of ``shape`` on ``wcs`` (plus ``pad`` pixels) touches.

    A detector needs only these to cut its template: loading every patch of a band instead cost a
    worker 2 GB per band on the ``small`` preset (42 patches of 2k×2k), 8 GB with four bands cached.
    """
    ny, nx = shape
    edge = np.linspace(0, 1, 9)
    xs = np.concatenate([edge * (nx - 1), np.full(9, nx - 1.0), edge * (nx - 1), np.zeros(9)])
    ys = np.concatenate([np.zeros(9), edge * (ny - 1), np.full(9, ny - 1.0), edge * (ny - 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.all_pix2world(xs, ys, 0)
        tx, ty = skymap.tract_wcs().all_world2pix(ra, dec, 0, quiet=True)
    x0, x1 = float(np.min(tx)) - pad, float(np.max(tx)) + pad
    y0, y1 = float(np.min(ty)) - pad, float(np.max(ty)) + pad
    return {
        p.id for p in skymap.patches() if p.x0 < x1 and p.x0 + p.nx > x0 and p.y0 < y1 and p.y0 + p.ny > y0
    }


def template_for_detector(patches: list[Exposure], wcs: WCS, shape: tuple[int, int]) -> Exposure:
    """The template warped onto a detector: stitch the patches it touches, then resample once."""
    if not patches:
        raise MissingTemplateError("no template patches in this band; run `pachon prompt templates`")
    ny, nx = shape
    xs = np.array([0, nx - 1, nx - 1, 0, nx / 2], dtype=float)
    ys = np.array([0, 0, ny - 1, ny - 1, ny / 2], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = wcs.all_pix2world(xs, ys, 0)
    # positions in tract pixels (every patch's WCS is the tract's, shifted)
    first = patches[0]
    tract_wcs = first.wcs.deepcopy()
    tract_wcs.wcs.crpix = tract_wcs.wcs.crpix + np.array([first.meta["PATCHX0"], first.meta["PATCHY0"]])
    tract_wcs.wcs.set()
    tx, ty = tract_wcs.all_world2pix(ra, dec, 0, quiet=True)
    pad = 40
    x0, x1 = int(np.floor(tx.min())) - pad, int(np.ceil(tx.max())) + pad
    y0, y1 = int(np.floor(ty.min())) - pad, int(np.ceil(ty.max())) + pad
    image = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    variance = np.zeros_like(image)
    mask = np.full(image.shape, 1 << MASK_PLANES["NO_DATA"], dtype=np.int32)
    covered = False
    fwhm = 0.0
    for p in patches:
        px0, py0 = int(p.meta["PATCHX0"]), int(p.meta["PATCHY0"])
        pny, pnx = np.shape(p.data)
        ix0, ix1 = max(x0, px0), min(x1, px0 + pnx)
        iy0, iy1 = max(y0, py0), min(y1, py0 + pny)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        covered = True
        fwhm = max(fwhm, float(p.meta.get("PSF_FWHM", 0.0)))
        dst = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
        src = (slice(iy0 - py0, iy1 - py0), slice(ix0 - px0, ix1 - px0))
        image[dst] = np.asarray(p.data)[src]
        variance[dst] = np.asarray(p.variance)[src]
        mask[dst] = np.asarray(p.mask)[src]
    if not covered:
        raise MissingTemplateError("the band's template does not overlap this detector")
    sub_wcs = tract_wcs.deepcopy()
    sub_wcs.wcs.crpix = tract_wcs.wcs.crpix - np.array([x0, y0])
    sub_wcs.wcs.set()
    stitched = Exposure(image, unit="nJy", mask=mask, wcs=sub_wcs, meta=fits.Header({"PSF_FWHM": fwhm}))
    stitched.variance = variance
    warped = warp_exposure(stitched, wcs, shape)
    if ((np.asarray(warped.mask) & (1 << MASK_PLANES["NO_DATA"])) != 0).mean() > 0.5:
        raise MissingTemplateError("the template covers less than half of this detector")
    return warped


@dataclass
class SpilledInput:
    """A calibrated template input that a worker wrote to scratch: only its footprint travels.

    Template building used to send every calibrated detector-visit (50 MB for a 2k×2k detector,
    image + variance + mask) back to the parent process, which held a band's 36 of them plus the 42
    coadded patches it was about to write (another 2 GB) — 4–7 GB on the ``small`` preset. Now the
    worker that calibrates a detector writes its planes to ``path`` (``.npy``, memory-mapped on
    reading) and returns this handle; the per-patch coadds run on the workers too and read only the
    inputs overlapping their patch.
    """

    path: str
    fwhm: float
    wcs: WCS
    shape: tuple[int, int]

    def load(self) -> CoaddInput:
        """The input back as a :class:`CoaddInput` whose planes are read-only memory maps."""
        from astropy.nddata import VarianceUncertainty

        root = Path(self.path)
        with open(root / "rest.pkl", "rb") as fh:
            rest = pickle.load(fh)
        exposure = Exposure(
            np.load(root / "data.npy", mmap_mode="r"),
            unit=rest["unit"],
            mask=np.load(root / "mask.npy", mmap_mode="r"),
            wcs=self.wcs,
            meta=rest["meta"],
        )
        if (root / "variance.npy").exists():
            exposure.uncertainty = VarianceUncertainty(
                np.load(root / "variance.npy", mmap_mode="r"), copy=False
            )
        return CoaddInput(exposure, self.fwhm, rest["psf"])


def spill_input(item: CoaddInput, path: str | Path) -> SpilledInput:
    """Write ``item``'s planes under ``path`` (a new directory) and return the light handle to them."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    exposure = item.exposure
    np.save(root / "data.npy", np.asarray(exposure.data))
    np.save(root / "mask.npy", np.asarray(exposure.mask))
    if exposure.variance is not None:
        np.save(root / "variance.npy", np.asarray(exposure.variance))
    with open(root / "rest.pkl", "wb") as fh:
        pickle.dump({"unit": str(exposure.unit), "meta": exposure.meta, "psf": item.psf}, fh)
    ny, nx = np.shape(exposure.data)
    return SpilledInput(str(root), float(item.fwhm), exposure.wcs, (int(ny), int(nx)))


def _footprint(item: CoaddInput | SpilledInput) -> tuple[WCS, tuple[int, int]]:
    if isinstance(item, SpilledInput):
        return item.wcs, item.shape
    ny, nx = np.shape(item.exposure.data)
    return item.exposure.wcs, (int(ny), int(nx))


def plan_patches(
    skymap: SkyMap, inputs: list[CoaddInput | SpilledInput]
) -> list[tuple[Patch, list[CoaddInput | SpilledInput]]]:
    """Every patch that some input overlaps, with the inputs overlapping it (from footprints only)."""
    out = []
    for patch in skymap.patches():
        touching = []
        for item in inputs:
            w, (ny, nx) = _footprint(item)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                px, py = patch.wcs.all_world2pix(
                    *w.all_pix2world([0, nx - 1, nx - 1, 0], [0, 0, ny - 1, ny - 1], 0), 0
                )
            if px.max() < 0 or px.min() > patch.nx or py.max() < 0 or py.min() > patch.ny:
                continue
            touching.append(item)
        if touching:
            out.append((patch, touching))
    return out


def coadd_patch(
    patch: Patch, band: str, skymap_name: str, inputs: list[CoaddInput | SpilledInput]
) -> tuple[int, Exposure]:
    """One patch's template from the inputs overlapping it (a task for a worker process)."""
    loaded = [i.load() if isinstance(i, SpilledInput) else i for i in inputs]
    tmpl = coadd(loaded, patch.wcs, (patch.ny, patch.nx))
    tmpl.meta["PATCHX0"] = (patch.x0, "patch origin in tract pixels (x)")
    tmpl.meta["PATCHY0"] = (patch.y0, "patch origin in tract pixels (y)")
    tmpl.meta["BAND"] = band
    tmpl.meta["SKYMAP"] = skymap_name
    return patch.id, tmpl


def coadd_patches(skymap: SkyMap, band: str, inputs: list[CoaddInput]) -> list[tuple[int, Exposure]]:
    """Coadd in-memory ``inputs`` onto every patch they overlap; returns (patch id, template) pairs."""
    return [
        coadd_patch(patch, band, skymap.name, touching)
        for patch, touching in plan_patches(skymap, list(inputs))
    ]


__all__ += ["SpilledInput", "coadd_patch", "coadd_patches", "design_skymap", "plan_patches", "spill_input"]
