"""The data-release driver: single-visit → multi-visit solution → coadds → Objects → forced photometry → catalog.

:func:`run_release` processes every visit of a repo into the RUN collection ``Pachon/runs/<release>``
and loads the DP1 tables into the catalog schema named after the release:

1. single-visit calibration of every detector-visit (:mod:`~pachon.pipelines.drp.singlevisit`);
2. multi-visit association, global astrometry (proper motion, parallax) and ubercal
   (:mod:`~pachon.pipelines.drp.multivisit`);
3. deep coadds per (patch, band), calibrated by ubercal, with their PSF models
   (:mod:`~pachon.pipelines.drp.coadd`);
4. multi-band detection, deblending and measurement per patch
   (:mod:`~pachon.pipelines.drp.detect`, :mod:`~pachon.pipelines.drp.measure_coadd`);
5. Objects = the coadd detections, joined with the astrometric solution by position
   (:mod:`~pachon.pipelines.drp.objects`);
6. forced photometry of every Object on every visit (:mod:`~pachon.pipelines.drp.forced`).

It is resumable at every quantum: detector-visits whose ``source`` exists, coadds whose
``drp_coadd_psf`` records the same inputs, and patches whose ``drp_coadd_objects_info`` records the
same coadds and settings are skipped. The per-quantum work runs on Dask (a ``LocalCluster`` of
single-threaded worker processes by default, ``Settings.dask_scheduler`` when set, or
in-process with ``workers=1``) with a progress bar, and per-step timings and the configuration
are recorded in the ``drp_summary`` dataset. The catalog load replaces the release's tables, so
re-running a release is idempotent and other releases (other DuckDB files) are untouched.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from pachon._version import __version__
from pachon.core.progress import progress
from pachon.core.repo import INSTRUMENT, DataRepository
from pachon.pipelines.drp.coadd import (
    CoaddQuantum,
    CoaddReport,
    PatchDepth,
    coadd_quantum,
    expanded_patch,
    flat_grid_points,
    patch_polygons,
    patch_row,
    plan_coadds,
    release_skymap,
)
from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.forced import forced_quantum
from pachon.pipelines.drp.multivisit import associate, fit_astrometry_global, ubercal
from pachon.pipelines.drp.objects import join_astrometry, measure_digest, measure_quantum
from pachon.pipelines.drp.singlevisit import QuantumResult, calibrate_quantum
from pachon.pipelines.drp.tables import ccd_visit_table, coadd_object_table, source_table, visit_table
from pachon.pipelines.prompt.ids import ccd_visit_id
from pachon.pipelines.prompt.pipeline import (
    ExposureInfo,
    clear_caches,
    detectors_of,
    list_exposures,
    load_refcat,
)
from pachon.pipelines.prompt.skymap import SkyMap

__all__ = ["DATASET_TYPES", "DrpReport", "release_run", "run_release"]

DATASET_TYPES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("drp_psf", ("instrument", "visit", "detector"), "StructuredDataDict"),
    ("drp_summary", ("instrument",), "StructuredDataDict"),
    ("drp_skymap", ("instrument",), "StructuredDataDict"),
    ("drp_object_table", ("instrument",), "ArrowAstropy"),
    ("drp_forced_source_table", ("instrument",), "ArrowAstropy"),
    ("drp_coadd_psf", ("skymap", "tract", "patch", "band"), "StructuredDataDict"),
    ("drp_coadd_objects", ("skymap", "tract", "patch"), "ArrowAstropy"),
    ("drp_coadd_objects_info", ("skymap", "tract", "patch"), "StructuredDataDict"),
)
"""Dataset types the release pipeline adds (per-detector PSF models, run summary, catalog tables,
coadd PSF models with their inputs' digest, per-patch coadd measurements)."""

MEASURE_VERSION = 4
"""Bumped when coadd detection/measurement changes, so re-runs redo the patches."""


def release_run(release: str) -> str:
    """The RUN collection of a release."""
    return f"Pachon/runs/{release}"


@dataclass
class DrpReport:
    """What a release run did, for the CLI, the benchmark and the metrics store."""

    release: str
    run: str
    quanta: int = 0
    processed: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    step_seconds: dict[str, float] = field(default_factory=dict)
    step_peak_rss_mib: dict[str, float] = field(default_factory=dict)
    step_peak_worker_rss_mib: dict[str, float] = field(default_factory=dict)
    quantum_step_seconds: dict[str, float] = field(default_factory=dict)
    n_objects: int = 0
    n_sources: int = 0
    n_forced: int = 0
    n_visits: int = 0
    n_objects_with_astrometry: int = 0
    coadds_built: int = 0
    coadds_skipped: int = 0
    patches_measured: int = 0
    patches_skipped: int = 0
    coadd_depth: dict[str, float] = field(default_factory=dict)
    noise_floor_mas: float = float("nan")
    ubercal_rms_mmag: float = float("nan")
    metrics: dict[str, tuple[float, str, str]] = field(default_factory=dict)
    metric_run_id: int | None = None
    catalog_url: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "metrics"} | {
            "metrics": {k: {"value": v[0], "unit": v[1]} for k, v in self.metrics.items()}
        }


Mapper = Callable[..., Iterator[Any]]


class _MemoryMeter:
    """Peak resident memory of this process and its children (the local Dask workers) per step.

    A daemon thread sums the RSS of the process tree every ``interval`` seconds; :meth:`take`
    returns the peaks since the previous call (the whole tree, and the largest single child, i.e.
    one worker's peak while it processed that step's quanta; 0 when the quanta run in-process,
    where the tree figure is the worker's) and starts a new period. Workers of a remote scheduler
    are not children, so only the driver is measured then.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval = interval
        self._lock = threading.Lock()
        self._peak = 0
        self._peak_child = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drp-memory-meter", daemon=True)

    def _sample(self) -> None:
        import psutil

        try:
            me = psutil.Process()
            total = me.memory_info().rss
            child_max = 0
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:  # exited between listing and reading
                    continue
                total += rss
                child_max = max(child_max, rss)
        except psutil.Error:
            return
        with self._lock:
            self._peak = max(self._peak, total)
            self._peak_child = max(self._peak_child, child_max)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> _MemoryMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def take(self) -> tuple[float, float]:
        """(peak tree RSS, peak single-child RSS) in MiB since the last call; resets both."""
        self._sample()
        with self._lock:
            out = (self._peak / 2**20, self._peak_child / 2**20)
            self._peak = self._peak_child = 0
        return round(out[0], 1), round(out[1], 1)


@contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[Mapper]:
    """A mapper yielding results as they complete: in-process for 1 worker, else Dask."""
    if workers <= 1 and scheduler is None:

        def serial(fn: Callable[..., Any], *iterables: Any, **kw: Any) -> Iterator[Any]:
            for args in zip(*iterables, strict=True):
                yield fn(*args, **kw)

        yield serial
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        client = Client(cluster)

    def dask_map(fn: Callable[..., Any], *iterables: Any, **kw: Any) -> Iterator[Any]:
        shared = {k: client.scatter(v, broadcast=True) for k, v in kw.items()}
        futures = client.map(fn, *iterables, pure=False, **shared)
        for fut in as_completed(futures):
            yield fut.result()
            fut.release()

    try:
        yield dask_map
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _replace(repo: DataRepository, obj: Any, dataset_type: str, run: str, **data_id: Any) -> None:
    """Put, replacing an existing dataset of the same data ID in ``run`` (idempotent re-runs)."""
    if repo.has(dataset_type, run=run, **data_id):
        full = (
            {"instrument": INSTRUMENT, **data_id}
            if "instrument" in repo.butler.get_dataset_type(dataset_type).dimensions.names
            else data_id
        )
        ref = repo.butler.find_dataset(dataset_type, full, collections=run)
        if ref is not None:
            repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
    repo.put(obj, dataset_type, run=run, **data_id)


def _coadd_done(repo: DataRepository, run: str, skymap: SkyMap, q: CoaddQuantum) -> bool:
    """True if this (patch, band) coadd exists with the same inputs (visits, calibration, border)."""
    data_id = {"skymap": skymap.name, "tract": skymap.tract, "patch": q.patch, "band": q.band}
    if not (repo.has("drp_coadd_psf", run=run, **data_id) and repo.has("deep_coadd", run=run, **data_id)):
        return False
    info = repo.get("drp_coadd_psf", collections=run, **data_id)
    return bool(info.get("digest") == q.digest)


def _measured(repo: DataRepository, run: str, skymap: SkyMap, patch: int, digest: str) -> Table | None:
    """A patch's stored measurement if its info (written last) records the same inputs digest."""
    data_id = {"skymap": skymap.name, "tract": skymap.tract, "patch": patch}
    if not repo.has("drp_coadd_objects_info", run=run, **data_id):
        return None
    info = repo.get("drp_coadd_objects_info", collections=run, **data_id)
    if info.get("digest") != digest or not repo.has("drp_coadd_objects", run=run, **data_id):
        return None
    table: Table = repo.get("drp_coadd_objects", collections=run, **data_id)
    table.meta.update(info)  # the Arrow storage keeps no table metadata
    return table


def _pixel_scale(ccd_rows: list[dict[str, Any]]) -> float:
    scales = [float(r["pixelScale"]) for r in ccd_rows if np.isfinite(r["pixelScale"])]
    return float(np.round(np.median(scales), 4)) if scales else 0.2


def _existing_quanta(repo: DataRepository, run: str) -> set[tuple[int, int]]:
    try:
        refs = repo.butler.query_datasets(
            "source", collections=run, find_first=True, explain=False, limit=None
        )
    except Exception:  # the run does not exist yet
        return set()
    return {(int(r.dataId["visit"]), int(r.dataId["detector"])) for r in refs}


def _ccd_row(image: Any, exposure: ExposureInfo, detector: int) -> dict[str, Any]:
    meta = image.meta
    ny, nx = np.shape(image.data)
    wcs = image.wcs
    cx, cy = wcs.all_pix2world([(nx - 1) / 2, 0, 0, nx - 1, nx - 1], [(ny - 1) / 2, 0, ny - 1, ny - 1, 0], 0)
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600)
    fwhm = float(meta.get("PSF_FWHM", np.nan))
    sigma = fwhm / 2.3548
    var = np.asarray(image.variance)
    sky_noise = float(np.sqrt(np.nanmedian(var[var > 0]))) if np.any(var > 0) else np.nan
    flux5 = 5.0 * sky_noise * np.sqrt(4 * np.pi) * sigma
    return {
        "ccdVisitId": ccd_visit_id(exposure.id, detector),
        "visitId": exposure.id,
        "detector": detector,
        "band": exposure.band,
        "physical_filter": f"{exposure.band}_sim",
        "ra": float(cx[0]),
        "dec": float(cy[0]),
        "llcra": float(cx[1]), "llcdec": float(cy[1]),
        "ulcra": float(cx[2]), "ulcdec": float(cy[2]),
        "urcra": float(cx[3]), "urcdec": float(cy[3]),
        "lrcra": float(cx[4]), "lrcdec": float(cy[4]),
        "pixelScale": scale,
        "zeroPoint": float(meta.get("ZEROPT", np.nan)),
        "psfSigma": sigma,
        "seeing": fwhm * scale,
        "skyNoise": sky_noise,
        "expTime": exposure.exposure_time,
        "expMidptMJD": exposure.mjd,
        "xSize": nx,
        "ySize": ny,
        "astromOffsetStd": float(meta.get("ASTRMS", np.nan)) / 1000.0,
        "magLim": float(-2.5 * np.log10(flux5) + 31.4) if flux5 > 0 else np.nan,
    }  # fmt: skip


def run_release(
    repo_path: str | Path,
    release: str = "dp1",
    *,
    workers: int = 1,
    config: DrpConfig | None = None,
    catalog_url: str | None = None,
    state_url: str | None = None,
    scheduler: str | None = None,
    show_progress: bool = True,
    compute_metrics: bool = True,
    visits: Collection[int] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> DrpReport:
    """Process every visit of ``repo_path`` into release ``release`` and load it into the catalog.

    Parameters
    ----------
    repo_path
        A Butler repo with raws, flats and a reference catalog (``pachon simulate``).
    release
        Release name: the RUN ``Pachon/runs/<release>`` and the catalog schema (``dp1``, ``dp2``…).
    workers
        Dask worker processes for the per-detector steps (1 runs in-process).
    catalog_url, state_url
        Catalog and state databases (default: the repo's ``catalog/`` folder and state SQLite).
    visits
        Process only these exposure IDs (default: every visit with raws), e.g. for the scaling
        benchmark's partial releases.

    Examples
    --------
    >>> from pachon.pipelines.drp import run_release          # doctest: +SKIP
    >>> report = run_release("demo/repo", "dp1", workers=2)   # doctest: +SKIP
    >>> report.metrics["AM1"]                                  # doctest: +SKIP
    """
    with _MemoryMeter() as meter:
        return _run_release(
            repo_path, release, workers=workers, config=config, catalog_url=catalog_url,
            state_url=state_url, scheduler=scheduler, show_progress=show_progress,
            compute_metrics=compute_metrics, visits=visits, log=log, meter=meter,
        )  # fmt: skip


def _run_release(
    repo_path: str | Path,
    release: str = "dp1",
    *,
    workers: int = 1,
    config: DrpConfig | None = None,
    catalog_url: str | None = None,
    state_url: str | None = None,
    scheduler: str | None = None,
    show_progress: bool = True,
    compute_metrics: bool = True,
    visits: Collection[int] | None = None,
    log: Callable[[str], None] = lambda _m: None,
    meter: _MemoryMeter,
) -> DrpReport:
    """The body of :func:`run_release`, with ``meter`` recording each step's peak memory."""
    t_start = time.perf_counter()
    config = config or DrpConfig()
    path = str(Path(repo_path).resolve())
    run = release_run(release)
    report = DrpReport(release=release, run=run)
    repo = DataRepository.open(path, writeable=True)
    for name, dims, sc in DATASET_TYPES:
        repo.register_dataset_type(name, dims, sc)
    exposures = list_exposures(repo)
    if not exposures:
        raise FileNotFoundError(
            f"{path}: no raw exposures; simulate or ingest raws first (`pachon simulate`)"
        )
    if visits is not None:
        wanted = {int(v) for v in visits}
        exposures = [e for e in exposures if e.id in wanted]
        if missing := sorted(wanted - {e.id for e in exposures}):
            raise FileNotFoundError(f"{path}: no raws for visits {missing[:10]}")
    by_id = {e.id: e for e in exposures}
    quanta = [(e, d) for e in exposures for d in detectors_of(repo, e.id)]
    done = _existing_quanta(repo, run)
    todo = [(e, d) for e, d in quanta if (e.id, d) not in done]
    report.quanta, report.skipped = len(quanta), len(quanta) - len(todo)
    config_json = config.prompt.model_dump_json()
    clear_caches()

    def add_timings(t: dict[str, float]) -> None:
        for k, v in t.items():
            report.quantum_step_seconds[k] = report.quantum_step_seconds.get(k, 0.0) + float(v)

    with _executor(workers, scheduler) as mapper, progress(disable=not show_progress) as bar:
        # ---------------------------------------------------------------- 1. single-visit processing
        t0 = time.perf_counter()
        task = bar.add_task(f"{release}: single-visit processing", total=len(todo))
        for res in mapper(
            calibrate_quantum,
            [path] * len(todo),
            [e for e, _ in todo],
            [d for _, d in todo],
            [config_json] * len(todo),
        ):
            assert isinstance(res, QuantumResult)
            add_timings(res.timings)
            if res.ok and res.visit_image is not None and res.sources is not None:
                t_w = time.perf_counter()
                data_id = {"visit": res.visit, "detector": res.detector}
                _replace(repo, res.psf, "drp_psf", run, **data_id)
                _replace(repo, res.visit_image, "visit_image", run, **data_id)
                repo.put(res.sources, "source", run=run, **data_id)  # last: marks the quantum done
                add_timings({"write": time.perf_counter() - t_w})
                report.processed += 1
            else:
                report.failures.append(f"visit {res.visit} detector {res.detector}: {res.reason}")
            bar.advance(task)
        report.step_seconds["single_visit"] = time.perf_counter() - t0
        _step_memory(report, meter, "single_visit")

        # ---------------------------------------------------------------- 2. multi-visit solution
        t0 = time.perf_counter()
        refs = list(
            repo.butler.query_datasets("source", collections=run, find_first=True, explain=False, limit=None)
        )
        refs.sort(key=lambda r: (int(r.dataId["visit"]), int(r.dataId["detector"])))
        if not refs:
            raise RuntimeError(f"{path}: no detector-visit was calibrated; failures: {report.failures[:5]}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sources = vstack([repo.butler.get(r) for r in refs], metadata_conflicts="silent")
        ccd_rows = []
        images_meta: dict[tuple[int, int], float] = {}
        for r in refs:
            v, d = int(r.dataId["visit"]), int(r.dataId["detector"])
            image = repo.get("visit_image", visit=v, detector=d, collections=run)
            ccd_rows.append(_ccd_row(image, by_id[v], d))
            images_meta[(v, d)] = by_id[v].mjd
        report.step_seconds["read_sources"] = time.perf_counter() - t0
        _step_memory(report, meter, "read_sources")

        t0 = time.perf_counter()
        group = associate(sources, config)
        n_obj = int(group.max()) + 1 if (group >= 0).any() else 0
        sel = group >= 0
        ext_sum = np.bincount(
            group[sel], weights=np.asarray(sources["extendedness"], float)[sel], minlength=n_obj
        )
        counts = np.bincount(group[sel], minlength=n_obj)
        extendedness = ext_sum / np.maximum(counts, 1)
        extended = extendedness > config.extendedness_threshold
        report.step_seconds["associate"] = time.perf_counter() - t0
        _step_memory(report, meter, "associate")

        t0 = time.perf_counter()
        refcat = load_refcat(path)
        astro = fit_astrometry_global(sources, group, config, refcat=refcat, extended=extended)
        report.noise_floor_mas = astro.noise_floor_mas
        report.step_seconds["astrometry"] = time.perf_counter() - t0
        _step_memory(report, meter, "astrometry")

        t0 = time.perf_counter()
        cal = ubercal(sources, group, config, extended=extended, refcat=refcat)
        report.ubercal_rms_mmag = cal.rms_mmag
        src_factor = cal.factor(  # with positions: the star flat applies per source
            np.asarray(sources["ccdVisitId"], np.int64),
            np.asarray(sources["x"], float),
            np.asarray(sources["y"], float),
        )
        report.step_seconds["ubercal"] = time.perf_counter() - t0
        _step_memory(report, meter, "ubercal")

        # ---------------------------------------------------------------- 3. deep coadds
        t0 = time.perf_counter()
        keys = sorted(images_meta)
        skymap = release_skymap(
            repo, run, keys, pixel_scale=_pixel_scale(ccd_rows), patch_size=config.coadd_patch_size
        )
        corners = {
            (int(r["visitId"]), int(r["detector"])): (
                np.array([r["llcra"], r["ulcra"], r["urcra"], r["lrcra"]], float),
                np.array([r["llcdec"], r["ulcdec"], r["urcdec"], r["lrcdec"]], float),
            )
            for r in ccd_rows
        }
        factors: dict[tuple[int, int], float] = {}
        flats: dict[tuple[int, int], tuple[float, ...]] = {}
        for row in ccd_rows:  # ubercal: per detector-visit factor × the detector's star flat (on a grid)
            k = (int(row["visitId"]), int(row["detector"]))
            ccd_id = np.array([ccd_visit_id(*k)], np.int64)
            f_det = float(cal.factor(ccd_id)[0])
            factors[k] = f_det if np.isfinite(f_det) and f_det > 0 else 1.0
            gx, gy = flat_grid_points((int(row["ySize"]), int(row["xSize"])))
            total = cal.factor(np.repeat(ccd_id, len(gx)), gx, gy) / factors[k]
            flats[k] = tuple(float(v) for v in total) if np.all(np.isfinite(total) & (total > 0)) else ()
        plan = plan_coadds(
            skymap, corners, {k: by_id[k[0]].band for k in keys}, factors, flats, images_meta,
            border=config.coadd_border,
        )  # fmt: skip
        creport = CoaddReport(skymap=skymap.name)
        done_c = [q for q in plan if _coadd_done(repo, run, skymap, q)]
        todo_c = [q for q in plan if q not in done_c]
        creport.skipped = len(done_c)
        ok_quanta = list(done_c)
        ctask = bar.add_task(f"{release}: deep coadds", total=len(todo_c))
        sk = dict(skymap.__dict__)
        for q, image, info, secs in mapper(
            coadd_quantum, [path] * len(todo_c), [run] * len(todo_c), [sk] * len(todo_c), todo_c
        ):
            add_timings({"coadd": secs})
            if isinstance(image, str) or info is None:
                report.failures.append(f"coadd patch {q.patch} band {q.band}: {image}")
            else:
                cid: dict[str, Any] = {
                    "skymap": skymap.name, "tract": skymap.tract, "patch": q.patch, "band": q.band
                }  # fmt: skip
                _replace(repo, image, "deep_coadd", run, **cid)
                _replace(repo, info, "drp_coadd_psf", run, **cid)  # last: marks the quantum done
                ok_quanta.append(q)
                creport.built += 1
            bar.advance(ctask)
        for q in ok_quanta:
            creport.patches.setdefault(q.band, []).append(q.patch)
        patches = {p.id: p for p in skymap.patches()}
        creport.patch_rows = [patch_row(skymap, patches[p]) for p in sorted({q.patch for q in ok_quanta})]
        report.coadds_built, report.coadds_skipped = creport.built, creport.skipped
        report.step_seconds["coadd"] = time.perf_counter() - t0
        _step_memory(report, meter, "coadd")

        # ---------------------------------------------------------------- 4. detection and measurement
        t0 = time.perf_counter()
        settings = {
            "ref_band": config.ref_band,
            "threshold": config.detect_threshold,
            "min_area": config.detect_min_area,
            "deblend_cont": config.deblend_cont,
            "version": MEASURE_VERSION,
        }
        by_patch: dict[int, dict[str, str]] = {}
        for q in ok_quanta:
            by_patch.setdefault(q.patch, {})[q.band] = q.digest
        digests = {p: measure_digest(b, settings) for p, b in by_patch.items()}
        patch_tables: dict[int, Table] = {}
        for p, dg in digests.items():
            prev = _measured(repo, run, skymap, p, dg)
            if prev is not None:
                patch_tables[p] = prev
        todo_p = sorted(p for p in digests if p not in patch_tables)
        report.patches_skipped = len(patch_tables)
        mtask = bar.add_task(f"{release}: coadd detection and measurement", total=len(todo_p))
        for p, tab, secs in mapper(
            measure_quantum,
            [path] * len(todo_p),
            [run] * len(todo_p),
            [skymap.name] * len(todo_p),
            [skymap.tract] * len(todo_p),
            todo_p,
            [sorted(by_patch[p]) for p in todo_p],
            settings=settings,
        ):
            add_timings({"measure": secs})
            if isinstance(tab, str):
                report.failures.append(f"measure patch {p}: {tab}")
            else:
                tab.meta["digest"] = digests[p]
                pid = {"skymap": skymap.name, "tract": skymap.tract, "patch": p}
                _replace(repo, tab, "drp_coadd_objects", run, **pid)
                _replace(
                    repo,
                    json.loads(json.dumps(dict(tab.meta), default=_jsonable)),
                    "drp_coadd_objects_info",
                    run,
                    **pid,
                )
                patch_tables[p] = tab
                report.patches_measured += 1
            bar.advance(mtask)
        if not patch_tables:
            raise RuntimeError(f"{path}: no patch could be measured; failures: {report.failures[-5:]}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coadd_cat = vstack([patch_tables[p] for p in sorted(patch_tables)], join_type="outer")
        for band in sorted({q.band for q in ok_quanta}):
            depths = [patch_tables[p].meta.get("depth", {}).get(band) for p in sorted(patch_tables)]
            finite = [float(d) for d in depths if d is not None and np.isfinite(d)]
            creport.depth[band] = float(np.median(finite)) if finite else float("nan")
        for q in ok_quanta:  # each patch's measured depth with the inputs it was made of (for the metric)
            patch_depth = (
                patch_tables[q.patch].meta.get("depth", {}).get(q.band) if q.patch in patch_tables else None
            )
            if patch_depth is not None and np.isfinite(patch_depth):
                big = expanded_patch(patches[q.patch], q.border)
                keys_in = [(int(v), int(det)) for v, det, *_ in q.inputs]
                creport.patch_depths.append(
                    PatchDepth(
                        band=q.band, measured=float(patch_depth), inputs=keys_in,
                        polygons=patch_polygons(big, [corners[k] for k in keys_in]), shape=(big.ny, big.nx),
                    )
                )  # fmt: skip
        report.step_seconds["measure"] = time.perf_counter() - t0
        _step_memory(report, meter, "measure")

        # ---------------------------------------------------------------- 5. Objects: join the astrometry
        t0 = time.perf_counter()
        epoch = float(np.mean([images_meta[k] for k in keys]))
        star = join_astrometry(
            np.asarray(coadd_cat["coord_ra"], float), np.asarray(coadd_cat["coord_dec"], float), astro,
            epoch, config.ref_epoch_mjd, radius_arcsec=config.join_radius_arcsec,
        )  # fmt: skip
        group_object = np.full(n_obj, -1, np.int64)
        group_object[star[star >= 0]] = np.asarray(coadd_cat["objectId"], np.int64)[star >= 0]
        scale = float(patch_tables[min(patch_tables)].meta.get("pixel_scale_deg", 0.2 / 3600))
        ref_band = config.ref_band if f"{config.ref_band}_psfFlux" in coadd_cat.colnames else "i"
        objects = coadd_object_table(coadd_cat, astro, star, ref_band, scale)
        report.step_seconds["objects"] = time.perf_counter() - t0
        _step_memory(report, meter, "objects")

        # ---------------------------------------------------------------- 6. forced photometry
        t0 = time.perf_counter()
        # forced positions: the 5-parameter fit at each visit's epoch where it ran, else the coadd centroid
        jstar = np.where(star >= 0, star, 0)
        moving = (star >= 0) & astro.fitted_motion[jstar] if len(astro.ra) else np.zeros(len(star), bool)

        def fit_or(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
            return np.where(moving, values[jstar] if len(values) else 0.0, fallback)

        objects_arrays = {
            "objectId": np.asarray(objects["objectId"], np.int64),
            "parentObjectId": np.asarray(objects["parentObjectId"], np.int64),
            "coord_ra": fit_or(astro.ra, np.asarray(coadd_cat["coord_ra"], float)),
            "coord_dec": fit_or(astro.dec, np.asarray(coadd_cat["coord_dec"], float)),
            "pmRa": fit_or(astro.params[:, 2], np.zeros(len(star))),
            "pmDec": fit_or(astro.params[:, 3], np.zeros(len(star))),
            "parallax": fit_or(astro.params[:, 4], np.zeros(len(star))),
            "tract": np.asarray(objects["tract"], np.int64),
            "patch": np.asarray(objects["patch"], np.int64),
        }
        ftask = bar.add_task(f"{release}: forced photometry", total=len(keys))
        forced_parts: list[Table] = []
        for v, d, out, secs in mapper(
            forced_quantum,
            [path] * len(keys),
            [run] * len(keys),
            [k[0] for k in keys],
            [k[1] for k in keys],
            [images_meta[k] for k in keys],
            [by_id[k[0]].band for k in keys],
            objects=objects_arrays,
            ref_epoch_mjd=config.ref_epoch_mjd,
        ):
            add_timings({"forced": secs})
            if isinstance(out, str):
                report.failures.append(f"forced visit {v} detector {d}: {out}")
            elif len(out):
                f = cal.factor(  # with positions: the star flat applies per measurement
                    np.full(len(out), ccd_visit_id(v, d), np.int64),
                    np.asarray(out["x"]),
                    np.asarray(out["y"]),
                )
                out["psfFlux"] = np.asarray(out["psfFlux"]) * f
                out["psfFluxErr"] = np.asarray(out["psfFluxErr"]) * f
                out.remove_columns(["x", "y"])
                forced_parts.append(out)
            bar.advance(ftask)
        forced = vstack(forced_parts) if forced_parts else Table()
        if len(forced):
            forced.sort(["objectId", "visit"])
        report.step_seconds["forced"] = time.perf_counter() - t0
        _step_memory(report, meter, "forced")

    # ---------------------------------------------------------------- 7. tables
    t0 = time.perf_counter()
    source_tab = source_table(sources, group, astro, src_factor)
    source_tab["objectId"] = np.where(group >= 0, group_object[np.clip(group, 0, None)], -1)  # for metrics
    records = [
        r
        for r in repo.butler.registry.queryDimensionRecords("exposure", instrument=INSTRUMENT)
        if int(r.id) in by_id
    ]
    visits = visit_table(records, {e.id: e.mjd for e in exposures})
    ccd = ccd_visit_table(ccd_rows)
    report.n_objects, report.n_sources, report.n_forced, report.n_visits = (
        len(objects), len(source_tab), len(forced), len(visits)
    )  # fmt: skip
    report.coadd_depth = dict(creport.depth)
    report.n_objects_with_astrometry = int((star >= 0).sum())
    _replace(repo, objects, "drp_object_table", run)
    _replace(repo, forced, "drp_forced_source_table", run)
    _replace(repo, visits, "visit_table", run)
    _replace(repo, ccd, "visit_detector_table", run)
    coadd_depth = dict(creport.depth)
    coadd_patches: Table | None = creport.coadd_patches_table()
    report.step_seconds["tables"] = time.perf_counter() - t0
    _step_memory(report, meter, "tables")

    # ---------------------------------------------------------------- 5. catalog
    t0 = time.perf_counter()
    from pachon.pipelines.drp.load import load_release

    report.catalog_url = load_release(
        path, release, objects, source_tab, forced, visits, ccd, config=config, catalog_url=catalog_url,
        coadd_patches=coadd_patches,
    )  # fmt: skip
    report.step_seconds["catalog"] = time.perf_counter() - t0
    _step_memory(report, meter, "catalog")

    # ---------------------------------------------------------------- 6. metrics
    if compute_metrics:
        t0 = time.perf_counter()
        from pachon.pipelines.metrics import compute_release_metrics, store_metrics

        report.metrics = compute_release_metrics(
            repo, objects, source_tab, forced, config=config, coadd_depth=coadd_depth,
            patch_depths=creport.patch_depths,
        )  # fmt: skip
        for band, depth in sorted(coadd_depth.items()):
            report.metrics[f"coadd_depth_{band}"] = (
                depth, "mag", "median over patches of the deep coadd's 5σ PSF-flux depth, from the scatter "
                "of PSF fluxes at random source-free positions (includes correlated noise)",
            )  # fmt: skip
        report.step_seconds["metrics"] = time.perf_counter() - t0
        _step_memory(report, meter, "metrics")
        report.metric_run_id = store_metrics(
            report.metrics,
            pipeline="drp",
            release=release,
            config=json.loads(config.model_dump_json()),
            state_url=state_url or _default_state_url(path),
        )
    report.step_seconds["total"] = time.perf_counter() - t_start
    for peaks in (report.step_peak_rss_mib, report.step_peak_worker_rss_mib):
        peaks["total"] = max(peaks.values(), default=0.0)
    summary = report.to_dict() | {"config": json.loads(config.model_dump_json()), "code_version": __version__}
    _replace(repo, json.loads(json.dumps(summary, default=_jsonable)), "drp_summary", run)
    log(
        f"{release}: {report.n_objects} objects, {report.n_forced} forced sources in {report.step_seconds['total']:.1f} s"
    )
    return report


def _step_memory(report: DrpReport, meter: _MemoryMeter, step: str) -> None:
    report.step_peak_rss_mib[step], report.step_peak_worker_rss_mib[step] = meter.take()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return str(value)


def _default_state_url(repo_path: str) -> str:
    return f"sqlite:///{Path(repo_path).resolve() / 'state' / 'pachon.sqlite3'}"
