"""Training data for the real/bogus classifier: injected fakes and simulator truth.

Positives are (a) synthetic sources injected into calibrated science images before subtraction
(the way Rubin trains its reliability model), with PSF signal-to-noise 3–60: point sources on
empty sky, point sources brightening or fading on the cores of stars and galaxies, and trailed
sources like moving asteroids (:class:`FakeInjector`), and (b) DIA sources matching a truth
transient, asteroid or variable star of the simulator; negatives are every other DIA source (subtraction residuals, noise peaks, cosmic-ray
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

_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])

__all__ = ["FakeInjector", "ambiguous_near_fakes", "label_dia_sources", "train_from_truth"]


@dataclass
class FakeInjector:
    """Adds ``n`` synthetic real sources to a calibrated science image, of three kinds.

    * a quarter **point sources on empty sky** (new transients);
    * half **point sources on a detected source's core** — a galaxy (SN in its host) or a star (a
      variable: half of these change by 10–100 % of the host's flux; 30 % fade, by at most 80 % of
      it), offset by up to one FWHM — so the classifier sees real changes where subtraction residuals
      also live;
    * a quarter **trailed sources** (the PSF smeared along a 3–25 px segment at a random angle): asteroids move
      during the exposure, and a classifier trained on point sources only takes trails for artefacts.

    PSF signal-to-noise is log-uniform between ``snr_min`` and ``snr_max`` (computed for the sky
    noise; trailed fakes get their flux scaled by √(1 + L/FWHM) so their detectability spans the same
    range). Returns one row per fake: ``x``, ``y``, ``flux`` (signed), ``snr``, ``kind`` and
    ``trail`` (length in pixels).
    """

    n: int = 100
    seed: int = 0
    snr_min: float = 3.0
    snr_max: float = 60.0

    def __call__(self, exposure: Exposure, psf: PsfModel) -> Table:
        from pachon.pipelines.prompt.measure import detect

        rng = np.random.default_rng(
            self.seed
            + int(exposure.meta.get("VISIT", 0)) % 100000
            + 7 * int(exposure.meta.get("DETECTOR", 0))
        )
        image = np.asarray(exposure.data)
        var = np.asarray(exposure.variance)
        ny, nx = image.shape
        half = psf.size // 2
        margin = half + 16
        bad = (np.asarray(exposure.mask) & _UNUSABLE) != 0
        sky_var = float(np.median(var))
        sigma_flux = np.sqrt(sky_var / (psf.image() ** 2).sum())
        # hosts: detected sources of the image, brightest first (PSF SNR from their peak filter)
        objs, _ = detect(image, var, bad, psf, threshold=10.0, deblend=False)
        inside = (
            (objs["x"] > margin)
            & (objs["x"] < nx - margin)
            & (objs["y"] > margin)
            & (objs["y"] < ny - margin)
        )
        hosts = objs[inside & (objs["flag"] == 0)]
        n_sky = self.n // 4
        kinds = ["sky"] * n_sky + ["host"] * (self.n - 2 * n_sky if len(hosts) else 0) + ["trail"] * n_sky
        rows: list[tuple[float, float, float, float, str, float]] = []
        for kind in kinds:
            snr = float(np.exp(rng.uniform(np.log(self.snr_min), np.log(self.snr_max))))
            flux = snr * sigma_flux
            length, angle = 0.0, 0.0
            if kind == "host":
                h = hosts[int(rng.integers(len(hosts)))]
                r, phi = rng.uniform(0, psf.fwhm), rng.uniform(0, 2 * np.pi)
                x, y = float(h["x"]) + r * np.cos(phi), float(h["y"]) + r * np.sin(phi)
                host_flux = float(h["flux"])
                if rng.uniform() < 0.5:  # a variable star's change: 10–100 % of the host's flux
                    flux = max(flux, host_flux * float(rng.uniform(0.1, 1.0)))
                if rng.uniform() < 0.3:  # a fading source: at most 80 % of the host's flux removed
                    flux = -min(flux, 0.8 * host_flux)
            else:
                x, y = rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin)
            if kind == "trail":
                length, angle = float(rng.uniform(3.0, 25.0)), float(rng.uniform(0, np.pi))
                flux *= np.sqrt(1 + length / psf.fwhm)
            ix, iy = round(x), round(y)
            if bad[iy, ix]:
                continue
            _add_source(image, psf, x, y, flux, length, angle)
            rows.append((x, y, flux, snr, kind, length))
        names = ("x", "y", "flux", "snr", "kind", "trail")
        if not rows:
            return Table(names=names, dtype=(float, float, float, float, str, float))
        return Table(rows=rows, names=names)


def _add_source(
    image: np.ndarray, psf: PsfModel, x: float, y: float, flux: float, length: float, angle: float
) -> None:
    """Add a PSF (or a PSF smeared over ``length`` px at ``angle`` rad) of total ``flux`` at (x, y)."""
    half = psf.size // 2
    steps = max(1, int(np.ceil(2 * length)))
    for t in (np.arange(steps) + 0.5) / steps - 0.5 if length > 0 else [0.0]:
        px, py = x + t * length * np.cos(angle), y + t * length * np.sin(angle)
        ix, iy = round(px), round(py)
        model = psf.image(px, py, dx=px - ix, dy=py - iy)
        image[iy - half : iy + half + 1, ix - half : ix + half + 1] += (flux / steps * model).astype(
            image.dtype
        )


def label_dia_sources(
    dia: Table,
    *,
    fakes: Table | None,
    truth: Table | None,
    variable_ids: set[int],
    radius_px: float = 2.0,
    fake_radius_px: float = 3.0,
    extra_real_xy: np.ndarray | None = None,
) -> np.ndarray:
    """True for DIA sources matching a fake or a truth transient / asteroid / variable star.

    ``fake_radius_px`` is wider than ``radius_px``: a fake on a star's or galaxy's core is measured on
    top of that source's subtraction residual, which pulls its centroid by a pixel or two.
    ``extra_real_xy`` are further positions of real changes, e.g. supernovae that were bright in the
    template epochs and have since faded (real negative DIA sources, absent from the visit's truth),
    and flaring stars.
    """
    real = np.zeros(len(dia), dtype=bool)
    if not len(dia):
        return real
    xy = np.column_stack([np.asarray(dia["x"]), np.asarray(dia["y"])])
    if extra_real_xy is not None and len(extra_real_xy):
        d, _ = cKDTree(np.asarray(extra_real_xy, float)).query(xy)
        real |= d < radius_px
    if fakes is not None and len(fakes):
        trail = np.asarray(fakes["trail"], float) if "trail" in fakes.colnames else np.zeros(len(fakes))
        sign_ok = (
            np.asarray(fakes["flux"], float) < 0 if "flux" in fakes.colnames else np.zeros(len(fakes), bool)
        )
        for k in range(len(fakes)):
            d = np.hypot(xy[:, 0] - float(fakes["x"][k]), xy[:, 1] - float(fakes["y"][k]))
            negative = np.asarray(dia["isNegative"], bool)
            real |= (d < fake_radius_px + trail[k] / 2) & (negative == sign_ok[k])
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


def ambiguous_near_fakes(
    dia: Table, fakes: Table | None, labels: np.ndarray, *, reach_fwhm: float = 3.0, fwhm: float = 4.0
) -> np.ndarray:
    """True for unmatched DIA sources within ``reach_fwhm`` FWHM (plus half a trail) of an injected fake.

    A fake on a bright host, or a bright one anywhere, can leave pieces outside the match radius (its
    centroid pulled off by the host's residual, a fragment of its footprint, a kernel stamp it spoiled):
    neither a clean real nor a clean bogus example. Labelled bogus they taught the classifier to reject
    real changes on galaxy cores, so training leaves them out.
    """
    out = np.zeros(len(dia), dtype=bool)
    if fakes is None or not len(fakes) or not len(dia):
        return out
    trail = np.asarray(fakes["trail"], float) if "trail" in fakes.colnames else np.zeros(len(fakes))
    d, k = cKDTree(np.column_stack([np.asarray(fakes["x"]), np.asarray(fakes["y"])])).query(
        np.column_stack([np.asarray(dia["x"]), np.asarray(dia["y"])])
    )
    return (d < reach_fwhm * fwhm + trail[k] / 2) & ~np.asarray(labels, bool)


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
    dia["rb_label"] = label_dia_sources(
        dia,
        fakes=fakes,
        truth=truth,
        variable_ids=variable_ids,
        extra_real_xy=_other_changes(repo, exposure, detector, truth),
    )
    dia.meta = {}
    return dia


def _other_changes(repo: DataRepository, exposure: Any, detector: int, truth: Table | None) -> np.ndarray:
    """Pixel positions of every simulated SN (on or off now: one in the template leaves a real negative
    source after it fades) and of flaring stars, on this detector-visit (empty without truth)."""
    try:
        import warnings

        from astropy.wcs import WCS

        tr = repo.get("truth_transients", collections=COLLECTIONS["truth"])
        info = repo.get(
            "truth_visit_info", exposure=exposure.id, detector=detector, collections=COLLECTIONS["truth"]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(info["true_wcs"])
    except Exception:
        return np.zeros((0, 2))
    is_sn = np.asarray(tr["type"]).astype(str) == "SN"
    x, y = wcs.all_world2pix(np.asarray(tr["ra"])[is_sn], np.asarray(tr["dec"])[is_sn], 0)
    xy = [np.column_stack([x, y])]
    if truth is not None and len(truth):
        hosts = np.isin(np.asarray(truth["id"]), np.asarray(tr["host_id"])[~is_sn])
        xy.append(np.column_stack([np.asarray(truth["x"])[hosts], np.asarray(truth["y"])[hosts]]))
    return np.vstack(xy)


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
