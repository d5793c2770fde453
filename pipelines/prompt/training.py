"""Training data for the real/bogus classifier: injected fakes and simulator truth.

Positives are (a) synthetic sources injected into calibrated science images before subtraction
(the way Rubin trains its reliability model), with PSF signal-to-noise 3–60: point sources on
empty sky, point sources brightening or fading on the cores of stars and galaxies, and trailed
sources like moving asteroids (:class:`FakeInjector`), and (b) DIA sources matching a truth
transient, asteroid or variable star of the simulator. Negatives are every other DIA source
(subtraction residuals, noise peaks, artefacts next to bad columns, template defects) plus
*injected* bogus: detected sources shifted by 0.2–1.5 px, the dipoles proper motion and local
misregistration leave. Unmatched DIA sources close to a real fake are left out (neither clean real
nor clean bogus). Each training detector-visit is processed three times with different fakes.

Training uses the first visits after each band's template visits, never the visits that are then
scored; the boosted-tree model's operating point is set on held-out detectors of the training data
to meet the false-positive budget (:func:`~pachon.pipelines.prompt.realbogus.fit_real_bogus`). The
model is stored as ``real_bogus_model`` in ``Pachon/templates``, beside the templates it was
trained against, with its validation figures.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from scipy import ndimage
from scipy.spatial import cKDTree

from pachon.core.image import MASK_PLANES, Exposure
from pachon.core.repo import COLLECTIONS, INSTRUMENT, DataRepository
from pachon.pipelines.prompt.config import PromptConfig
from pachon.pipelines.prompt.psf import PsfModel
from pachon.pipelines.prompt.realbogus import RealBogusModel, fit_real_bogus

_UNUSABLE = (1 << MASK_PLANES["NO_DATA"]) | (1 << MASK_PLANES["BAD"]) | (1 << MASK_PLANES["SAT"])
_FLAGGED = _UNUSABLE | sum(1 << MASK_PLANES[p] for p in ("INTRP", "CR", "SUSPECT"))

__all__ = [
    "TRAINING_INJECTOR",
    "TREE_OPTIONS",
    "FakeInjector",
    "ambiguous_near_fakes",
    "label_dia_sources",
    "train_from_truth",
]


@dataclass
class FakeInjector:
    """Adds ``n`` synthetic real sources to a calibrated science image, of three kinds.

    * a quarter **point sources on empty sky** (new transients);
    * half **point sources on a detected source's core**, offset by up to one FWHM, so the
      classifier sees real changes where subtraction residuals also live: a share ``galaxy_share``
      on galaxies (an SN in its host, at the drawn SNR whatever the host's brightness, so every
      SN/host contrast occurs), the rest on stars (a variable: half of these change by
      ``min_variability``–100 % of the star's flux); a share ``negative_fraction`` of both fade
      (by at most 80 % of the host's flux);
    * a quarter **trailed sources** (the PSF smeared along a 3–25 px segment at a random angle): asteroids move
      during the exposure, and a classifier trained on point sources only takes trails for artefacts.

    **One fake per host, none within ``min_separation_fwhm`` FWHM of another.** Fakes drawn with
    replacement piled up on the few galaxies of a small detector (on ``tiny``, 141 of 159 galaxy-core
    fakes at SNR ≥ 10 shared their host with another fake): their DIA sources blended into one,
    measured 2–6 px from each fake, and the fakes were scored ``offset`` (found 0.72 against 0.94
    for galaxy-core fakes alone on their host), and in training the blends taught the classifier
    odd "real" examples. When hosts run out, fewer host fakes are injected.

    PSF signal-to-noise is log-uniform between ``snr_min`` and ``snr_max`` (computed for the sky
    noise; trailed fakes get their flux scaled by √(1 + L/FWHM) so their detectability spans the same
    range). Returns one row per fake: ``x``, ``y``, ``flux`` (signed), ``snr``, ``kind``,
    ``trail`` (length in pixels) and ``angle`` (of the trail, radians).

    ``fractions`` sets the shares of the three kinds; ``galaxy_hosts`` puts every host fake on an
    extended detection (PSF-to-aperture flux ratio below 0.85× the stellar one): supernova-like
    fakes on galaxy cores for completeness tests on held-out visits (``variable_hosts=False``
    turns off the variable-star changes; it matters only for star hosts).

    ``near_bright_share`` of the sky fakes go ``near_bright_fwhm`` FWHM from a bright detected source
    (peak SNR ≥ ``near_bright_snr``; kind ``neighbour``): real changes next to a bright star or galaxy
    (its wings in the fit, its template core hole spread into the difference's mask) were too rare
    in training for the classifier to tell them from the star's own residuals.

    ``n_shifted`` further *bogus* changes move a detected star by 0.2–1.5 px (its flux added at the
    new position and removed at the old one): the dipole a proper motion or a local registration
    error of the template leaves, the most common false positive on stars. They are returned with
    kind ``shifted`` (``flux`` = the source's, ``trail`` = the shift, ``angle`` its direction), and
    :func:`label_dia_sources` never counts them as real.
    """

    n: int = 100
    seed: int = 0
    snr_min: float = 3.0
    snr_max: float = 60.0
    fractions: tuple[float, float, float] = (0.25, 0.5, 0.25)
    galaxy_hosts: bool = False
    variable_hosts: bool = True
    negative_fraction: float = 0.3
    n_shifted: int = 0
    min_variability: float = 0.1
    galaxy_share: float = 0.5
    min_separation_fwhm: float = 3.0
    near_bright_share: float = 0.0
    near_bright_fwhm: tuple[float, float] = (1.5, 4.0)
    near_bright_snr: float = 50.0

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
        usable = inside & (objs["flag"] == 0)
        # no host next to flagged pixels: a bad column's bright edge is detected like a star, and a
        # fake put on it (or its shift) relabelled that artefact real or ambiguous in every training
        # run (on ``tiny`` the bad-column pairs, most of nature's bogus there, never reached training)
        flagged = (np.asarray(exposure.mask) & _FLAGGED) != 0
        if flagged.any() and len(objs):
            reach = int(np.ceil(2 * psf.fwhm))
            near_flag = ndimage.maximum_filter(flagged, size=2 * reach + 1)
            ox = np.clip(np.round(np.asarray(objs["x"], float)).astype(int), 0, nx - 1)
            oy = np.clip(np.round(np.asarray(objs["y"], float)).astype(int), 0, ny - 1)
            usable &= ~near_flag[oy, ox]
        extended = np.zeros(len(objs), dtype=bool)
        if usable.any():
            # extended: PSF flux well below the aperture flux, relative to the stellar locus (the
            # highest ratios), as the visit's own source extendedness is decided
            from pachon.pipelines.prompt.measure import psf_aperture_ratio

            hx, hy = np.asarray(objs["x"], float), np.asarray(objs["y"], float)
            ratio, _ = psf_aperture_ratio(image, var, bad, psf, hx, hy, 2.0 * psf.fwhm)
            stellar = float(np.nanpercentile(ratio[usable], 90))
            extended = ~(ratio >= 0.85 * stellar)
        if self.galaxy_hosts:
            usable &= extended
        # bright neighbours (stars, galaxies, saturated stars alike; not bad-column edges): anchors for
        # the sky fakes put ``near_bright_fwhm`` FWHM from one (kind ``neighbour``)
        bright_pool: list[tuple[float, float]] = []
        if self.near_bright_share > 0 and len(objs):
            peak_snr = np.asarray(objs["flux"], float) / sigma_flux
            not_bad = np.ones(len(objs), dtype=bool)
            bad_cols = (np.asarray(exposure.mask) & (1 << MASK_PLANES["BAD"])) != 0
            if bad_cols.any():
                near_bad_col = ndimage.maximum_filter(bad_cols, size=2 * int(np.ceil(2 * psf.fwhm)) + 1)
                bx = np.clip(np.round(np.asarray(objs["x"], float)).astype(int), 0, nx - 1)
                by = np.clip(np.round(np.asarray(objs["y"], float)).astype(int), 0, ny - 1)
                not_bad = ~near_bad_col[by, bx]
            keep = inside & not_bad & (peak_snr >= self.near_bright_snr)
            bright_pool = [
                (float(a), float(b)) for a, b in zip(objs["x"][keep], objs["y"][keep], strict=True)
            ]
        hosts = objs[usable]
        host_is_star = ~extended[usable]
        # each host carries at most one fake, taken in a random order, galaxies and stars apart
        galaxies = [int(k) for k in rng.permutation(np.flatnonzero(~host_is_star))]
        stars = [int(k) for k in rng.permutation(np.flatnonzero(host_is_star))]
        n_sky = round(self.n * self.fractions[0])
        n_trail = round(self.n * self.fractions[2])
        n_host = self.n - n_sky - n_trail if len(hosts) else 0
        kinds = ["sky"] * n_sky + ["host"] * n_host + ["trail"] * n_trail
        rows: list[tuple[float, float, float, float, str, float, float]] = []
        used: set[int] = set()
        placed: list[tuple[float, float, float]] = []  # x, y, half trail of every change put in
        apart = self.min_separation_fwhm * psf.fwhm

        def clear(x: float, y: float, reach: float) -> bool:
            """Far enough from every change already injected that their DIA sources cannot blend."""
            return all(np.hypot(x - px, y - py) >= apart + reach + r for px, py, r in placed)

        def next_host(pool: list[int]) -> int | None:
            while pool:
                k = pool.pop()
                if clear(float(hosts[k]["x"]), float(hosts[k]["y"]), psf.fwhm):
                    return k
            return None

        # the shifted stars (bogus) are set aside first: on a small detector the host fakes would
        # otherwise take every star (on ``tiny``, 42 host fakes left one star of ~20 to shift), and
        # the bogus class, 20× rarer than the real one, is what the classifier is short of; at most
        # two thirds of the stars are shifted, the rest can carry variable-star fakes
        n_move = min(self.n_shifted, len(stars) - len(stars) // 3)
        moved: list[int] = []
        while len(moved) < n_move and stars:
            k = stars.pop()
            x, y = float(hosts[k]["x"]), float(hosts[k]["y"])
            if clear(x, y, 1.5):
                moved.append(k)
                placed.append((x, y, 1.5))

        for kind in kinds:
            snr = float(np.exp(rng.uniform(np.log(self.snr_min), np.log(self.snr_max))))
            flux = snr * sigma_flux
            length, angle = 0.0, 0.0
            if kind == "trail":
                length, angle = float(rng.uniform(3.0, 25.0)), float(rng.uniform(0, np.pi))
                flux *= np.sqrt(1 + length / psf.fwhm)
            if kind == "host":
                on_galaxy = self.galaxy_hosts or rng.uniform() < self.galaxy_share
                hi = next_host(galaxies if on_galaxy else stars)
                if hi is None and not self.galaxy_hosts:  # none of that kind left: the other kind
                    on_galaxy = not on_galaxy
                    hi = next_host(galaxies if on_galaxy else stars)
                if hi is None:
                    continue  # every host carries a fake already
                used.add(hi)
                h = hosts[hi]
                r, phi = rng.uniform(0, psf.fwhm), rng.uniform(0, 2 * np.pi)
                x, y = float(h["x"]) + r * np.cos(phi), float(h["y"]) + r * np.sin(phi)
                host_flux = float(h["flux"])
                # a variable star's change: 10–100 % of its flux (galaxy hosts get SN-like fakes, at
                # the drawn SNR whatever the host's brightness, so every SN/host contrast is seen)
                if not on_galaxy and self.variable_hosts and rng.uniform() < 0.5:
                    flux = max(flux, host_flux * float(rng.uniform(self.min_variability, 1.0)))
                if rng.uniform() < self.negative_fraction:  # fading: at most 80 % of the host's flux removed
                    flux = -min(flux, 0.8 * host_flux)
            else:
                anchor = None
                if kind == "sky" and bright_pool and rng.uniform() < self.near_bright_share:
                    anchor = bright_pool[int(rng.integers(len(bright_pool)))]
                    kind = "neighbour"
                for _ in range(50):
                    if anchor is not None:
                        r = rng.uniform(*self.near_bright_fwhm) * psf.fwhm
                        phi = rng.uniform(0, 2 * np.pi)
                        x, y = anchor[0] + r * np.cos(phi), anchor[1] + r * np.sin(phi)
                        if not (margin < x < nx - margin and margin < y < ny - margin):
                            continue
                    else:
                        x, y = rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin)
                    if clear(x, y, length / 2):
                        break
                else:
                    continue  # the image is full
            ix, iy = round(x), round(y)
            if bad[iy, ix]:
                continue
            _add_source(image, psf, x, y, flux, length, angle)
            placed.append((x, y, length / 2))
            rows.append((x, y, flux, snr, kind, length, angle))
        for k in moved:  # galaxies do not move: shifting them taught the model that core changes are bogus
            h = hosts[k]
            x, y, flux = float(h["x"]), float(h["y"]), float(h["flux"])
            shift = float(np.exp(rng.uniform(np.log(0.2), np.log(1.5))))
            angle = float(rng.uniform(0, 2 * np.pi))
            _add_source(image, psf, x + shift * np.cos(angle), y + shift * np.sin(angle), flux, 0.0, 0.0)
            _add_source(image, psf, x, y, -flux, 0.0, 0.0)
            rows.append((x, y, flux, float("nan"), "shifted", shift, angle))
        names = ("x", "y", "flux", "snr", "kind", "trail", "angle")
        if not rows:
            return Table(names=names, dtype=(float, float, float, float, str, float, float))
        return Table(rows=rows, names=names)


TRAINING_INJECTOR = functools.partial(
    FakeInjector, n=100, n_shifted=40, min_variability=0.3, near_bright_share=0.4
)
"""The training fakes per detector-visit: 100 real (a quarter on empty sky, half on detected sources'
cores, varying by 30–100 % of the host or fading, a quarter trailed) and 40 shifted sources (bogus
dipoles). Measured on ``tiny`` (scoring the processed visits, 2026-11): variable-star fakes of only
10 % of a star's flux and no shifted bogus taught the classifier that a small change on a star is
real, and kept 7–10 false DIA sources per 4k detector per visit from star residuals. 40 % of the sky
fakes sit 1.5–4 FWHM from a bright source (see :class:`FakeInjector`)."""

TREE_OPTIONS: dict[str, Any] = {"depth": 3, "n_trees": 300, "learning_rate": 0.05, "min_hess": 5.0}
"""Boosted-tree settings (depth 3 as the feature interactions need; 300 × 0.05 was steadier across
training seeds than 150 × 0.1)."""


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
    if fakes is not None and "kind" in fakes.colnames:
        fakes = fakes[np.asarray(fakes["kind"]).astype(str) != "shifted"]
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
    if fakes is not None and "kind" in fakes.colnames:  # shifted sources are bogus by construction
        fakes = fakes[np.asarray(fakes["kind"]).astype(str) != "shifted"]
    if fakes is None or not len(fakes) or not len(dia):
        return out
    trail = np.asarray(fakes["trail"], float) if "trail" in fakes.colnames else np.zeros(len(fakes))
    d, k = cKDTree(np.column_stack([np.asarray(fakes["x"]), np.asarray(fakes["y"])])).query(
        np.column_stack([np.asarray(dia["x"]), np.asarray(dia["y"])])
    )
    return (d < reach_fwhm * fwhm + trail[k] / 2) & ~np.asarray(labels, bool)


def _training_job(args: tuple[str, Any, int, str, int | None]) -> Table | str:
    """One training detector-visit, with the fakes of ``seed`` injected, or as it is (``seed`` None:
    a *clean* run, whose unmatched DIA sources are all natural bogus)."""
    from pachon.pipelines.prompt.pipeline import open_repo, process_detector

    path, exposure, detector, config_json, seed = args
    inject = TRAINING_INJECTOR(seed=seed) if seed is not None else None
    outcome = process_detector(path, exposure, detector, config_json, None, inject=inject)
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
    fwhm = float(outcome.psf.fwhm) if outcome.psf is not None else 4.0
    dia["rb_ambiguous"] = ambiguous_near_fakes(dia, fakes, np.asarray(dia["rb_label"]), fwhm=fwhm)
    dia["rb_synthetic_bogus"] = _near_shifted(dia, fakes, 2.5 * fwhm) & ~np.asarray(dia["rb_label"], bool)
    dia["rb_group"] = np.full(len(dia), f"{exposure.id}#{detector}#{'clean' if seed is None else seed}")
    dia["rb_clean"] = np.full(len(dia), seed is None)
    dia["rb_pixels"] = np.full(len(dia), int(np.size(outcome.difference.data)) if outcome.difference else 0)
    dia.meta = {}
    return dia


def _near_shifted(dia: Table, fakes: Table | None, radius: float) -> np.ndarray:
    """DIA sources within ``radius`` px of a ``shifted`` (injected bogus) source."""
    if fakes is None or not len(dia) or "kind" not in fakes.colnames:
        return np.zeros(len(dia), dtype=bool)
    shifted = fakes[np.asarray(fakes["kind"]).astype(str) == "shifted"]
    if not len(shifted):
        return np.zeros(len(dia), dtype=bool)
    d, _ = cKDTree(np.column_stack([np.asarray(shifted["x"]), np.asarray(shifted["y"])])).query(
        np.column_stack([np.asarray(dia["x"]), np.asarray(dia["y"])])
    )
    return np.asarray(d < radius)


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
    seeds: tuple[int, ...] = (17, 101, 202),
    clean_runs: bool = True,
    max_false_per_4k: float = 5.0,
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
    jobs = [
        (path, e, det, config.model_dump_json(), seed)
        for e in chosen
        for det in detectors_of(repo, e.id)
        for seed in (*seeds, *((None,) if clean_runs else ()))
    ]
    log(
        f"real/bogus: processing {len(jobs)} detector-visits with injected fakes from visits {[e.id for e in chosen]}"
    )
    results = list((map_fn or map)(_training_job, jobs))
    tables = [r for r in results if isinstance(r, Table) and len(r)]
    if not tables:
        log("real/bogus: no training data (every training detector failed); no model stored")
        return None
    data = vstack(tables, metadata_conflicts="silent")
    if "rb_ambiguous" in data.colnames:
        data = data[~np.asarray(data["rb_ambiguous"], bool)]
    labels = np.asarray(data["rb_label"], dtype=bool)
    if labels.all() or not labels.any():
        log("real/bogus: training data has only one class; no model stored")
        return None
    model, validation = fit_real_bogus(
        data,
        labels,
        groups=np.asarray(data["rb_group"]),
        synthetic_bogus=np.asarray(data["rb_synthetic_bogus"], bool),
        clean=np.asarray(data["rb_clean"], bool) if "rb_clean" in data.colnames else None,
        max_false_per_4k=max_false_per_4k,
        pixels_per_detector=int(data["rb_pixels"][0]),
        **TREE_OPTIONS,
    )
    log(f"real/bogus: {model.version}, held-out validation {validation}")
    if repo.has("real_bogus_model", run=COLLECTIONS["templates"], instrument=INSTRUMENT):
        ref = repo.butler.find_dataset(
            "real_bogus_model", {"instrument": INSTRUMENT}, collections=COLLECTIONS["templates"]
        )
        if ref is not None:
            repo.butler.pruneDatasets([ref], disassociate=True, unstore=True, purge=True)
    stored = model.to_dict() | {
        "training_visits": [e.id for e in chosen],
        "n_real": int(labels.sum()),
        "validation": validation,
    }
    repo.put(stored, "real_bogus_model", run=COLLECTIONS["templates"])
    return model
