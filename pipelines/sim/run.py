"""Run a simulated survey into a data repository: plan, draw the sky, render, write, resume.

:func:`simulate` is the one entry point (the CLI ``pachon simulate`` calls it). It

1. creates (or completes) the Butler repo and registers detectors, exposures/visits and the
   simulator's extra dataset types;
2. plans the cadence and draws the sky from the seed;
3. writes the run-level products once: ``sim_config``, the truth tables, the reference
   catalog shards, the flats, the visit table and per-exposure asteroid ephemerides;
4. renders every detector-visit in worker processes (``workers``; a progress bar shows
   them) and writes ``raw``, ``truth_visit_sources`` and ``truth_visit_info``.

Determinism: all randomness comes from ``numpy`` generators seeded by ``(seed, purpose,
exposure, detector)``, so the same seed gives byte-identical files whatever the number of
workers or the order in which detector-visits finish. Resume: every dataset is checked
with ``repo.has`` before it is written, so an interrupted run completes on re-run without
duplicating anything (a finished run re-runs as a no-op).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from lsst.daf.butler import CollectionType, DatasetIdGenEnum, DatasetRef

from pachon.core.image import Exposure
from pachon.core.logging import get_logger
from pachon.core.progress import progress
from pachon.core.repo import INSTRUMENT, DataRepository, DetectorSpec, ExposureSpec, physical_filter
from pachon.pipelines.sim.cadence import Visit, plan_survey
from pachon.pipelines.sim.config import SimConfig, preset
from pachon.pipelines.sim.optics import DetectorGeometry
from pachon.pipelines.sim.orbits import observer_and_sun
from pachon.pipelines.sim.photometry import mag_to_flux
from pachon.pipelines.sim.refcat import make_refcat, shard_refcat
from pachon.pipelines.sim.render import (
    defect_mask,
    detector_electronics,
    pipeline_flat,
    render_detector_visit,
)
from pachon.pipelines.sim.render import detector_name as _detector_name
from pachon.pipelines.sim.skymodel import Sky, make_sky, sources_at

__all__ = ["EXTRA_DATASET_TYPES", "SimulationSummary", "Survey", "build_survey", "simulate"]

log = get_logger(__name__)

EXTRA_DATASET_TYPES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("sim_config", (), "StructuredDataDict"),
    ("truth_visits", (), "ArrowAstropy"),
    ("truth_visit_info", ("instrument", "exposure", "detector"), "StructuredDataDict"),
)
"""Dataset types the simulator adds to the standard ones (all in run ``Pachon/truth``)."""

TRUTH_RUN = "Pachon/truth"
SIM_VERSION = "1"


@dataclass
class Survey:
    """Everything drawn from (config, seed) before any pixel is rendered."""

    config: SimConfig
    seed: int
    visits: list[Visit]
    sky: Sky
    observer: np.ndarray  # (n_visits, 3) barycentric AU at mid-exposure
    ephemerides: dict[int, dict[str, np.ndarray]]  # exposure -> asteroid ephemeris columns

    def visit(self, exposure: int) -> Visit:
        for v in self.visits:
            if v.exposure == exposure:
                return v
        raise KeyError(f"no exposure {exposure} in this survey")


def build_survey(config: SimConfig, seed: int) -> Survey:
    """Plan the cadence, draw the sky and compute the asteroid ephemerides (no pixels)."""
    rng_cadence = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    visits = plan_survey(config, rng_cadence)
    rng_sky = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    sky = make_sky(config, visits, rng_sky)
    n = len(visits)
    t_start = np.array([v.mjd_start for v in visits])
    t_mid = np.array([v.mjd_mid for v in visits])
    t_end = np.array([v.mjd_start + v.exposure_time / 86400.0 for v in visits])
    obs, sun = observer_and_sun(np.concatenate([t_start, t_mid, t_end]))
    ephemerides: dict[int, dict[str, np.ndarray]] = {}
    orbits = sky.orbits
    for k, v in enumerate(visits):
        start = orbits.topocentric(t_start[k], obs[k], sun[k])
        mid = orbits.topocentric(t_mid[k], obs[n + k], sun[n + k])
        end = orbits.topocentric(t_end[k], obs[2 * n + k], sun[2 * n + k])
        mag = orbits.magnitude(v.band, mid["r"], mid["delta"], mid["phase"])
        dt = (t_end[k] - t_start[k]) or 1e-9
        cosd = np.cos(np.radians(mid["dec"]))
        ephemerides[v.exposure] = {
            "id": orbits.id,
            "ra": mid["ra"],
            "dec": mid["dec"],
            "ra_start": start["ra"],
            "dec_start": start["dec"],
            "ra_end": end["ra"],
            "dec_end": end["dec"],
            "ra_rate": ((end["ra"] - start["ra"] + 180) % 360 - 180) * cosd / dt,
            "dec_rate": (end["dec"] - start["dec"]) / dt,
            "r": mid["r"],
            "delta": mid["delta"],
            "phase": mid["phase"],
            "mag": mag,
            "flux": mag_to_flux(mag),
        }
    return Survey(config, seed, visits, sky, obs[n : 2 * n], ephemerides)


@dataclass
class SimulationSummary:
    """What a run did (counts) and how long it took."""

    repo: Path
    preset: str
    seed: int
    visits: int
    detectors: int
    rendered: int = 0
    skipped: int = 0
    seconds: float = 0.0
    written: dict[str, int] = field(default_factory=dict)

    def count(self, dataset_type: str) -> None:
        self.written[dataset_type] = self.written.get(dataset_type, 0) + 1


# --------------------------------------------------------------------------- worker side
_WORKER: dict[str, Any] = {}


def _init_worker(survey: Survey) -> None:
    _WORKER["survey"] = survey
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _render_task(index: int, detector: int) -> tuple[int, int, Exposure, Table, dict[str, Any]]:
    survey: Survey = _WORKER["survey"]
    visit = survey.visits[index]
    sources = sources_at(survey.sky, visit, survey.observer[index], survey.ephemerides[visit.exposure])
    result = render_detector_visit(survey.config, survey.seed, visit, detector, sources)
    return index, detector, result.raw, result.truth, result.info


# --------------------------------------------------------------------------- main side
def _ephemeris_table(survey: Survey, visit: Visit) -> Table:
    e = survey.ephemerides[visit.exposure]
    cam = survey.config.camera
    det = np.full(len(e["id"]), -1, np.int32)
    xs = np.full(len(e["id"]), np.nan)
    ys = np.full(len(e["id"]), np.nan)
    for d in range(cam.n_detectors):
        x, y = DetectorGeometry(cam, d).world_to_pixel(
            e["ra"], e["dec"], visit.true_ra, visit.true_dec, visit.true_sky_angle
        )
        on = (x >= -0.5) & (x < cam.nx - 0.5) & (y >= -0.5) & (y < cam.ny - 0.5)
        det[on], xs[on], ys[on] = d, x[on], y[on]
    t = Table(
        {
            "id": e["id"],
            "exposure": np.full(len(e["id"]), visit.exposure, np.int64),
            "mjd": np.full(len(e["id"]), visit.mjd_mid),
            "ra": e["ra"],
            "dec": e["dec"],
            "ra_rate": e["ra_rate"],
            "dec_rate": e["dec_rate"],
            "r": e["r"],
            "delta": e["delta"],
            "phase": e["phase"],
            "mag": e["mag"],
            "flux": e["flux"],
            "detector": det,
            "x": xs,
            "y": ys,
        },
        meta={
            "description": "topocentric astrometric positions at mid-exposure (MJD TAI), deg; rates deg/day "
            "(ra_rate includes cos dec); r, delta AU; phase deg; mag AB in the visit band; flux nJy; "
            "detector -1 when off the focal plane; x/y without atmospheric jitter"
        },
    )
    for col, unit in (("ra", "deg"), ("dec", "deg"), ("ra_rate", "deg/d"), ("dec_rate", "deg/d"),
                      ("r", "AU"), ("delta", "AU"), ("phase", "deg"), ("flux", "nJy"), ("mjd", "d")):  # fmt: skip
        t[col].unit = unit
    return t


def _visit_table(survey: Survey) -> Table:
    rows = [v.as_dict() for v in survey.visits]
    t = Table(rows=rows, names=list(rows[0].keys()))
    t.meta["description"] = (
        "one row per visit: commanded ra/dec/sky_angle vs true_*; seeing = PSF FWHM at the field centre "
        "(arcsec); sky_mag mag/arcsec²; cloud = transparency loss (mag); mjd_start MJD TAI"
    )
    return t


def _ensure_registered(repo: DataRepository, survey: Survey) -> None:
    cam = survey.config.camera
    repo.register_detectors(
        [
            DetectorSpec(id=d, name=_detector_name(survey.config, d), raft="R00", nx=cam.nx, ny=cam.ny)
            for d in range(cam.n_detectors)
        ]
    )
    for name, dims, storage in EXTRA_DATASET_TYPES:
        repo.register_dataset_type(name, dims, storage)
    for v in survey.visits:
        repo.register_exposure(
            ExposureSpec(
                id=v.exposure,
                day_obs=v.day_obs,
                band=v.band,
                physical_filter=physical_filter(v.band),
                start=Time(v.mjd_start, format="mjd", scale="tai"),
                exposure_time=v.exposure_time,
                ra=v.ra,
                dec=v.dec,
                sky_angle=v.sky_angle,
                airmass=v.airmass,
                seq_num=v.seq_num,
                observation_reason="science",
                target_name="pachon_field",
            )
        )


def put_deterministic(
    repo: DataRepository, obj: Any, dataset_type: str, run: str | None, **data_id: Any
) -> None:
    """Put with a dataset UUID derived from (type, data ID, run) instead of a random one.

    The Butler records the dataset ID inside Parquet metadata, so random UUIDs would make
    two runs with the same seed differ byte-wise; ``DATAID_TYPE_RUN`` IDs make them equal
    (and identical re-runs reproduce the same IDs, as ARCHITECTURE.md asks of all IDs).
    """
    butler = repo.butler
    target = run or repo.default_run(dataset_type)
    dataset_type_obj = butler.get_dataset_type(dataset_type)
    if "instrument" in dataset_type_obj.dimensions.names:
        data_id.setdefault("instrument", INSTRUMENT)
    coordinate = butler.registry.expandDataId(data_id, dimensions=dataset_type_obj.dimensions)
    ref = DatasetRef(
        dataset_type_obj, coordinate, run=target, id_generation_mode=DatasetIdGenEnum.DATAID_TYPE_RUN
    )
    butler.registry.registerCollection(target, CollectionType.RUN)
    butler.put(obj, ref)


def _put_once(
    repo: DataRepository, summary: SimulationSummary, obj: Any, dataset_type: str, **kw: Any
) -> None:
    run = kw.pop("run", None)
    if repo.has(dataset_type, run=run, **kw):
        return
    put_deterministic(repo, obj, dataset_type, run, **kw)
    summary.count(dataset_type)


def _write_run_products(repo: DataRepository, survey: Survey, summary: SimulationSummary) -> None:
    cfg = survey.config
    sky = survey.sky
    _put_once(
        repo, summary,
        {"seed": survey.seed, "version": SIM_VERSION, "config": cfg.model_dump(mode="json")},
        "sim_config", run=TRUTH_RUN,
    )  # fmt: skip
    for name, table in (
        ("truth_stars", sky.stars),
        ("truth_galaxies", sky.galaxies),
        ("truth_variables", sky.variables),
        ("truth_transients", sky.transients),
        ("truth_asteroid_orbits", sky.orbit_table()),
        ("truth_visits", _visit_table(survey)),
    ):
        _put_once(repo, summary, table, name, run=TRUTH_RUN)
    rng = np.random.default_rng(np.random.SeedSequence([survey.seed, 3]))
    for htm, shard in shard_refcat(make_refcat(sky.stars, cfg.refcat_mag_limit, rng)).items():
        _put_once(repo, summary, shard, "refcat", htm7=htm)
    cfg_json = cfg.model_dump_json()
    cam = cfg.camera
    for band in sorted({v.band for v in survey.visits}):
        for d in range(cam.n_detectors):
            if repo.has("flat", detector=d, physical_filter=physical_filter(band)):
                continue
            el = detector_electronics(survey.seed, d, cam.nx, cam.ny)
            mask = np.where(defect_mask(el, cam.nx, cam.ny), np.int32(1), np.int32(0))
            header = fits.Header()
            header["BAND"] = band
            header["FILTER"] = physical_filter(band)
            header["DETECTOR"] = d
            header["FLATERR"] = (cfg.flat_error, "rms error of this flat vs the true response")
            header["COMMENT"] = "Normalised flat field (imperfect); divide bias-subtracted electrons by it."
            flat = Exposure(pipeline_flat(cfg_json, survey.seed, d, band), unit="", mask=mask, meta=header)
            _put_once(repo, summary, flat, "flat", detector=d, physical_filter=physical_filter(band))
    for v in survey.visits:
        _put_once(repo, summary, _ephemeris_table(survey, v), "truth_ephemerides", exposure=v.exposure)


def _existing(repo: DataRepository, dataset_type: str, run: str) -> set[tuple[int, int]]:
    """(exposure, detector) of every ``dataset_type`` already in ``run``: one query instead of one per dataset."""
    try:
        refs = repo.butler.query_datasets(
            dataset_type, collections=run, find_first=True, explain=False, limit=None
        )
    except Exception:  # the collection may not exist yet
        return set()
    return {(int(r.dataId["exposure"]), int(r.dataId["detector"])) for r in refs}


def _pending(
    repo: DataRepository, survey: Survey
) -> tuple[list[tuple[int, int]], dict[str, set[tuple[int, int]]]]:
    """Detector-visits still to render, and what already exists per per-visit dataset type (for resuming)."""
    have = {
        "raw": _existing(repo, "raw", repo.default_run("raw")),
        "truth_visit_sources": _existing(repo, "truth_visit_sources", TRUTH_RUN),
        "truth_visit_info": _existing(repo, "truth_visit_info", TRUTH_RUN),
    }
    todo = []
    for i, v in enumerate(survey.visits):
        for d in range(survey.config.camera.n_detectors):
            if not all((v.exposure, d) in done for done in have.values()):
                todo.append((i, d))
    return todo, have


def simulate(
    repo_path: str | Path,
    preset_name: str = "tiny",
    seed: int = 1,
    *,
    config: SimConfig | None = None,
    workers: int | None = None,
    show_progress: bool = True,
    limit: int | None = None,
    release_pace: float | None = None,
) -> SimulationSummary:
    """Simulate a survey into the repo at ``repo_path`` (created if needed); resumable, deterministic.

    Parameters
    ----------
    repo_path
        Data repository folder (created with Pachón's conventions if missing).
    preset_name
        ``tiny``, ``small`` or ``medium`` (ignored when ``config`` is given).
    seed
        Everything random derives from it; the same seed gives byte-identical files.
    config
        A custom :class:`SimConfig` (tests use small ones).
    workers
        Worker processes rendering detectors (default: CPU count; 1 renders in-process).
    limit
        Stop after rendering this many detector-visits (to test resuming).
    release_pace
        Seconds to wait after each visit is complete, releasing visits in time order as a
        telescope would (for driving prompt processing live); None writes as fast as possible.

    Examples
    --------
    >>> from pachon.pipelines.sim import simulate                  # doctest: +SKIP
    >>> simulate("demo/repo", "tiny", seed=1).rendered            # doctest: +SKIP
    80
    """
    t0 = time.perf_counter()
    cfg = config or preset(preset_name)
    root = Path(repo_path)
    DataRepository.create(root)
    repo = DataRepository.open(root, writeable=True)
    survey = build_survey(cfg, seed)
    summary = SimulationSummary(root, cfg.name, seed, len(survey.visits), cfg.camera.n_detectors)
    _ensure_registered(repo, survey)
    _write_run_products(repo, survey, summary)
    todo, have = _pending(repo, survey)
    summary.skipped = len(survey.visits) * cfg.camera.n_detectors - len(todo)
    if limit is not None:
        todo = todo[:limit]
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    remaining = {i: sum(1 for j, _ in todo if j == i) for i, _ in todo}

    def write(index: int, detector: int, raw: Exposure, truth: Table, info: dict[str, Any]) -> None:
        exposure = survey.visits[index].exposure
        # raw last: a detector-visit counts as done once its raw exists
        for obj, dataset_type, run in (
            (truth, "truth_visit_sources", TRUTH_RUN),
            (info, "truth_visit_info", TRUTH_RUN),
            (raw, "raw", None),
        ):
            if (exposure, detector) not in have[dataset_type]:
                put_deterministic(repo, obj, dataset_type, run, exposure=exposure, detector=detector)
                summary.count(dataset_type)
        summary.rendered += 1
        remaining[index] -= 1
        if release_pace and remaining[index] == 0:
            time.sleep(release_pace)

    with progress(disable=not show_progress) as bar:
        task = bar.add_task(f"simulating {cfg.name} (seed {seed})", total=len(todo))
        if n_workers == 1:
            _init_worker(survey)
            for index, det in todo:
                write(*_render_task(index, det))
                bar.advance(task)
        else:
            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            with cf.ProcessPoolExecutor(
                n_workers, mp_context=ctx, initializer=_init_worker, initargs=(survey,)
            ) as pool:
                # keep a bounded number in flight (memory) and write in submission order (resume order)
                pending: list[cf.Future[Any]] = []
                queue = iter(todo)
                for index, det in queue:
                    pending.append(pool.submit(_render_task, index, det))
                    if len(pending) >= 2 * n_workers:
                        break
                while pending:
                    fut = pending.pop(0)
                    write(*fut.result())
                    bar.advance(task)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending.append(pool.submit(_render_task, *nxt))
    summary.seconds = time.perf_counter() - t0
    log.info(
        "simulated %s: %d detector-visits rendered, %d already present, in %.1f s",
        root, summary.rendered, summary.skipped, summary.seconds,
    )  # fmt: skip
    return summary
