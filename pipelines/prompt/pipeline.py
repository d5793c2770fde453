"""Prompt processing of a data repository: per-detector steps fanned out, visit-level association.

:func:`process_detector` is the unit of parallel work (one detector of one visit: calibrate,
subtract the template, detect and score DIA sources); it reads from the repo but never writes, so
a failure leaves nothing half-written and the caller records the reason. :class:`PromptRunner`
runs visits: detectors on a Dask ``LocalCluster`` (one single-threaded worker process per core),
then in the parent process writes each successful detector's products all at once
(``visit_image``, ``source``, ``difference_image``, ``dia_source`` in ``Pachon/prompt/<day_obs>``),
associates the visit's DiaSources in the APDB, makes alerts, and stores a per-visit summary
(``prompt_visit_summary``: per-step timings, failures with reasons, quality figures).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from astropy.time import Time

from pachon.core.image import Exposure
from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.prompt.calibrate import calibrate_detector
from pachon.pipelines.prompt.coadd import CoaddInput
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.dia import detect_dia_sources
from pachon.pipelines.prompt.ids import ccd_visit_id, pack_ids
from pachon.pipelines.prompt.psf import PsfModel
from pachon.pipelines.prompt.realbogus import RealBogusModel
from pachon.pipelines.prompt.skymap import design_skymap
from pachon.pipelines.prompt.subtract import subtract
from pachon.pipelines.prompt.templates import (
    TemplateReport,
    choose_template_visits,
    coadd_patches,
    load_template_patches,
    template_for_detector,
)

__all__ = [
    "DATASET_TYPES",
    "DetectorOutcome",
    "ExposureInfo",
    "list_exposures",
    "process_detector",
    "prompt_run",
]

DATASET_TYPES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("prompt_visit_summary", ("instrument", "visit"), "StructuredDataDict"),
    ("real_bogus_model", ("instrument",), "StructuredDataDict"),
    ("prompt_skymap", (), "StructuredDataDict"),
)
"""Dataset types prompt processing adds to the repo's standard ones."""

SUMMARY_RUN = "Pachon/prompt/summaries"


def prompt_run(day_obs: int) -> str:
    """The RUN collection of one night's prompt products."""
    return f"Pachon/prompt/{day_obs}"


@dataclass(frozen=True)
class ExposureInfo:
    """What the pipeline needs to know about a visit before touching its pixels."""

    id: int
    band: str
    day_obs: int
    mjd: float
    exposure_time: float
    seeing: float


def list_exposures(repo: DataRepository) -> list[ExposureInfo]:
    """Every exposure with raws, in time order (seeing from a raw header, as the observatory reported)."""
    registry = repo.butler.registry
    records = sorted(
        registry.queryDimensionRecords("exposure", instrument=INSTRUMENT), key=lambda r: r.timespan.begin
    )
    out = []
    for rec in records:
        refs = list(
            registry.queryDatasets(
                "raw",
                collections=COLLECTIONS["raw"],
                where="exposure = e",
                bind={"e": rec.id},
                instrument=INSTRUMENT,
            )
        )
        if not refs:
            continue
        meta = repo.butler.get(refs[0].makeComponentRef("metadata"))
        out.append(
            ExposureInfo(
                id=int(rec.id),
                band=str(meta.get("BAND", rec.physical_filter.split("_")[0])),
                day_obs=int(rec.day_obs),
                mjd=float(meta.get("MJD-MID", rec.timespan.begin.tai.mjd)),
                exposure_time=float(rec.exposure_time),
                seeing=float(meta.get("SEEING", 1.0)),
            )
        )
    return out


def detectors_of(repo: DataRepository, exposure: int) -> list[int]:
    """Detectors with a raw for this exposure."""
    refs = repo.butler.registry.queryDatasets(
        "raw",
        collections=COLLECTIONS["raw"],
        where="exposure = e",
        bind={"e": exposure},
        instrument=INSTRUMENT,
    )
    return sorted({int(r.dataId["detector"]) for r in refs})


def ensure_dataset_types(repo: DataRepository) -> None:
    for name, dims, sc in DATASET_TYPES:
        repo.register_dataset_type(name, dims, sc)


# -- per-process caches (each Dask worker opens the repo and loads the refcat once) -------------------
@functools.lru_cache(maxsize=4)
def _open_repo(path: str) -> DataRepository:
    return DataRepository.open(path)


@functools.lru_cache(maxsize=4)
def _refcat(path: str) -> Table:
    repo = _open_repo(path)
    refs = list(repo.butler.registry.queryDatasets("refcat", collections=COLLECTIONS["refcats"]))
    if not refs:
        raise FileNotFoundError(f"{path}: no refcat datasets in collection {COLLECTIONS['refcats']}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vstack([repo.butler.get(r) for r in refs], metadata_conflicts="silent")


@functools.lru_cache(maxsize=12)
def _template_patches(path: str, band: str, skymap: str) -> tuple[Exposure, ...]:
    return tuple(load_template_patches(_open_repo(path), band, skymap))


def clear_caches() -> None:
    """Forget cached repos, refcats and templates (after new templates are built)."""
    _open_repo.cache_clear()
    _refcat.cache_clear()
    _template_patches.cache_clear()


@dataclass
class DetectorOutcome:
    """One detector-visit's products, or why it failed (then every product is None)."""

    visit: int
    detector: int
    ok: bool
    reason: str = ""
    step: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    visit_image: Exposure | None = None
    sources: Table | None = None
    difference: Exposure | None = None
    dia_sources: Table | None = None
    psf: PsfModel | None = None
    template: Exposure | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _star_candidates(sources: Table) -> tuple[np.ndarray, np.ndarray]:
    s = sources
    snr = np.asarray(s["psfFlux"]) / np.asarray(s["psfFluxErr"])
    # any compact, unsaturated source constrains the matching kernel (it convolves the whole scene),
    # so galaxies count too: a 1k detector has only a few dozen bright stars
    sel = (snr > 10) & ~np.asarray(s["pixelFlags_saturated"]) & ~np.asarray(s["pixelFlags_edge"])
    order = np.argsort(-snr[sel])
    return np.asarray(s["x"])[sel][order], np.asarray(s["y"])[sel][order]


def process_detector(
    repo_path: str,
    exposure: ExposureInfo,
    detector: int,
    config_json: str,
    rb_model: dict[str, Any] | None = None,
    *,
    skymap: str = "pachon_field",
    keep_template: bool = False,
    inject: Callable[[Exposure, PsfModel], Table] | None = None,
) -> DetectorOutcome:
    """Run every per-detector step of prompt processing; never raises for bad data, never writes.

    ``inject`` (testing and real/bogus training) may add synthetic sources to the calibrated science
    image before subtraction; its returned table is stored in ``metrics``-side ``outcome.sources.meta``.
    """
    config = PromptConfig.model_validate_json(config_json)
    out = DetectorOutcome(visit=exposure.id, detector=detector, ok=False)
    step = "read"
    try:
        repo = _open_repo(repo_path)
        t0 = time.perf_counter()
        raw = repo.get("raw", exposure=exposure.id, detector=detector)
        flat = None
        try:
            flat = repo.get("flat", detector=detector, physical_filter=f"{exposure.band}_sim")
        except Exception:  # no flat for this filter: ISR proceeds without one (noted in the summary)
            out.metrics["no_flat"] = 1.0
        refcat = _refcat(repo_path)
        out.timings["read"] = time.perf_counter() - t0
        step = "calibrate"
        cal = calibrate_detector(
            raw,
            refcat=refcat,
            band=exposure.band,
            epoch=Time(exposure.mjd, format="mjd", scale="tai"),
            visit=exposure.id,
            detector=detector,
            flat=flat,
            config=config,
        )
        out.timings.update(cal.timings)
        out.metrics.update(
            astrometry_rms_mas=cal.astrometry.rms_mas,
            astrometry_matches=float(cal.astrometry.n_matches),
            zero_point=cal.photocal.zero_point,
            zero_point_err=cal.photocal.zero_point_err,
            psf_fwhm_px=cal.psf.fwhm,
            n_sources=float(len(cal.sources)),
        )
        science = cal.visit_image
        injected = None
        if inject is not None:
            science = science.copy()
            injected = inject(science, cal.psf)

        step = "template"
        t0 = time.perf_counter()
        patches = list(_template_patches(repo_path, exposure.band, skymap))
        template = template_for_detector(patches, science.wcs, np.shape(science.data))
        out.timings["template"] = time.perf_counter() - t0

        step = "subtract"
        t0 = time.perf_counter()
        sx, sy = _star_candidates(cal.sources)
        sub = subtract(science, template, cal.psf, sx, sy, config=config.subtract)
        out.timings["subtract"] = time.perf_counter() - t0
        out.metrics.update(
            kernel_sum=sub.kernel_sum, kernel_stamps=float(sub.n_stamps), template_fwhm_px=sub.template_fwhm
        )

        step = "detect_dia"
        t0 = time.perf_counter()
        dia = detect_dia_sources(
            sub.difference, science, template, sub.psf, direct_sources=cal.sources, config=config.dia
        )
        n = len(dia)
        dia["diaSourceId"] = pack_ids(exposure.id, detector, np.arange(n), kind=1)
        dia["visit"] = np.full(n, exposure.id, dtype=np.int64)
        dia["detector"] = np.full(n, detector, dtype=np.int16)
        dia["band"] = np.full(n, exposure.band)
        dia["midpointMjdTai"] = np.full(n, exposure.mjd)
        dia["exposureTime"] = np.full(n, exposure.exposure_time)
        model = RealBogusModel.from_dict(rb_model) if rb_model else None
        dia["reliability"] = (
            model.predict(dia).astype(np.float32) if model else np.full(n, np.nan, np.float32)
        )
        dia["reliabilityVersion"] = np.full(n, model.version if model else "none")
        out.timings["detect_dia"] = time.perf_counter() - t0
        if injected is not None:
            dia.meta["injected"] = injected
        out.metrics["n_dia_sources"] = float(n)
        out.visit_image = cal.visit_image
        out.sources = cal.sources
        out.difference = sub.difference
        out.dia_sources = dia
        out.psf = sub.psf
        if keep_template:
            out.template = template
        out.ok = True
    except Exception as exc:  # any failure of one detector is recorded, the visit goes on
        out.ok = False
        out.step = step
        out.reason = f"{type(exc).__name__}: {exc}"
        out.visit_image = out.sources = out.difference = out.dia_sources = None
    return out


def calibrate_for_template(
    repo_path: str, exposure: ExposureInfo, detector: int, config_json: str
) -> CoaddInput | str:
    """Calibrate one detector of a template visit; the coadd input, or the failure reason."""
    config = PromptConfig.model_validate_json(config_json)
    try:
        repo = _open_repo(repo_path)
        raw = repo.get("raw", exposure=exposure.id, detector=detector)
        try:
            flat = repo.get("flat", detector=detector, physical_filter=f"{exposure.band}_sim")
        except Exception:
            flat = None
        cal = calibrate_detector(
            raw,
            refcat=_refcat(repo_path),
            band=exposure.band,
            epoch=Time(exposure.mjd, format="mjd", scale="tai"),
            visit=exposure.id,
            detector=detector,
            flat=flat,
            config=config,
        )
        return CoaddInput(cal.visit_image, cal.psf.fwhm, cal.psf)
    except Exception as exc:
        return f"visit {exposure.id} detector {detector}: {type(exc).__name__}: {exc}"


def build_templates(
    repo_path: str | Path,
    *,
    config: PromptConfig | None = None,
    map_fn: Callable[..., Iterable[Any]] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> TemplateReport:
    """Build (or rebuild) every band's template coadd patches in ``Pachon/templates``.

    ``map_fn(func, *iterables)`` runs the per-detector calibrations (the builtin ``map`` by
    default; the CLI passes a Dask client's map).
    """
    t_start = time.perf_counter()
    config = config or PromptConfig()
    path = str(Path(repo_path))
    repo = DataRepository.open(path, writeable=True)
    ensure_dataset_types(repo)
    exposures = list_exposures(repo)
    if not exposures:
        raise FileNotFoundError(
            f"{path}: no raw exposures; simulate or ingest raws first (`pachon simulate`)"
        )
    chosen = choose_template_visits([e.__dict__ | {"id": e.id} for e in exposures], config)
    by_id = {e.id: e for e in exposures}
    # the tract covers the first visit's detectors, grown by the largest pointing offset of any visit
    footprints = []
    first = exposures[0]
    for det in detectors_of(repo, first.id):
        raw = repo.get("raw", exposure=first.id, detector=det)
        meta = raw.meta
        if "DATASEC" in meta:
            from pachon.pipelines.prompt.isr import parse_section

            rows, cols = parse_section(meta["DATASEC"])
            shape = (rows.stop - rows.start, cols.stop - cols.start)
        else:
            shape = (np.shape(raw.data)[0], np.shape(raw.data)[1] - config.isr.overscan_columns)
        footprints.append((raw.wcs, shape))
    records = {r.id: r for r in repo.butler.registry.queryDimensionRecords("exposure", instrument=INSTRUMENT)}
    ref_rec = records[first.id]
    offsets = [
        np.hypot(
            (r.tracking_ra - ref_rec.tracking_ra) * np.cos(np.radians(ref_rec.tracking_dec)),
            r.tracking_dec - ref_rec.tracking_dec,
        )
        * 3600
        / config.template.pixel_scale_arcsec
        for r in records.values()
    ]
    margin = 200 + int(np.ceil(max(offsets, default=0.0)))
    skymap = design_skymap(
        footprints,
        name=config.template.skymap,
        pixel_scale=config.template.pixel_scale_arcsec,
        patch_size=config.template.patch_size,
        margin=margin,
    )
    skymap.register(repo)
    repo.put({"skymap": skymap.__dict__}, "prompt_skymap", run=COLLECTIONS["templates"]) if not repo.has(
        "prompt_skymap", run=COLLECTIONS["templates"]
    ) else None
    report = TemplateReport(skymap=skymap.name, visits=chosen)
    mapper = map_fn or map
    config_json = config.model_dump_json()
    for band, visit_ids in chosen.items():
        jobs = [(by_id[v], det) for v in visit_ids for det in detectors_of(repo, v)]
        log(f"template {band}: calibrating {len(jobs)} detector-visits from visits {visit_ids}")
        results = list(
            mapper(
                calibrate_for_template,
                [path] * len(jobs),
                [j[0] for j in jobs],
                [j[1] for j in jobs],
                [config_json] * len(jobs),
            )
        )
        inputs = [r for r in results if isinstance(r, CoaddInput)]
        report.failures.extend(r for r in results if isinstance(r, str))
        if not inputs:
            report.failures.append(f"band {band}: no calibrated inputs, no template")
            continue
        made = coadd_patches(skymap, band, inputs)
        for patch_id, tmpl in made:
            data_id = {"skymap": skymap.name, "tract": skymap.tract, "patch": patch_id, "band": band}
            if repo.has("template_coadd", run=COLLECTIONS["templates"], **data_id):
                ref = repo.butler.find_dataset(
                    "template_coadd", data_id, collections=COLLECTIONS["templates"]
                )
                repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
            repo.put(tmpl, "template_coadd", **data_id)
        report.patches[band] = [p for p, _ in made]
    clear_caches()
    report.seconds = time.perf_counter() - t_start
    return report


def _rows_for_ccd(outcome: DetectorOutcome, exposure: ExposureInfo) -> dict[str, Any]:
    return {"ccdVisitId": ccd_visit_id(exposure.id, outcome.detector), "detector": outcome.detector}
