"""The data repository: a real LSST Butler with Pachón's instrument, dataset types and collections.

Why the Butler: notebooks on the Rubin platform read images with
``Butler(REPO).get("visit_image", visit=…, detector=…)``; using the same library (with a
SQLite registry by default, PostgreSQL when ``butler_registry_url`` is set) means our
tutorials and users' code run unchanged, and the pipelines get provenance, collections
and deterministic data IDs for free.

Conventions (ARCHITECTURE.md, "Butler conventions"):

* instrument ``Pachon`` with bands ugrizy and physical filters ``u_sim`` … ``y_sim``;
* collections ``Pachon/raw/all`` (raws), ``refcats``, ``Pachon/truth`` (simulator truth),
  ``Pachon/calib`` (flats), ``Pachon/templates``, ``Pachon/prompt/<night>``,
  ``Pachon/runs/<release>``, and the chain ``Pachon/defaults`` that notebooks use;
* IDs are deterministic integers (exposure = visit, packed by the simulator from night and
  sequence), so re-runs reproduce them and never duplicate rows.

The detectors of a camera geometry are registered by whoever first writes for it (the
simulator's preset) through :meth:`DataRepository.register_detectors`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.time import Time
from lsst.daf.butler import (
    Butler,
    CollectionType,
    Config,
    DatasetType,
    Timespan,
)
from lsst.daf.butler.registry import ConflictingDefinitionError

__all__ = [
    "BANDS",
    "COLLECTIONS",
    "DATASET_TYPES",
    "INSTRUMENT",
    "CreateReport",
    "DataRepository",
    "DatasetTypeSpec",
    "DetectorSpec",
    "ExposureSpec",
    "RepoError",
    "physical_filter",
]

INSTRUMENT = "Pachon"
BANDS = ("u", "g", "r", "i", "z", "y")


def physical_filter(band: str) -> str:
    """The physical filter name of a band (``r`` → ``r_sim``)."""
    if band not in BANDS:
        raise ValueError(f"unknown band {band!r}; Pachón's bands are {', '.join(BANDS)}")
    return f"{band}_sim"


COLLECTIONS = {
    "raw": "Pachon/raw/all",
    "refcats": "refcats",
    "truth": "Pachon/truth",
    "calib": "Pachon/calib",
    "templates": "Pachon/templates",
    "defaults": "Pachon/defaults",
}
"""Well-known collection names; per-night and per-release runs are built by the pipelines."""

DEFAULTS_CHAIN = ("Pachon/raw/all", "Pachon/calib", "refcats", "Pachon/truth", "Pachon/templates")

STORAGE_CLASS_CONFIG: dict[str, Any] = {
    "storageClasses": {
        "PachonExposure": {
            "pytype": "pachon.core.image.Exposure",
            "derivedComponents": {
                "image": "NumpyArray",
                "mask": "NumpyArray",
                "variance": "NumpyArray",
                "wcs": "PachonWcs",
                "metadata": "PachonHeader",
            },
        },
        "PachonWcs": {"pytype": "astropy.wcs.WCS"},
        "PachonHeader": {"pytype": "astropy.io.fits.Header"},
    },
    "datastore": {
        "formatters": {
            "PachonExposure": "pachon.core.formatters.ExposureFitsFormatter",
        }
    },
}


@dataclass(frozen=True)
class DatasetTypeSpec:
    """A dataset type every Pachón repo has: name, dimensions, storage class, purpose."""

    name: str
    dimensions: tuple[str, ...]
    storage_class: str
    doc: str


_VISIT_DET = ("instrument", "visit", "detector")
_EXP_DET = ("instrument", "exposure", "detector")
_PATCH_BAND = ("skymap", "tract", "patch", "band")

DATASET_TYPES: tuple[DatasetTypeSpec, ...] = (
    DatasetTypeSpec("raw", _EXP_DET, "PachonExposure", "raw detector image with overscan (ADU)"),
    DatasetTypeSpec("flat", ("instrument", "detector", "physical_filter"), "PachonExposure", "flat field"),
    DatasetTypeSpec("visit_image", _VISIT_DET, "PachonExposure", "calibrated single-visit image (nJy)"),
    DatasetTypeSpec("difference_image", _VISIT_DET, "PachonExposure", "visit minus warped template"),
    DatasetTypeSpec("template_coadd", _PATCH_BAND, "PachonExposure", "template for image differencing"),
    DatasetTypeSpec("deep_coadd", _PATCH_BAND, "PachonExposure", "deep coadd of a data release"),
    DatasetTypeSpec("source", _VISIT_DET, "ArrowAstropy", "single-visit sources (DP1 Source)"),
    DatasetTypeSpec("dia_source", _VISIT_DET, "ArrowAstropy", "difference-image sources (DiaSource)"),
    DatasetTypeSpec("object", ("skymap", "tract"), "ArrowAstropy", "coadd objects of a release (DP1 Object)"),
    DatasetTypeSpec(
        "object_forced_source",
        ("skymap", "tract", "patch"),
        "ArrowAstropy",
        "forced photometry (ForcedSource)",
    ),
    DatasetTypeSpec("visit_table", ("instrument",), "ArrowAstropy", "one row per visit (DP1 Visit)"),
    DatasetTypeSpec("visit_detector_table", ("instrument",), "ArrowAstropy", "per detector-visit (CcdVisit)"),
    DatasetTypeSpec("refcat", ("htm7",), "ArrowAstropy", "Gaia-like astrometric/photometric reference stars"),
    DatasetTypeSpec("truth_stars", (), "ArrowAstropy", "simulated stars (incl. motion, variability)"),
    DatasetTypeSpec("truth_galaxies", (), "ArrowAstropy", "simulated galaxies"),
    DatasetTypeSpec("truth_variables", (), "ArrowAstropy", "periodic variable star parameters"),
    DatasetTypeSpec("truth_transients", (), "ArrowAstropy", "transient parameters"),
    DatasetTypeSpec("truth_asteroid_orbits", (), "ArrowAstropy", "asteroid orbital elements"),
    DatasetTypeSpec("truth_visit_sources", _EXP_DET, "ArrowAstropy", "every source in one detector-visit"),
    DatasetTypeSpec("truth_ephemerides", ("instrument", "exposure"), "ArrowAstropy", "asteroid positions"),
)


@dataclass(frozen=True)
class DetectorSpec:
    """One detector of a camera geometry."""

    id: int
    name: str
    raft: str = "R00"
    purpose: str = "SCIENCE"
    nx: int = 1024
    ny: int = 1024


@dataclass(frozen=True)
class ExposureSpec:
    """One exposure (and its 1:1 visit): what the observatory knew when the shutter closed."""

    id: int
    day_obs: int
    band: str
    start: Time
    exposure_time: float
    ra: float
    dec: float
    sky_angle: float = 0.0
    airmass: float = 1.0
    seq_num: int = 0
    physical_filter: str | None = None
    observation_reason: str = "science"
    target_name: str = "pachon_field"
    science_program: str = "pachon_sim"
    azimuth: float = 0.0


@dataclass
class CreateReport:
    """What :meth:`DataRepository.create` did; empty lists mean nothing changed."""

    path: Path
    created_repo: bool = False
    registered: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.created_repo or bool(self.registered)


class RepoError(RuntimeError):
    """The data repository is missing, not a Butler repo, or damaged; the message says which and how to fix."""


def _check_registry(path: Path) -> None:
    """Fail early and clearly on a registry file that is not a SQLite database."""
    db = path / "gen3.sqlite3"
    if not db.exists():
        return
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            con.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise RepoError(
            f"{path}: the registry database {db.name} is corrupt ({exc}); restore it from a backup "
            f"or recreate the repo with `pachon repo create` in a new folder"
        ) from None


class DataRepository:
    """A Pachón data repository (a Butler repo plus Pachón's conventions).

    Examples
    --------
    >>> repo = DataRepository.create("/tmp/repo").repo          # doctest: +SKIP
    >>> repo.butler.get("raw", exposure=1, detector=0)            # doctest: +SKIP
    """

    def __init__(self, path: Path, butler: Butler) -> None:
        self.path = path
        self.butler = butler

    # Opening and creating -------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, writeable: bool = False, run: str | None = None) -> DataRepository:
        """Open an existing repo; :class:`RepoError` with a fix if it is missing or damaged."""
        root = Path(path).expanduser()
        if not root.exists():
            raise RepoError(
                f"{root}: no such folder; create a data repository with `pachon repo create {root}`"
            )
        if not (root / "butler.yaml").is_file():
            raise RepoError(
                f"{root}: not a Pachón data repository (no butler.yaml); create one with `pachon repo create {root}`"
            )
        _check_registry(root)
        try:
            butler = Butler.from_config(str(root), writeable=writeable, run=run)
        except Exception as exc:  # the Butler raises many types for damaged repos
            raise RepoError(f"{root}: cannot open the data repository ({type(exc).__name__}: {exc})") from exc
        return cls(root, butler)

    @classmethod
    def create(cls, path: str | Path, *, registry_url: str | None = None) -> CreateReport:
        """Create the repo (idempotently) and register everything Pachón needs.

        Running it again on a complete repo changes nothing and says so
        (``report.changed`` is False).
        """
        root = Path(path).expanduser()
        report = CreateReport(path=root)
        if root.exists() and not root.is_dir():
            raise RepoError(f"{root}: exists and is not a folder")
        if not (root / "butler.yaml").is_file():
            if root.exists() and any(root.iterdir()):
                raise RepoError(
                    f"{root}: the folder is not empty and holds no butler.yaml; choose an empty or new folder"
                )
            config = Config(STORAGE_CLASS_CONFIG)
            if registry_url:
                config["registry"] = {"db": registry_url, "namespace": "pachon"}
            root.mkdir(parents=True, exist_ok=True)
            Butler.makeRepo(str(root), config=config)
            report.created_repo = True
        repo = cls.open(root, writeable=True)
        report.registered.extend(repo._ensure_conventions())
        return report

    # Registration ---------------------------------------------------------------------
    def _insert_if_absent(self, element: str, record: dict[str, Any]) -> bool:
        """Insert one dimension record unless identical; True if it was new."""
        try:
            return bool(self.butler.registry.syncDimensionData(element, record))
        except ConflictingDefinitionError as exc:
            raise RepoError(
                f"{self.path}: {element} {record} conflicts with what the repo holds ({exc})"
            ) from exc

    def _ensure_conventions(self) -> list[str]:
        done: list[str] = []
        if self._insert_if_absent(
            "instrument",
            {
                "name": INSTRUMENT,
                "visit_max": 2**40,
                "exposure_max": 2**40,
                "detector_max": 1000,
                "visit_system": 0,
                "class_name": "pachon.core.repo.DataRepository",
            },
        ):
            done.append(f"instrument {INSTRUMENT}")
        for band in BANDS:
            if self._insert_if_absent(
                "physical_filter", {"instrument": INSTRUMENT, "name": physical_filter(band), "band": band}
            ):
                done.append(f"physical_filter {physical_filter(band)}")
        for spec in DATASET_TYPES:
            if self.register_dataset_type(spec.name, spec.dimensions, spec.storage_class):
                done.append(f"dataset type {spec.name}")
        registry = self.butler.registry
        for key in ("raw", "refcats", "truth", "calib", "templates"):
            if registry.registerCollection(COLLECTIONS[key], CollectionType.RUN):
                done.append(f"collection {COLLECTIONS[key]}")
        if registry.registerCollection(COLLECTIONS["defaults"], CollectionType.CHAINED):
            done.append(f"collection {COLLECTIONS['defaults']}")
        if tuple(registry.getCollectionChain(COLLECTIONS["defaults"])) != DEFAULTS_CHAIN:
            registry.setCollectionChain(COLLECTIONS["defaults"], list(DEFAULTS_CHAIN))
        return done

    def register_dataset_type(self, name: str, dimensions: Iterable[str], storage_class: str) -> bool:
        """Register a dataset type unless it exists identically; True if it was new."""
        dataset_type = DatasetType(name, list(dimensions), storage_class, universe=self.butler.dimensions)
        try:
            return bool(self.butler.registry.registerDatasetType(dataset_type))
        except ConflictingDefinitionError as exc:
            raise RepoError(
                f"{self.path}: dataset type {name} is defined differently in this repo ({exc})"
            ) from exc

    def register_detectors(self, detectors: Sequence[DetectorSpec]) -> int:
        """Register a camera's detectors (idempotent); returns how many were new."""
        new = 0
        for det in detectors:
            new += self._insert_if_absent(
                "detector",
                {
                    "instrument": INSTRUMENT,
                    "id": det.id,
                    "full_name": det.name,
                    "name_in_raft": det.name,
                    "raft": det.raft,
                    "purpose": det.purpose,
                },
            )
        return new

    def register_exposure(self, spec: ExposureSpec) -> bool:
        """Register an exposure, its night, group and 1:1 visit (idempotent); True if new."""
        end = spec.start + spec.exposure_time * u.s
        timespan = Timespan(spec.start, end)
        pf = spec.physical_filter or physical_filter(spec.band)
        night_start = Time(
            f"{str(spec.day_obs)[:4]}-{str(spec.day_obs)[4:6]}-{str(spec.day_obs)[6:]}T12:00:00", scale="tai"
        )
        self._insert_if_absent(
            "day_obs",
            {
                "instrument": INSTRUMENT,
                "id": spec.day_obs,
                "timespan": Timespan(night_start, night_start + 1 * u.day),
            },
        )
        group = f"{spec.day_obs}_{spec.seq_num:05d}"
        self._insert_if_absent("group", {"instrument": INSTRUMENT, "name": group})
        zenith_angle = float(np.degrees(np.arccos(1.0 / spec.airmass)))
        common = {
            "instrument": INSTRUMENT,
            "id": spec.id,
            "day_obs": spec.day_obs,
            "physical_filter": pf,
            "seq_num": spec.seq_num,
            "exposure_time": spec.exposure_time,
            "target_name": spec.target_name,
            "observation_reason": spec.observation_reason,
            "science_program": spec.science_program,
            "azimuth": spec.azimuth,
            "zenith_angle": zenith_angle,
            "timespan": timespan,
        }
        new = self._insert_if_absent(
            "exposure",
            {
                **common,
                "group": group,
                "obs_id": f"PC_{spec.day_obs}_{spec.seq_num:06d}",
                "dark_time": spec.exposure_time,
                "observation_type": "science",
                "seq_start": spec.seq_num,
                "seq_end": spec.seq_num,
                "tracking_ra": spec.ra,
                "tracking_dec": spec.dec,
                "sky_angle": spec.sky_angle,
                "has_simulated": True,
                "can_see_sky": True,
            },
        )
        self._insert_if_absent("visit", {**common, "name": f"PC_{spec.day_obs}_{spec.seq_num:06d}"})
        self._insert_if_absent(
            "visit_definition", {"instrument": INSTRUMENT, "exposure": spec.id, "visit": spec.id}
        )
        return new

    # Datasets -------------------------------------------------------------------------
    def put(self, obj: Any, dataset_type: str, *, run: str | None = None, **data_id: Any) -> Any:
        """Store a dataset; the run defaults to the dataset type's conventional collection."""
        target = run or self.default_run(dataset_type)
        self.butler.registry.registerCollection(target, CollectionType.RUN)
        if "instrument" not in data_id and self._needs_instrument(dataset_type):
            data_id["instrument"] = INSTRUMENT
        return self.butler.put(obj, dataset_type, data_id, run=target)

    def get(
        self, dataset_type: str, *, collections: str | Sequence[str] | None = None, **data_id: Any
    ) -> Any:
        """Read a dataset from the given collections (default ``Pachon/defaults``)."""
        if "instrument" not in data_id and self._needs_instrument(dataset_type):
            data_id["instrument"] = INSTRUMENT
        return self.butler.get(dataset_type, data_id, collections=collections or COLLECTIONS["defaults"])

    def has(self, dataset_type: str, *, run: str | None = None, **data_id: Any) -> bool:
        """True if the dataset exists in ``run`` (default: its conventional collection)."""
        target = run or self.default_run(dataset_type)
        if "instrument" not in data_id and self._needs_instrument(dataset_type):
            data_id["instrument"] = INSTRUMENT
        try:
            ref = self.butler.find_dataset(dataset_type, data_id, collections=target)
        except Exception:
            return False
        return ref is not None

    def _needs_instrument(self, dataset_type: str) -> bool:
        dt = self.butler.get_dataset_type(dataset_type)
        return "instrument" in dt.dimensions.names

    @staticmethod
    def default_run(dataset_type: str) -> str:
        if dataset_type == "raw":
            return COLLECTIONS["raw"]
        if dataset_type == "refcat":
            return COLLECTIONS["refcats"]
        if dataset_type.startswith("truth_"):
            return COLLECTIONS["truth"]
        if dataset_type == "flat":
            return COLLECTIONS["calib"]
        if dataset_type == "template_coadd":
            return COLLECTIONS["templates"]
        raise ValueError(f"no conventional run for {dataset_type!r}; pass run=…")

    # Summaries ------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Counts a person wants to see first: detectors, exposures, nights, datasets per type."""
        registry = self.butler.registry
        detectors = list(registry.queryDimensionRecords("detector", instrument=INSTRUMENT))
        exposures = list(registry.queryDimensionRecords("exposure", instrument=INSTRUMENT))
        nights = sorted({rec.day_obs for rec in exposures})
        counts: dict[str, int] = {}
        for dt in sorted(registry.queryDatasetTypes(), key=lambda d: d.name):
            n = self.butler.query_datasets(
                dt.name, collections="*", find_first=False, explain=False, limit=None
            )
            counts[dt.name] = len(n)
        collections = sorted(self.butler.collections.query("*"))
        return {
            "path": str(self.path),
            "instrument": INSTRUMENT,
            "bands": list(BANDS),
            "detectors": len(detectors),
            "exposures": len(exposures),
            "nights": len(nights),
            "first_night": nights[0] if nights else None,
            "last_night": nights[-1] if nights else None,
            "collections": collections,
            "datasets": counts,
        }
