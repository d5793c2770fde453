"""Running prompt processing as a service: visit after visit, as raws land, with prompt products in TAP.

:func:`process_pending` is what ``pachon prompt run`` does: for each visit to process, in time
order, :func:`~pachon.pipelines.prompt.pipeline.run_visit` (detectors in parallel, APDB
association, alerts archived then published), then the follow-ups that make the visit complete
for users:

1. **missing alerts**: DiaSources the APDB holds for the visit but the alert archive does not
   (a crash between the APDB's store and the archive's write) get their alerts rebuilt
   (:func:`recover_alerts`);
2. **undelivered alerts**: alerts of the visit that the archive holds but no broker acknowledged
   (a broker down during the visit, or a kill between archiving and publishing in an earlier
   run, after which the re-run finds the visit in the APDB and builds no new alerts) are
   published now; the archive's delivery records make this a no-op when all went out;
3. **prompt products in TAP**: :func:`~pachon.pipelines.prompt.ppdb.publish_ppdb` refreshes
   schema ``ppdb`` of the catalog from the APDB.

``follow=True`` then keeps watching the repo (``--follow``). A visit's raws land one detector at
a time (the simulator's ``--release-pace`` writes them as a camera's readout would arrive), so a
visit is *ready* when it has a raw for every detector of the instrument, or when its detector
count has not changed for ``settle_s`` seconds (a detector that never reads out must not block
the visit forever). Processing a visit before all its raws landed would mark it processed with
detectors missing.

Stopping: :class:`StopFlag` is set by SIGINT/SIGTERM (the CLI installs the handlers); the loop
finishes the visit in progress (so its alerts and products are complete) and returns. A second
signal interrupts at once. A visit interrupted by a kill has no ``prompt_visit_summary``, so the
next run processes it again: its IDs are deterministic, the APDB skips a visit it already holds,
and the archive publishes no alert twice.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.pipeline import (
    ExposureInfo,
    VisitReport,
    ensure_dataset_types,
    list_exposures,
    processed_visits,
    run_visit,
)

__all__ = [
    "LiveReport",
    "StopFlag",
    "process_pending",
    "publish_undelivered",
    "ready_visits",
    "recover_alerts",
]

Log = Callable[[str], None]


class StopFlag:
    """Set by the first SIGINT/SIGTERM (finish the current visit, then stop); the second interrupts.

    Examples
    --------
    >>> stop = StopFlag()
    >>> with stop.handling_signals():       # doctest: +SKIP
    ...     process_pending(repo, follow=True, stop=stop)
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set():  # second signal: stop now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def handling_signals(self) -> _SignalScope:
        """Context manager installing the handlers for SIGINT and SIGTERM (main thread only)."""
        return _SignalScope(self)


class _SignalScope:
    def __init__(self, flag: StopFlag) -> None:
        self.flag = flag
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.flag._handler)
        return self.flag

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@dataclass
class LiveReport:
    """What :func:`process_pending` did."""

    visits: list[VisitReport] = field(default_factory=list)
    republished: int = 0
    recovered: int = 0
    ppdb_errors: list[str] = field(default_factory=list)
    stopped_by: str | None = None


def _raw_detectors(repo: DataRepository) -> dict[int, set[int]]:
    """Detectors with a raw, per exposure (one registry query)."""
    refs = repo.butler.registry.queryDatasets(
        "raw", collections=COLLECTIONS["raw"], instrument=INSTRUMENT, findFirst=True
    )
    out: dict[int, set[int]] = {}
    for ref in refs:
        out.setdefault(int(ref.dataId["exposure"]), set()).add(int(ref.dataId["detector"]))
    return out


def _n_detectors(repo: DataRepository) -> int:
    return len(list(repo.butler.registry.queryDimensionRecords("detector", instrument=INSTRUMENT)))


@dataclass
class _Landing:
    """How many detectors of a visit had landed when we last looked, and since when."""

    count: int
    since: float


def ready_visits(
    repo: DataRepository,
    landing: dict[int, _Landing],
    *,
    settle_s: float,
    now: float | None = None,
) -> list[ExposureInfo]:
    """Unprocessed visits whose raws have all landed (or stopped landing for ``settle_s``), in time order.

    ``landing`` is the caller's memory between polls (first call: an empty dict).
    """
    now = time.monotonic() if now is None else now
    done = processed_visits(repo)
    expected = _n_detectors(repo)
    have = _raw_detectors(repo)
    ready = []
    for exposure in list_exposures(repo):
        if exposure.id in done:
            landing.pop(exposure.id, None)
            continue
        count = len(have.get(exposure.id, ()))
        seen = landing.get(exposure.id)
        if seen is None or seen.count != count:
            seen = landing[exposure.id] = _Landing(count, now)
        if count >= expected or now - seen.since >= settle_s:
            ready.append(exposure)
    return ready


def publish_undelivered(repo_path: str | Path, visit: int, mjd: float, log: Log) -> int:
    """Publish the visit's archived alerts that no broker acknowledged yet; how many went out.

    No broker reachable: nothing happens (the broker publishes the archive when it starts).
    """
    from pachon.core.alerts import AlertArchive, AlertProducer, BrokerError, night_of

    archive = AlertArchive.for_repo(repo_path)
    night = night_of(mjd)
    if night not in archive.nights():
        return 0
    pending = [r for r in archive.read(night, unpublished_only=True) if r.visit == visit]
    if not pending:
        return 0
    try:
        producer = AlertProducer.for_repo(repo_path)
    except BrokerError as exc:
        log(f"visit {visit}: {len(pending)} alerts archived, not yet published ({exc})")
        return 0
    with producer:
        report = producer.publish_archived(pending)
    log(f"visit {visit}: {report.delivered} archived alerts published now ({len(report.failed)} failed)")
    return report.delivered


def recover_alerts(
    repo_path: str | Path, exposure: ExposureInfo, config: PromptConfig | None, log: Log
) -> int:
    """Build and publish the alerts of APDB DiaSources of this visit that the archive does not hold.

    The one window where a crash could lose alerts: after the APDB stored the visit and before
    its alerts were archived. A re-run then finds the visit in the APDB and skips association
    (so that nothing is associated twice), and with it the alerts. Here they are rebuilt exactly
    as the visit would have built them, from the APDB rows (DiaSource, history, DiaObject) and
    the detectors' stored ``difference_image`` and ``visit_image`` plus the template warped
    again. Returns how many were built (0, and no work, when the archive is complete).

    The history and DiaObject come from the APDB as it is now; :func:`process_pending` runs it
    right after the visit, before any later visit (time order), so that is the state the visit
    saw and the rebuilt packets equal the ones the visit would have archived (the template
    cutout to float precision: the template is warped again onto the stored WCS).
    """
    import numpy as np
    import pandas as pd
    import sqlalchemy
    from astropy.table import Table

    from pachon.core.alerts import AlertArchive, night_of
    from pachon.pipelines.prompt import pipeline
    from pachon.pipelines.prompt.association import open_apdb
    from pachon.pipelines.prompt.ppdb import _apdb_engine_and_names
    from pachon.pipelines.prompt.templates import template_for_detector

    if not (Path(repo_path) / "apdb" / "apdb-config.json").exists():
        return 0
    engine, names = _apdb_engine_and_names(repo_path)
    try:
        with engine.connect() as conn:
            rows = pd.read_sql_query(
                sqlalchemy.text(f'SELECT * FROM {names["DiaSource"]} WHERE "visit" = :v'),
                conn,
                params={"v": exposure.id},
            )
    finally:
        engine.dispose()
    if not len(rows):
        return 0
    archived = AlertArchive.for_repo(repo_path).archived_ids(night_of(exposure.mjd))
    missing = rows[~rows["diaSourceId"].isin(list(archived))].reset_index(drop=True)
    if not len(missing):
        return 0
    log(
        f"visit {exposure.id}: {len(missing)} DiaSources in the APDB have no alert (interrupted run); rebuilding"
    )
    repo = DataRepository.open(str(repo_path))
    run = pipeline.prompt_run(exposure.day_obs)
    config = config or PromptConfig()
    outcomes = []
    for detector in sorted({int(d) for d in missing["detector"]}):
        science = repo.get("visit_image", visit=exposure.id, detector=detector, collections=run)
        difference = repo.get("difference_image", visit=exposure.id, detector=detector, collections=run)
        shape = np.shape(science.data)
        # only the template patches this detector touches, as the visit itself read them
        patches = pipeline.templates_for(
            str(repo_path), exposure.band, config.template.skymap, science.wcs, shape
        )
        template = template_for_detector(patches, science.wcs, shape)
        outcomes.append(
            pipeline.DetectorOutcome(
                visit=exposure.id,
                detector=detector,
                ok=True,
                visit_image=science,
                difference=difference,
                template=template,
            )
        )
    sent = pipeline.send_alerts(
        str(repo_path), open_apdb(repo_path), Table.from_pandas(missing), outcomes, exposure, config
    )
    log(f"visit {exposure.id}: recovered alerts: {sent}")
    return int(sent.get("built") or 0)


def process_pending(
    repo_path: str | Path,
    visits: Sequence[int] | None = None,
    *,
    follow: bool = False,
    poll: float = 2.0,
    settle_s: float = 30.0,
    config: PromptConfig | None = None,
    map_fn: Callable[..., Iterable[Any]] | None = None,
    alerts: bool = True,
    ppdb: bool = True,
    catalog_url: str | None = None,
    stop: StopFlag | None = None,
    log: Log = lambda _m: None,
) -> LiveReport:
    """Process ``visits`` (default: every complete unprocessed visit), then with ``follow`` keep watching.

    Each visit is followed by :func:`publish_undelivered` (with ``alerts``) and
    :func:`~pachon.pipelines.prompt.ppdb.publish_ppdb` (with ``ppdb``); see the module docstring.
    """
    path = str(Path(repo_path))
    stop = stop or StopFlag()
    report = LiveReport()
    repo = DataRepository.open(path, writeable=True)
    ensure_dataset_types(repo)
    landing: dict[int, _Landing] = {}
    if visits is not None:
        wanted = set(visits)
        exposures = list_exposures(repo)
        unknown = wanted - {e.id for e in exposures}
        if unknown:
            raise ValueError(
                f"no raws for visit(s) {sorted(unknown)}; `pachon repo info` lists the repo's visits"
            )
        todo = [e for e in exposures if e.id in wanted]
    else:
        todo = ready_visits(repo, landing, settle_s=0.0 if not follow else settle_s)
    while True:
        for exposure in todo:
            if stop.is_set():
                break
            report.visits.append(
                _one_visit(path, exposure, config, map_fn, alerts, ppdb, catalog_url, report, log)
            )
        if not follow or stop.is_set():
            break
        if stop.wait(poll):
            break
        repo = DataRepository.open(path, writeable=True)  # a fresh registry view of what landed
        todo = ready_visits(repo, landing, settle_s=settle_s)
    report.stopped_by = stop.signal_name
    return report


def _one_visit(
    path: str,
    exposure: ExposureInfo,
    config: PromptConfig | None,
    map_fn: Callable[..., Iterable[Any]] | None,
    alerts: bool,
    ppdb: bool,
    catalog_url: str | None,
    report: LiveReport,
    log: Log,
) -> VisitReport:
    log(f"visit {exposure.id} ({exposure.band}): processing")
    r = run_visit(path, exposure, config=config, map_fn=map_fn, alerts=alerts, log=log)
    log(
        f"visit {exposure.id} ({exposure.band}): {len(r.detectors_ok)} detectors ok, {len(r.failures)} failed, "
        f"{r.n_dia_selected}/{r.n_dia_sources} DiaSources kept, {r.n_new_objects} new DiaObjects, "
        f"{r.alerts.get('delivered') or 0} alerts published, {r.seconds:.1f} s"
    )
    for detector, reason in sorted(r.failures.items()):
        log(f"  detector {detector} failed: {reason}")
    for error in r.errors:
        log(f"  {error}")
    if alerts and r.detectors_ok:
        try:
            report.recovered += recover_alerts(path, exposure, config, log)
        except Exception as exc:  # logged; `pachon prompt run --visits` retries
            log(f"visit {exposure.id}: rebuilding missing alerts failed: {type(exc).__name__}: {exc}")
    if alerts:
        try:
            report.republished += publish_undelivered(path, exposure.id, exposure.mjd, log)
        except Exception as exc:  # the archive keeps them; replay or the next run sends them
            log(f"visit {exposure.id}: publishing archived alerts failed: {type(exc).__name__}: {exc}")
    if ppdb:
        from pachon.pipelines.prompt.ppdb import publish_ppdb

        try:
            log(str(publish_ppdb(path, catalog_url=catalog_url)))
        except Exception as exc:  # the next visit's publication repairs it (a snapshot)
            message = f"visit {exposure.id}: ppdb publication failed: {type(exc).__name__}: {exc}"
            report.ppdb_errors.append(message)
            log(message)
    return r
