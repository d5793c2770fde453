"""The data-release driver: single-visit processing → multi-visit solution → forced photometry → catalog.

:func:`run_release` processes every visit of a repo into the RUN collection ``Pachon/runs/<release>``
and loads the DP1 tables into the catalog schema named after the release. It is resumable
(detector-visits whose ``source`` exists are skipped; ``source`` is written last), runs the
per-detector work on Dask (a ``LocalCluster`` of single-threaded worker processes by default,
``Settings.dask_scheduler`` when set, or in-process with ``workers=1``), shows a progress bar,
and records per-step timings and its configuration in the ``drp_summary`` dataset. The catalog
load replaces the release's tables, so re-running a release is idempotent and other releases
(other DuckDB files) are untouched.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack

from pachon._version import __version__
from pachon.core.progress import progress
from pachon.core.repo import INSTRUMENT, DataRepository
from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.forced import forced_quantum
from pachon.pipelines.drp.multivisit import associate, fit_astrometry_global, ubercal
from pachon.pipelines.drp.singlevisit import QuantumResult, calibrate_quantum
from pachon.pipelines.drp.tables import ccd_visit_table, object_table, source_table, visit_table
from pachon.pipelines.prompt.ids import ccd_visit_id
from pachon.pipelines.prompt.pipeline import (
    ExposureInfo,
    clear_caches,
    detectors_of,
    list_exposures,
    load_refcat,
)

__all__ = ["DATASET_TYPES", "DrpReport", "release_run", "run_release"]

DATASET_TYPES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("drp_psf", ("instrument", "visit", "detector"), "StructuredDataDict"),
    ("drp_summary", ("instrument",), "StructuredDataDict"),
    ("drp_skymap", ("instrument",), "StructuredDataDict"),
    ("drp_object_table", ("instrument",), "ArrowAstropy"),
    ("drp_forced_source_table", ("instrument",), "ArrowAstropy"),
)
"""Dataset types the release pipeline adds (per-detector PSF models, run summary, catalog tables)."""


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
    quantum_step_seconds: dict[str, float] = field(default_factory=dict)
    n_objects: int = 0
    n_sources: int = 0
    n_forced: int = 0
    n_visits: int = 0
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

    Examples
    --------
    >>> from pachon.pipelines.drp import run_release          # doctest: +SKIP
    >>> report = run_release("demo/repo", "dp1", workers=2)   # doctest: +SKIP
    >>> report.metrics["AM1"]                                  # doctest: +SKIP
    """
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

        t0 = time.perf_counter()
        refcat = load_refcat(path)
        astro = fit_astrometry_global(sources, group, config, refcat=refcat, extended=extended)
        report.noise_floor_mas = astro.noise_floor_mas
        report.step_seconds["astrometry"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cal = ubercal(sources, group, config, extended=extended)
        report.ubercal_rms_mmag = cal.rms_mmag
        src_factor = cal.factor(np.asarray(sources["ccdVisitId"], np.int64))
        report.step_seconds["ubercal"] = time.perf_counter() - t0

        # ---------------------------------------------------------------- 3. forced photometry
        t0 = time.perf_counter()
        objects_arrays = {
            "objectId": 10**12 + np.arange(n_obj, dtype=np.int64),
            "coord_ra": astro.ra,
            "coord_dec": astro.dec,
            "pmRa": np.where(astro.fitted_motion, astro.params[:, 2], 0.0),
            "pmDec": np.where(astro.fitted_motion, astro.params[:, 3], 0.0),
            "parallax": np.where(astro.fitted_motion, astro.params[:, 4], 0.0),
        }
        keys = sorted(images_meta)
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
                f = cal.factor(np.full(len(out), ccd_visit_id(v, d), np.int64))
                out["psfFlux"] = np.asarray(out["psfFlux"]) * f
                out["psfFluxErr"] = np.asarray(out["psfFluxErr"]) * f
                forced_parts.append(out)
            bar.advance(ftask)
        forced = vstack(forced_parts) if forced_parts else Table()
        forced.sort(["objectId", "visit"])
        report.step_seconds["forced"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- 4. tables
    t0 = time.perf_counter()
    band_fluxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    oidx = np.asarray(forced["objectId"], np.int64) - 10**12 if len(forced) else np.zeros(0, np.int64)
    fb = np.asarray(forced["band"]).astype(str) if len(forced) else np.zeros(0, str)
    for band in sorted({e.band for e in exposures}):
        m = (fb == band) & np.isfinite(np.asarray(forced["psfFlux"], float) if len(forced) else np.zeros(0))
        m &= ~np.asarray(forced["psfFlux_flag"], bool) if len(forced) else np.zeros(0, bool)
        flux = np.asarray(forced["psfFlux"], float)[m] if len(forced) else np.zeros(0)
        err = np.asarray(forced["psfFluxErr"], float)[m] if len(forced) else np.zeros(0)
        w = 1.0 / err**2
        sw = np.bincount(oidx[m], weights=w, minlength=n_obj)
        mean = np.bincount(oidx[m], weights=w * flux, minlength=n_obj) / np.where(sw > 0, sw, np.nan)
        band_fluxes[band] = (mean, 1.0 / np.sqrt(np.where(sw > 0, sw, np.nan)))
    med = {
        c: np.bincount(group[sel], weights=np.asarray(sources[c], float)[sel], minlength=n_obj)
        / np.maximum(counts, 1)
        for c in ("ixx", "iyy", "ixy")
    }
    ref_band = "r" if "r" in band_fluxes else sorted(band_fluxes)[0]
    objects = object_table(astro, extendedness, band_fluxes, (med["ixx"], med["iyy"], med["ixy"]), ref_band)
    source_tab = source_table(sources, group, astro, src_factor)
    source_tab["objectId"] = np.where(group >= 0, 10**12 + group, -1)  # kept for metrics, not loaded
    records = list(repo.butler.registry.queryDimensionRecords("exposure", instrument=INSTRUMENT))
    visits = visit_table(records, {e.id: e.mjd for e in exposures})
    ccd = ccd_visit_table(ccd_rows)
    report.n_objects, report.n_sources, report.n_forced, report.n_visits = (
        len(objects), len(source_tab), len(forced), len(visits)
    )  # fmt: skip
    _replace(repo, objects, "drp_object_table", run)
    _replace(repo, forced, "drp_forced_source_table", run)
    _replace(repo, visits, "visit_table", run)
    _replace(repo, ccd, "visit_detector_table", run)
    report.step_seconds["tables"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- 4b. deep coadds
    coadd_depth: dict[str, float] = {}
    coadd_patches: Table | None = None
    if config.coadds:
        t0 = time.perf_counter()
        from pachon.pipelines.drp.coadd import build_deep_coadds

        creport = build_deep_coadds(
            repo, run, [(v, d, by_id[v].band) for v, d in keys], patch_size=config.coadd_patch_size
        )
        coadd_depth = creport.depth
        coadd_patches = creport.coadd_patches_table()
        report.step_seconds["coadd"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- 5. catalog
    t0 = time.perf_counter()
    from pachon.pipelines.drp.load import load_release

    report.catalog_url = load_release(
        path, release, objects, source_tab, forced, visits, ccd, config=config, catalog_url=catalog_url,
        coadd_patches=coadd_patches,
    )  # fmt: skip
    report.step_seconds["catalog"] = time.perf_counter() - t0

    # ---------------------------------------------------------------- 6. metrics
    if compute_metrics:
        t0 = time.perf_counter()
        from pachon.pipelines.metrics import compute_release_metrics, store_metrics

        report.metrics = compute_release_metrics(repo, objects, source_tab, forced, config=config)
        for band, depth in sorted(coadd_depth.items()):
            report.metrics[f"coadd_depth_{band}"] = (
                depth, "mag", "median 5σ PSF depth of the deep coadd from its variance plane (ignores the "
                "pixel covariance of warping/PSF matching, so optimistic)",
            )  # fmt: skip
        report.step_seconds["metrics"] = time.perf_counter() - t0
        report.metric_run_id = store_metrics(
            report.metrics,
            pipeline="drp",
            release=release,
            config=json.loads(config.model_dump_json()),
            state_url=state_url or _default_state_url(path),
        )
    report.step_seconds["total"] = time.perf_counter() - t_start
    summary = report.to_dict() | {"config": json.loads(config.model_dump_json()), "code_version": __version__}
    _replace(repo, json.loads(json.dumps(summary, default=_jsonable)), "drp_summary", run)
    log(
        f"{release}: {report.n_objects} objects, {report.n_forced} forced sources in {report.step_seconds['total']:.1f} s"
    )
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return str(value)


def _default_state_url(repo_path: str) -> str:
    return f"sqlite:///{Path(repo_path).resolve() / 'state' / 'pachon.sqlite3'}"
