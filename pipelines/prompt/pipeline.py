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
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from astropy.time import Time

from pachon.core.image import Exposure
from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.prompt.calibrate import CalibratedDetector, calibrate_detector
from pachon.pipelines.prompt.coadd import CoaddInput
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.dia import detect_dia_sources
from pachon.pipelines.prompt.ids import ccd_visit_id, pack_ids
from pachon.pipelines.prompt.psf import PsfModel
from pachon.pipelines.prompt.realbogus import RealBogusModel
from pachon.pipelines.prompt.skymap import SkyMap, design_skymap
from pachon.pipelines.prompt.subtract import subtract
from pachon.pipelines.prompt.templates import (
    MissingTemplateError,
    SpilledInput,
    TemplateReport,
    choose_template_visits,
    coadd_patch,
    load_template_refs,
    patches_overlapping,
    plan_patches,
    spill_input,
    stored_skymap,
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


_EXPOSURE_CACHE: dict[tuple[str, int], ExposureInfo] = {}


def list_exposures(repo: DataRepository) -> list[ExposureInfo]:
    """Every exposure with raws, in time order (seeing from a raw header, as the observatory reported).

    Headers are read once per process (``--follow`` polls cheaply).
    """
    registry = repo.butler.registry
    records = sorted(
        registry.queryDimensionRecords("exposure", instrument=INSTRUMENT), key=lambda r: r.timespan.begin
    )
    out = []
    for rec in records:
        cached = _EXPOSURE_CACHE.get((str(repo.path), int(rec.id)))
        if cached is not None:
            out.append(cached)
            continue
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
            info := ExposureInfo(
                id=int(rec.id),
                band=str(meta.get("BAND", rec.physical_filter.split("_")[0])),
                day_obs=int(rec.day_obs),
                mjd=float(meta.get("MJD-MID", rec.timespan.begin.tai.mjd)),
                exposure_time=float(rec.exposure_time),
                seeing=float(meta.get("SEEING", 1.0)),
            )
        )
        _EXPOSURE_CACHE[(str(repo.path), int(rec.id))] = info
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
def open_repo(path: str) -> DataRepository:
    """The repo, opened once per worker process (cached)."""
    return DataRepository.open(path)


@functools.lru_cache(maxsize=4)
def load_refcat(path: str) -> Table:
    """The whole reference catalog, read once per worker process (cached)."""
    repo = open_repo(path)
    refs = list(repo.butler.registry.queryDatasets("refcat", collections=COLLECTIONS["refcats"]))
    if not refs:
        raise FileNotFoundError(f"{path}: no refcat datasets in collection {COLLECTIONS['refcats']}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vstack([repo.butler.get(r) for r in refs], metadata_conflicts="silent")


@functools.lru_cache(maxsize=8)
def _template_refs(path: str, band: str, skymap: str) -> dict[int, Any]:
    """The band's template patches: patch id → dataset ref (no pixels read)."""
    refs = load_template_refs(open_repo(path), band, skymap)
    return {int(ref.dataId["patch"]): ref for ref in refs}


@functools.lru_cache(maxsize=2)
def _skymap_of(path: str, skymap: str) -> SkyMap | None:
    return stored_skymap(open_repo(path), skymap)


# a 2k×2k patch is 50 MB: 16 hold the ~4 patches a detector touches in each of four bands
@functools.lru_cache(maxsize=16)
def _template_patch(path: str, band: str, skymap: str, patch_id: int) -> Exposure:
    return open_repo(path).butler.get(_template_refs(path, band, skymap)[patch_id])  # type: ignore[no-any-return]


def templates_for(path: str, band: str, skymap: str, wcs: Any, shape: tuple[int, int]) -> list[Exposure]:
    """The template patches a detector touches, read once per worker and kept in a bounded cache."""
    refs = _template_refs(path, band, skymap)
    if not refs:
        raise MissingTemplateError("no template patches in this band; run `pachon prompt templates`")
    sm = _skymap_of(path, skymap)
    ids = sorted(refs) if sm is None else sorted(set(refs) & patches_overlapping(sm, wcs, shape))
    if not ids:
        raise MissingTemplateError("the band's template does not overlap this detector")
    return [_template_patch(path, band, skymap, i) for i in ids]


def clear_caches() -> None:
    """Forget cached repos, refcats and templates (after new templates are built)."""
    open_repo.cache_clear()
    load_refcat.cache_clear()
    _template_refs.cache_clear()
    _skymap_of.cache_clear()
    _template_patch.cache_clear()


def calibrate_from_repo(
    repo_path: str, exposure: ExposureInfo, detector: int, config: PromptConfig
) -> tuple[CalibratedDetector, bool]:
    """Read a detector-visit's raw, its flat and the reference catalog, and calibrate it.

    The one path from repo to calibrated image that prompt processing and the data release
    share. Returns the calibration (its ``timings`` start with ``read``) and whether the repo
    had a flat for the filter (without one, ISR proceeds unflattened).
    """
    t0 = time.perf_counter()
    repo = open_repo(repo_path)
    raw = repo.get("raw", exposure=exposure.id, detector=detector)
    try:
        flat = repo.get("flat", detector=detector, physical_filter=f"{exposure.band}_sim")
    except Exception:  # no flat for this filter
        flat = None
    refcat = load_refcat(repo_path)
    read_s = time.perf_counter() - t0
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
    cal.timings = {"read": read_s, **cal.timings}
    return cal, flat is not None


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
    step = "read and calibrate"
    try:
        cal, has_flat = calibrate_from_repo(repo_path, exposure, detector, config)
        if not has_flat:  # ISR proceeded without one (noted in the summary)
            out.metrics["no_flat"] = 1.0
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
        shape = (int(np.shape(science.data)[0]), int(np.shape(science.data)[1]))
        patches = templates_for(repo_path, exposure.band, skymap, science.wcs, shape)
        template = template_for_detector(patches, science.wcs, shape)
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
            sub.difference,
            science,
            template,
            sub.psf,
            direct_sources=cal.sources,
            config=config.dia,
            template_share=sub.template_share,
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
    repo_path: str, exposure: ExposureInfo, detector: int, config_json: str, scratch: str | None = None
) -> CoaddInput | SpilledInput | str:
    """Calibrate one detector of a template visit; the coadd input, or the failure reason.

    With ``scratch`` (a directory), the calibrated planes are written there and only a
    :class:`SpilledInput` handle is returned, so a worker never ships the image to the parent.
    """
    config = PromptConfig.model_validate_json(config_json)
    try:
        cal, _ = calibrate_from_repo(repo_path, exposure, detector, config)
        item = CoaddInput(cal.visit_image, cal.psf.fwhm, cal.psf)
        if scratch is None:
            return item
        return spill_input(item, Path(scratch) / f"{exposure.id}_{detector}")
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
    # the parent holds footprints only: workers spill calibrated inputs to scratch, coadd patches from
    # there, and each patch is written as soon as it comes back (memory bounded on any number of visits)
    scratch_root = Path(path) / ".scratch"
    for band, visit_ids in chosen.items():
        jobs = [(by_id[v], det) for v in visit_ids for det in detectors_of(repo, v)]
        log(f"template {band}: calibrating {len(jobs)} detector-visits from visits {visit_ids}")
        scratch_root.mkdir(exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=f"template-{band}-", dir=scratch_root)
        try:
            results = list(
                mapper(
                    calibrate_for_template,
                    [path] * len(jobs),
                    [j[0] for j in jobs],
                    [j[1] for j in jobs],
                    [config_json] * len(jobs),
                    [scratch] * len(jobs),
                )
            )
            inputs: list[CoaddInput | SpilledInput] = [r for r in results if isinstance(r, SpilledInput)]
            report.failures.extend(r for r in results if isinstance(r, str))
            if not inputs:
                report.failures.append(f"band {band}: no calibrated inputs, no template")
                continue
            plan = plan_patches(skymap, inputs)
            made = mapper(
                coadd_patch,
                [p for p, _ in plan],
                [band] * len(plan),
                [skymap.name] * len(plan),
                [touching for _, touching in plan],
            )
            report.patches[band] = []
            for patch_id, tmpl in made:
                data_id: dict[str, Any] = {
                    "skymap": skymap.name,
                    "tract": skymap.tract,
                    "patch": patch_id,
                    "band": band,
                }
                if repo.has("template_coadd", run=COLLECTIONS["templates"], **data_id):
                    ref = repo.butler.find_dataset(
                        "template_coadd", data_id, collections=COLLECTIONS["templates"]
                    )
                    if ref is not None:
                        repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
                repo.put(tmpl, "template_coadd", **data_id)
                report.patches[band].append(patch_id)
                del tmpl
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if scratch_root.exists() and not any(scratch_root.iterdir()):
        scratch_root.rmdir()
    clear_caches()
    report.seconds = time.perf_counter() - t_start
    return report


def _rows_for_ccd(outcome: DetectorOutcome, exposure: ExposureInfo) -> dict[str, Any]:
    return {"ccdVisitId": ccd_visit_id(exposure.id, outcome.detector), "detector": outcome.detector}


# -- visits ---------------------------------------------------------------------------------------------
@dataclass
class VisitReport:
    """What happened to one visit: per-detector timings and failures, counts, where outputs went."""

    visit: int
    band: str
    run: str
    detectors_ok: list[int] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    n_dia_sources: int = 0
    n_dia_selected: int = 0
    n_new_objects: int = 0
    n_matched: int = 0
    n_forced: int = 0
    alerts: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failures"] = {str(k): v for k, v in self.failures.items()}
        return d


def processed_visits(repo: DataRepository) -> set[int]:
    """Visits with a ``prompt_visit_summary`` (processed, whatever their detectors' fate)."""
    try:
        refs = repo.butler.registry.queryDatasets(
            "prompt_visit_summary", collections=SUMMARY_RUN, instrument=INSTRUMENT
        )
        return {int(r.dataId["visit"]) for r in refs}
    except Exception:
        return set()


def _replace(repo: DataRepository, obj: Any, dataset_type: str, run: str, **data_id: Any) -> None:
    """Put, replacing a dataset with the same data ID in ``run`` (a re-run writes the same IDs)."""
    full = (
        {"instrument": INSTRUMENT, **data_id}
        if "instrument" not in data_id and repo._needs_instrument(dataset_type)
        else data_id
    )
    ref = (
        repo.butler.find_dataset(dataset_type, full, collections=run)
        if run in set(repo.butler.collections.query("*"))
        else None
    )
    if ref is not None:
        repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
    repo.put(obj, dataset_type, run=run, **data_id)


def write_detector(repo: DataRepository, outcome: DetectorOutcome, run: str) -> None:
    """Write one detector's four products; on any error remove what was written (all or nothing)."""
    written: list[str] = []
    data_id = {"visit": outcome.visit, "detector": outcome.detector}
    try:
        for name, obj in (
            ("visit_image", outcome.visit_image),
            ("source", outcome.sources),
            ("difference_image", outcome.difference),
            ("dia_source", _storable(outcome.dia_sources)),
        ):
            _replace(repo, obj, name, run, **data_id)
            written.append(name)
    except Exception:
        for name in written:
            ref = repo.butler.find_dataset(name, {"instrument": INSTRUMENT, **data_id}, collections=run)
            if ref is not None:
                repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
        raise


def _as_stored(repo: DataRepository, outcome: DetectorOutcome, run: str) -> tuple[Exposure, Exposure]:
    """The detector's visit and difference images as the repo now holds them (read back).

    Processed images are stored tile-compressed with their float planes quantized at σ/16
    (:mod:`pachon.core.image`); association's forced photometry and the alert cutouts use these
    pixels, so that an alert's cutouts equal the archived images and :func:`live.recover_alerts`
    rebuilds identical packets from the repo. Reading back costs a decompression, not a compression.
    Should the read fail, the in-memory images serve (the products are written either way).
    """
    assert outcome.visit_image is not None and outcome.difference is not None
    data_id = {"visit": outcome.visit, "detector": outcome.detector}
    try:
        return (
            repo.get("visit_image", collections=run, **data_id),
            repo.get("difference_image", collections=run, **data_id),
        )
    except Exception:
        return outcome.visit_image, outcome.difference


def _storable(table: Table | None) -> Table | None:
    if table is None:
        return None
    out = table.copy(copy_data=False)
    out.meta = {k: v for k, v in out.meta.items() if isinstance(v, str | int | float)}
    return out


def load_rb_model(repo: DataRepository) -> dict[str, Any] | None:
    """The repo's trained real/bogus model (``real_bogus_model`` in Pachon/templates), or None."""
    try:
        if repo.has("real_bogus_model", run=COLLECTIONS["templates"]):
            return dict(repo.get("real_bogus_model", collections=COLLECTIONS["templates"]))
    except Exception:
        return None
    return None


def run_visit(
    repo_path: str | Path,
    exposure: ExposureInfo,
    *,
    config: PromptConfig | None = None,
    map_fn: Callable[..., Iterable[Any]] | None = None,
    associate: bool = True,
    alerts: bool = True,
    log: Callable[[str], None] = lambda _m: None,
) -> VisitReport:
    """Process one visit end to end (detectors in parallel through ``map_fn``) and record its summary."""
    t_visit = time.perf_counter()
    config = config or PromptConfig()
    path = str(Path(repo_path))
    repo = DataRepository.open(path, writeable=True)
    ensure_dataset_types(repo)
    run = prompt_run(exposure.day_obs)
    report = VisitReport(visit=exposure.id, band=exposure.band, run=run)
    dets = detectors_of(repo, exposure.id)
    rb = load_rb_model(repo)
    mapper = map_fn or map
    t0 = time.perf_counter()
    outcomes: list[DetectorOutcome] = list(
        mapper(
            functools.partial(process_detector, keep_template=True),
            [path] * len(dets),
            [exposure] * len(dets),
            dets,
            [config.model_dump_json()] * len(dets),
            [rb] * len(dets),
        )
    )
    report.stage_seconds["detectors"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    good: list[DetectorOutcome] = []
    for o in outcomes:
        report.timings[str(o.detector)] = o.timings
        report.metrics[str(o.detector)] = {k: float(v) for k, v in o.metrics.items()}
        if not o.ok:
            report.failures[o.detector] = f"{o.step}: {o.reason}"
            log(f"visit {exposure.id} detector {o.detector} failed at {o.step}: {o.reason}")
            continue
        try:
            write_detector(repo, o, run)
        except Exception as exc:
            report.failures[o.detector] = f"write: {type(exc).__name__}: {exc}"
            continue
        o.visit_image, o.difference = _as_stored(repo, o, run)
        good.append(o)
        report.detectors_ok.append(o.detector)
    report.stage_seconds["write"] = time.perf_counter() - t0

    selected = []
    for o in good:
        d = o.dia_sources
        assert d is not None
        report.n_dia_sources += len(d)
        if rb is not None and len(d):
            d = d[np.asarray(d["reliability"]) >= config.dia.real_bogus_threshold]
        selected.append(d)
    dia_all = (
        vstack(selected, metadata_conflicts="silent") if selected and any(len(s) for s in selected) else None
    )
    report.n_dia_selected = 0 if dia_all is None else len(dia_all)

    if associate and good:
        try:
            _associate_and_alert(path, exposure, good, dia_all, report, config, alerts, log)
        except Exception as exc:  # recorded in the summary; the detectors' products stay written
            report.errors.append(f"association: {type(exc).__name__}: {exc}")
            log(f"visit {exposure.id}: association failed: {type(exc).__name__}: {exc}")

    report.seconds = time.perf_counter() - t_visit
    _replace(repo, report.to_dict(), "prompt_visit_summary", SUMMARY_RUN, visit=exposure.id)
    return report


def _associate_and_alert(
    path: str,
    exposure: ExposureInfo,
    good: list[DetectorOutcome],
    dia_all: Table | None,
    report: VisitReport,
    config: PromptConfig,
    alerts: bool,
    log: Callable[[str], None],
) -> None:
    """Associate the visit in the APDB (once: a re-run finds it there) and send its alerts."""
    if True:
        t0 = time.perf_counter()
        from pachon.pipelines.prompt.association import DetectorImages, associate_visit, open_apdb

        handle = open_apdb(path)
        images = [DetectorImages(o.detector, o.difference, o.visit_image, o.psf) for o in good]  # type: ignore[arg-type]
        already = any(
            handle.apdb.containsVisitDetector(
                exposure.id, o.detector, _region_of(o), Time(exposure.mjd, format="mjd", scale="tai")
            )
            for o in good
        )
        if already:
            log(f"visit {exposure.id}: already in the APDB, association skipped (IDs are deterministic)")
        else:
            table = (
                dia_all
                if dia_all is not None
                else Table({"diaSourceId": np.zeros(0, np.int64), "ra": [], "dec": []})
            )
            result = associate_visit(
                handle,
                table,
                images,
                visit=exposure.id,
                visit_mjd=exposure.mjd,
                band=exposure.band,
                config=config.association,
            )
            report.n_new_objects = result.n_new
            report.n_matched = result.n_matched
            report.n_forced = len(result.forced_sources)
            if alerts and dia_all is not None and len(dia_all):
                t1 = time.perf_counter()
                report.alerts = send_alerts(path, handle, result.dia_sources, good, exposure, config)
                report.stage_seconds["alerts"] = time.perf_counter() - t1
        report.stage_seconds["association"] = (
            time.perf_counter() - t0 - report.stage_seconds.get("alerts", 0.0)
        )


def _region_of(o: DetectorOutcome) -> Any:
    from pachon.pipelines.prompt.association import DetectorImages, visit_region

    return visit_region([DetectorImages(o.detector, o.difference, o.visit_image, o.psf)])  # type: ignore[arg-type]


def send_alerts(
    path: str,
    handle: Any,
    dia_sources: Table,
    good: list[DetectorOutcome],
    exposure: ExposureInfo,
    config: PromptConfig,
) -> dict[str, Any]:
    """Build one alert per associated DiaSource (history from the APDB, cutouts from ``good``), archive, publish.

    ``dia_sources`` are the visit's associated DiaSources (APDB columns); ``good`` the detectors' images.
    The visit calls it right after association; :func:`pachon.pipelines.prompt.live.recover_alerts`
    calls it with APDB rows and stored images to rebuild alerts an interrupted run did not archive.
    """
    try:
        from pachon.core.alerts import build_alert, make_cutouts, publish_alerts
    except ImportError as exc:  # the alert stream is another area's; report and carry on
        return {"error": f"alerts unavailable: {exc}"}
    from pachon.pipelines.prompt.association import visit_region

    t = Time(exposure.mjd, format="mjd", scale="tai")
    region = visit_region([_images(o) for o in good])
    dia = dia_sources
    object_ids = sorted(set(np.asarray(dia["diaObjectId"]).tolist()))
    start = Time(exposure.mjd - config.association.history_days, format="mjd", scale="tai")
    history = handle.apdb.getDiaSources(region, object_ids, t, start)
    forced = handle.apdb.getDiaForcedSources(region, object_ids, t, start)
    objects = handle.apdb.getDiaObjects(region)
    obj_rows = {int(r["diaObjectId"]): r for r in objects.to_dict("records")} if objects is not None else {}
    hist_by: dict[int, list[dict[str, Any]]] = {}
    for r in history.to_dict("records") if history is not None else []:
        hist_by.setdefault(int(r["diaObjectId"]), []).append(r)
    forced_by: dict[int, list[dict[str, Any]]] = {}
    for r in forced.to_dict("records") if forced is not None else []:
        if int(r["visit"]) != exposure.id:
            forced_by.setdefault(int(r["diaObjectId"]), []).append(r)
    by_det = {o.detector: o for o in good}
    from pachon.pipelines.prompt.association import dia_frame

    rows = dia_frame(dia).to_dict("records")
    packets = []
    errors = 0
    for row in rows:
        o = by_det[int(row["detector"])]
        assert o.difference is not None and o.visit_image is not None
        try:
            stamps = make_cutouts(
                float(row["x"]),
                float(row["y"]),
                difference=(
                    np.asarray(o.difference.data),
                    np.asarray(o.difference.variance),
                    o.difference.wcs,
                ),
                science=(
                    np.asarray(o.visit_image.data),
                    np.asarray(o.visit_image.variance),
                    o.visit_image.wcs,
                ),
                template=(np.asarray(o.template.data), np.asarray(o.template.variance), o.template.wcs)  # type: ignore[union-attr]
                if o.template is not None
                else None,
                bbox_size=config.dia.cutout_size,
            )
            oid = int(row["diaObjectId"])
            packets.append(
                build_alert(
                    row,
                    prv_sources=[
                        h for h in hist_by.get(oid, []) if int(h["diaSourceId"]) != int(row["diaSourceId"])
                    ],
                    prv_forced=forced_by.get(oid, []),
                    dia_object=obj_rows.get(oid),
                    cutouts=stamps,
                )
            )
        except Exception:
            errors += 1
    report = publish_alerts(path, packets)
    return {
        "built": len(packets),
        "build_errors": errors,
        "archived": getattr(report, "archived", None),
        "delivered": getattr(report, "delivered", None),
        "failed": len(getattr(report, "failed", []) or []),
    }


def _images(o: DetectorOutcome) -> Any:
    from pachon.pipelines.prompt.association import DetectorImages

    return DetectorImages(o.detector, o.difference, o.visit_image, o.psf)  # type: ignore[arg-type]


def run_visits(
    repo_path: str | Path,
    visits: Sequence[int] | None = None,
    *,
    config: PromptConfig | None = None,
    map_fn: Callable[..., Iterable[Any]] | None = None,
    associate: bool = True,
    alerts: bool = True,
    log: Callable[[str], None] = lambda _m: None,
) -> list[VisitReport]:
    """Process ``visits`` (default: every visit not processed yet), in time order."""
    repo = DataRepository.open(str(repo_path), writeable=True)
    ensure_dataset_types(repo)
    exposures = list_exposures(repo)
    if visits is None:
        done = processed_visits(repo)
        todo = [e for e in exposures if e.id not in done]
    else:
        wanted = set(visits)
        unknown = wanted - {e.id for e in exposures}
        if unknown:
            raise ValueError(
                f"no raws for visit(s) {sorted(unknown)}; `pachon repo info` lists the repo's visits"
            )
        todo = [e for e in exposures if e.id in wanted]
    reports = []
    for e in todo:
        r = run_visit(repo_path, e, config=config, map_fn=map_fn, associate=associate, alerts=alerts, log=log)
        log(
            f"visit {e.id} ({e.band}): {len(r.detectors_ok)} detectors ok, {len(r.failures)} failed, "
            f"{r.n_dia_selected}/{r.n_dia_sources} DiaSources kept, {r.n_new_objects} new DiaObjects, {r.seconds:.1f} s"
        )
        reports.append(r)
    return reports
