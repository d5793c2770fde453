"""Training data for the real/bogus classifier: injected fakes and simulator truth.

Positives are (a) synthetic point sources injected into calibrated science images before
subtraction, at random positions with PSF signal-to-noise 3–40 (the way Rubin trains its
reliability model), and (b) DIA sources matching a truth transient, asteroid or variable star of
the simulator; negatives are every other DIA source (subtraction residuals, noise peaks, cosmic-ray
remnants). Training uses the first visits after each band's template visits; the model is stored
as ``real_bogus_model`` in ``Pachon/templates``, beside the templates it was trained against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.psf import PsfModel
from pachon.pipelines.prompt.realbogus import RealBogusModel, train_real_bogus

__all__ = ["FakeInjector", "label_dia_sources", "train_from_truth"]


@dataclass
class FakeInjector:
    """Adds ``n`` PSF-shaped fakes with SNR uniform in log between ``snr_min`` and ``snr_max``."""

    n: int = 40
    seed: int = 0
    snr_min: float = 3.0
    snr_max: float = 40.0

    def __call__(self, exposure: Exposure, psf: PsfModel) -> Table:
        rng = np.random.default_rng(
            self.seed
            + int(exposure.meta.get("VISIT", 0)) % 100000
            + 7 * int(exposure.meta.get("DETECTOR", 0))
        )
        image = np.asarray(exposure.data)
        var = np.asarray(exposure.variance)
        ny, nx = image.shape
        half = psf.size // 2
        x = rng.uniform(half + 5, nx - half - 5, self.n)
        y = rng.uniform(half + 5, ny - half - 5, self.n)
        snr = np.exp(rng.uniform(np.log(self.snr_min), np.log(self.snr_max), self.n))
        sky_var = float(np.median(var))
        stamp = psf.image()
        sigma_flux = np.sqrt(sky_var / (stamp**2).sum())
        flux = snr * sigma_flux
        bad = (np.asarray(exposure.mask) & (1 << MASK_PLANES["NO_DATA"])) != 0
        keep = np.ones(self.n, dtype=bool)
        for i in range(self.n):
            ix, iy = round(x[i]), round(y[i])
            if bad[iy, ix]:
                keep[i] = False
                continue
            model = psf.image(x[i], y[i], dx=x[i] - ix, dy=y[i] - iy)
            image[iy - half : iy + half + 1, ix - half : ix + half + 1] += (flux[i] * model).astype(
                image.dtype
            )
        return Table({"x": x[keep], "y": y[keep], "flux": flux[keep], "snr": snr[keep]})


def label_dia_sources(
    dia: Table, *, fakes: Table | None, truth: Table | None, variable_ids: set[int], radius_px: float = 2.0
) -> np.ndarray:
    """True for DIA sources matching a fake or a truth transient / asteroid / variable star."""
    real = np.zeros(len(dia), dtype=bool)
    if not len(dia):
        return real
    xy = np.column_stack([np.asarray(dia["x"]), np.asarray(dia["y"])])
    if fakes is not None and len(fakes):
        d, _ = cKDTree(np.column_stack([fakes["x"], fakes["y"]])).query(xy)
        real |= (d < radius_px) & ~np.asarray(dia["isNegative"])
    if truth is not None and len(truth):
        typ = np.asarray(truth["type"]).astype(str)
        ids = np.asarray(truth["id"])
        interesting = (typ == "transient") | (typ == "asteroid") | np.isin(ids, list(variable_ids))
        if interesting.any():
            d, _ = cKDTree(
                np.column_stack([np.asarray(truth["x"])[interesting], np.asarray(truth["y"])[interesting]])
            ).query(xy)
            real |= d < radius_px
    return real


def _training_job(args: tuple[str, Any, int, str, int]) -> Table | str:
    from pachon.pipelines.prompt.pipeline import open_repo, process_detector

    path, exposure, detector, config_json, seed = args
    outcome = process_detector(path, exposure, detector, config_json, None, inject=FakeInjector(seed=seed))
    if not outcome.ok or outcome.dia_sources is None:
        return f"visit {exposure.id} detector {detector}: {outcome.reason}"
    dia = outcome.dia_sources
    fakes = dia.meta.get("injected")
    repo = open_repo(path)
    try:
        truth = repo.get(
            "truth_visit_sources", exposure=exposure.id, detector=detector, collections=COLLECTIONS["truth"]
        )
    except Exception:
        truth = None
    try:
        tv = repo.get("truth_variables", collections=COLLECTIONS["truth"])
        variable_ids = {int(v) for v in np.asarray(tv["id"])}
    except Exception:
        variable_ids = set()
    dia["rb_label"] = label_dia_sources(dia, fakes=fakes, truth=truth, variable_ids=variable_ids)
    dia.meta = {}
    return dia


def train_from_truth(
    repo_path: str | Path,
    *,
    config: PromptConfig | None = None,
    n_visits: int = 2,
    map_fn: Callable[..., Iterable[Any]] | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> RealBogusModel | None:
    """Train and store the real/bogus model from the first ``n_visits`` non-template visits per band."""
    from pachon.pipelines.prompt.pipeline import detectors_of, ensure_dataset_types, list_exposures
    from pachon.pipelines.prompt.templates import choose_template_visits

    config = config or PromptConfig()
    path = str(Path(repo_path))
    repo = DataRepository.open(path, writeable=True)
    ensure_dataset_types(repo)
    exposures = list_exposures(repo)
    template_visits = {
        v for vs in choose_template_visits([e.__dict__ for e in exposures], config).values() for v in vs
    }
    chosen = []
    per_band: dict[str, int] = {}
    for e in exposures:
        if e.id in template_visits or per_band.get(e.band, 0) >= n_visits:
            continue
        per_band[e.band] = per_band.get(e.band, 0) + 1
        chosen.append(e)
    jobs = [(path, e, det, config.model_dump_json(), 17) for e in chosen for det in detectors_of(repo, e.id)]
    log(
        f"real/bogus: processing {len(jobs)} detector-visits with injected fakes from visits {[e.id for e in chosen]}"
    )
    results = list((map_fn or map)(_training_job, jobs))
    tables = [r for r in results if isinstance(r, Table) and len(r)]
    if not tables:
        log("real/bogus: no training data (every training detector failed); no model stored")
        return None
    data = vstack(tables, metadata_conflicts="silent")
    labels = np.asarray(data["rb_label"], dtype=bool)
    if labels.all() or not labels.any():
        log("real/bogus: training data has only one class; no model stored")
        return None
    model = train_real_bogus(data, labels)
    if repo.has("real_bogus_model", run=COLLECTIONS["templates"], instrument=INSTRUMENT):
        ref = repo.butler.find_dataset(
            "real_bogus_model", {"instrument": INSTRUMENT}, collections=COLLECTIONS["templates"]
        )
        if ref is not None:
            repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
    stored = model.to_dict() | {"training_visits": [e.id for e in chosen], "n_real": int(labels.sum())}
    repo.put(stored, "real_bogus_model", run=COLLECTIONS["templates"])
    return model
