"""Quality metrics of a release, the SRD's way where the SRD defines them, against truth otherwise.

``AM1`` (faro/validate_drp): bright point sources (median PSF magnitude in [17, 21.5)); pairs whose
mean positions are 5′ ± 1′ apart; for each pair the separation in every visit where both were
measured, its sample standard deviation (ddof = 1, ≥ 2 visits); AM1 is the median over pairs, in mas.
Like faro it is computed per band (``AM1_<band>``: each band's visits only, the magnitude window on
that band's median PSF magnitude); the headline ``AM1`` is the worse of r and i, the SRD's bands.
The magnitude window assumes LSST depth; we select by the S/N that window implies (``AM1_MIN_SNR``)
and report faro's literal window as ``AM1_faro_<band>`` too.
``PA1`` (faro's ``PA1Config``): for constant point sources (the truth's variables left out: the
simulator makes many bright stars variable) with ≥ 3 unflagged measurements in a band whose
**median** S/N there is ≥ ``pa1_min_snr`` (200, faro's ``brightSnrMin``: the high-S/N cut Rubin chose
so that shot noise does not eat the 5 mmag budget; at S/N 100 photon noise alone is 10.9 mmag), the
rms of their magnitudes about the mean; PA1 is the median over (star, band), in mmag, and its
description quotes the median photon-noise rms of the same stars, the part of PA1 no calibration
removes. ``PA1_forced`` is the same statistic of the ForcedSource fluxes (flagged fits and
measurements with saturated, cosmic-ray or bad pixels in the fit region excluded).
Against truth (the simulator's catalogs, matched at the epoch of each Object's position: J2016.0
for Objects with an astrometric fit, the coadd epoch for the others, see :func:`_match_truth`):
completeness (truth stars+galaxies that fell on ≥ ``min_visits`` detector-visits, per truth r
magnitude bin) and purity (Objects with a truth counterpart within ``match_radius``, per Object r bin);
star/galaxy accuracy (extendedness vs truth type, r < 23); proper-motion and parallax pulls
((fit − truth)/error; mean and standard deviation of pulls with |pull| < 5, fitted stars only); and the
median absolute position error per coordinate at J2016.0 (the SRD's AA1 against truth).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from scipy.spatial import cKDTree

from pachon.core.repo import COLLECTIONS, DataRepository
from pachon.pipelines.drp.coadd import PatchDepth
from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.multivisit import unit_vectors

__all__ = ["Metric", "am1", "compute_release_metrics", "pa1", "pulls"]

Metric = tuple[float, str, str]
"""(value, unit, description)"""

MAG_BINS = (18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0)

AM1_MIN_SNR = 95.0
"""The S/N of a star at faro's faint limit r = 21.5 in an LSST design-depth visit (5σ at 24.7):
5 · 10^(0.4 · 3.2) ≈ 95. Our simulated visits are ~1.5 mag shallower, so the literal window reaches
S/N ~20 where photon-noise centroids alone are 30–40 mas; selecting by S/N keeps the SRD's intent
(bright stars whose centroids are limited by the system, not by photons)."""


def _mag(flux: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(flux) + 31.4, np.nan)


def am1(
    sources: Table,
    extended: dict[int, bool],
    *,
    distance_arcmin: float = 5.0,
    width_arcmin: float = 2.0,
    mag_range: tuple[float, float] = (17.0, 21.5),
    min_snr: float | None = None,
) -> tuple[float, int]:
    """faro's AMx on per-visit positions; returns (median rms in mas, number of pairs).

    ``min_snr`` additionally requires the star's median per-visit PSF S/N to reach it (the
    depth-scaled window: see :func:`compute_release_metrics`).
    """
    oid = np.asarray(sources["objectId"], np.int64)
    keep = oid >= 0
    for col in ("pixelFlags_edge", "pixelFlags_cr", "pixelFlags_saturated", "pixelFlags_bad"):
        if col in sources.colnames:  # faro's source selection drops flagged measurements too
            keep &= ~np.asarray(sources[col], bool)
    s = sources[keep]
    oid = oid[keep]
    mags = _mag(np.asarray(s["psfFlux"], float))
    uo, inv = np.unique(oid, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(uo)))
    med = (
        np.array([np.nanmedian(part) for part in np.split(mags[order], starts[1:])])
        if len(uo)
        else np.zeros(0)
    )
    point = np.array([not extended.get(int(o), True) for o in uo])
    good = point & (med >= mag_range[0]) & (med < mag_range[1])
    if min_snr is not None:
        snr = np.asarray(s["psfFlux"], float) / np.asarray(s["psfFluxErr"], float)
        med_snr = np.array([np.nanmedian(part) for part in np.split(snr[order], starts[1:])])
        good &= med_snr >= min_snr
    if good.sum() < 2:
        return float("nan"), 0
    ra = np.asarray(s["coord_ra"], float)
    dec = np.asarray(s["coord_dec"], float)
    visit = np.asarray(s["visit"], np.int64)
    vec = unit_vectors(ra, dec)
    mean_vec = np.zeros((len(uo), 3))
    np.add.at(mean_vec, inv, vec)
    mean_vec /= np.linalg.norm(mean_vec, axis=1)[:, None]
    idx = np.flatnonzero(good)
    lo = np.radians((distance_arcmin - width_arcmin / 2) / 60)
    hi = np.radians((distance_arcmin + width_arcmin / 2) / 60)
    tree = cKDTree(mean_vec[idx])
    pairs = tree.query_pairs(2 * np.sin(hi / 2), output_type="ndarray")
    per_obj: dict[int, dict[int, np.ndarray]] = {}
    rows_of = np.split(order, starts[1:])
    for k in idx:
        rows = rows_of[k]
        per_obj[int(k)] = {int(v): vec[r] for v, r in zip(visit[rows], rows, strict=True)}
    values = []
    for a, b in pairs:
        ka, kb = int(idx[a]), int(idx[b])
        sep0 = np.arccos(np.clip(mean_vec[ka] @ mean_vec[kb], -1, 1))
        if sep0 < lo or sep0 > hi:
            continue
        common = sorted(set(per_obj[ka]) & set(per_obj[kb]))
        if len(common) < 2:
            continue
        seps = np.array([np.arccos(np.clip(per_obj[ka][v] @ per_obj[kb][v], -1, 1)) for v in common])
        values.append(np.std(np.degrees(seps) * 3.6e6, ddof=1))
    if not values:
        return float("nan"), 0
    return float(np.median(values)), len(values)


PA1_MIN_SNR = 200.0
"""faro's ``PA1Config.brightSnrMin``: a star counts when its median S/N in the band reaches this."""


def pa1(
    sources: Table,
    extended: dict[int, bool],
    *,
    min_snr: float = PA1_MIN_SNR,
    exclude: set[int] | None = None,
) -> tuple[float, int, float]:
    """PA1 as faro computes it (module docstring): (mmag, number of star-bands, median photon-noise mmag).

    The third value is the median over the same star-bands of the rms photon-noise error
    (1.0857/S/N), so a reader can see how much of PA1 is shot noise and how much is calibration.
    ``exclude``: objectIds left out (the truth's variable stars, see :func:`compute_release_metrics`).
    """
    oid = np.asarray(sources["objectId"], np.int64)
    flux = np.asarray(sources["psfFlux"], float)
    snr = flux / np.asarray(sources["psfFluxErr"], float)
    point = np.array([not extended.get(int(o), True) for o in oid], bool)
    flags = np.zeros(len(sources), bool)
    for col in ("pixelFlags_edge", "pixelFlags_cr", "pixelFlags_saturated", "pixelFlags_bad", "psfFlux_flag"):
        if col in sources.colnames:
            flags |= np.asarray(sources[col], bool)
    m = (oid >= 0) & point & np.isfinite(snr) & (snr > 0) & ~flags
    if exclude:
        m &= ~np.isin(oid, np.fromiter(exclude, np.int64, len(exclude)))
    mags, snr = _mag(flux[m]), snr[m]
    key = np.char.add(np.asarray(sources["band"]).astype(str)[m], oid[m].astype(str))
    order = np.argsort(key, kind="stable")
    key, mags, snr = key[order], mags[order], snr[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    rms, photon = [], []
    for x, s in zip(np.split(mags, starts[1:]), np.split(snr, starts[1:]), strict=True):
        if len(x) >= 3 and np.median(s) >= min_snr:
            rms.append(np.sqrt(np.mean((x - x.mean()) ** 2)) * 1000)
            photon.append(np.sqrt(np.mean((1.0857 / s) ** 2)) * 1000)
    if not rms:
        return float("nan"), 0, float("nan")
    return float(np.median(rms)), len(rms), float(np.median(photon))


def _pa1_bands(table: Table) -> Table:
    """The rows in the SRD's PA1 bands (g, r, i), or every row when a release has none of them."""
    gri = np.isin(np.asarray(table["band"]).astype(str), ["g", "r", "i"])
    return table[gri] if gri.any() else table


def pulls(fit: np.ndarray, err: np.ndarray, truth: np.ndarray, clip: float = 5.0) -> tuple[float, float, int]:
    """Mean and standard deviation of (fit − truth)/err over finite values with |pull| < clip."""
    p = (fit - truth) / err
    p = p[np.isfinite(p) & (np.abs(p) < clip)]
    if len(p) < 2:
        return float("nan"), float("nan"), len(p)
    return float(np.mean(p)), float(np.std(p, ddof=1)), len(p)


MOFFAT_BETA = 3.5  # the simulator's PSF profile


def moffat_neff(fwhm_px: float, beta: float = MOFFAT_BETA) -> float:
    """Effective area 1/∫P² (pixels) of a Moffat PSF: π α² (2β − 1)/(β − 1)² (3.78 FWHM² at β = 3.5)."""
    alpha = fwhm_px / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return float(np.pi * alpha**2 * (2 * beta - 1) / (beta - 1) ** 2)


def _matched_flux_variance(var: np.ndarray, fwhm: np.ndarray, target: float) -> np.ndarray:
    """Each visit's PSF-flux variance once PSF-matched to ``target`` (see :func:`expected_coadd_depth`)."""
    st2 = target**2
    return np.asarray(var * moffat_neff(target) * st2 / (2 * st2 - fwhm**2))


def expected_coadd_depth(
    visits: list[dict[str, float]], *, match_factor: float = 1.02, psf_matched: bool = True
) -> float:
    """Truth-based 5σ point-source depth (AB) of an inverse-variance coadd of ``visits``.

    Each visit is ``{"var": sky + read-noise variance per pixel in nJy², "fwhm": PSF FWHM in
    pixels}`` from the simulator's truth. A visit's PSF-flux variance is ``var · n_eff``; PSF
    matching convolves it to ``match_factor ×`` the worst FWHM, which for Gaussian profiles
    multiplies that variance by ``σ_t² / (2σ_t² − σ_i²)`` (noise correlated by the kernel, flux
    fitted with the broader PSF). The coadd weights inputs by the inverse of that flux variance
    (:func:`pachon.pipelines.prompt.coadd.matched_white_variance`), as the coadder does; without
    PSF matching, by 1/var.
    """
    if not visits:
        return float("nan")
    var = np.array([v["var"] for v in visits], float)
    fwhm = np.array([v["fwhm"] for v in visits], float)
    target = match_factor * float(fwhm.max()) if psf_matched else None
    w = 1.0 / var
    if target is None:
        flux_var = var * np.array([moffat_neff(f) for f in fwhm])
    else:
        flux_var = _matched_flux_variance(var, fwhm, target)
        w = 1.0 / flux_var
    sigma = float(np.sqrt(np.sum(w**2 * flux_var)) / np.sum(w))
    return float(-2.5 * np.log10(5 * sigma) + 31.4)


def _truth_visit_noise(
    repo: DataRepository, fwhm: dict[tuple[int, int], float]
) -> dict[tuple[int, int], dict[str, Any]]:
    """(exposure, detector) → {"band", "var" (sky + read noise per pixel, nJy²), "fwhm" (px)} from the truth.

    The truth's ``sky_electrons`` and ``electrons_per_njy`` are what reaches the detector; the
    pixels then collect a fraction ``q`` of it, the simulator's true flat (QE × vignetting × PRNU,
    0.73–1.0 across ``small``'s detectors, mostly vignetting): ``q·sky`` electrons of sky and ``q·e``
    per nJy. Leaving ``q`` out made the expectation 0.08–0.13 mag too deep on ``small``. Per pixel
    in nJy² the variance is ``(q·sky + rn²) / (q·e)²``, ``q`` the detector's mean true flat in the band.
    """
    butler = repo.butler
    try:
        sim = butler.get("sim_config", collections=COLLECTIONS["truth"])
        config = sim.get("config", sim)
        scale = float(config["camera"]["pixel_scale"])
    except Exception:  # a repo without simulator truth: no expectation
        return {}
    throughput = _flat_throughput(config, sim.get("seed"))
    out: dict[tuple[int, int], dict[str, Any]] = {}
    refs = butler.query_datasets(
        "truth_visit_info", collections=COLLECTIONS["truth"], find_first=True, explain=False, limit=None
    )
    for ref in refs:
        info = butler.get(ref)
        key = (int(info["exposure"]), int(info["detector"]))
        if key not in fwhm:
            continue
        q = throughput(int(info["detector"]), str(info["band"]))
        e_per_njy = float(info["electrons_per_njy"]) * q
        var = (float(info["sky_electrons"]) * q + float(info["read_noise"]) ** 2) / e_per_njy**2
        out[key] = {"band": str(info["band"]), "var": var, "fwhm": fwhm[key] / scale}
    return out


def _flat_throughput(config: dict[str, Any], seed: Any) -> Callable[[int, str], float]:
    """(detector, band) → the mean of the simulator's true flat (1.0 when it cannot be rebuilt)."""
    cache: dict[tuple[int, str], float] = {}
    config_json = json.dumps(config)

    def mean_flat(detector: int, band: str) -> float:
        if (detector, band) not in cache:
            try:
                from pachon.pipelines.sim.render import true_flat

                cache[(detector, band)] = float(np.mean(true_flat(config_json, int(seed), detector, band)))
            except Exception:  # an older simulator's config: the sky as it reaches the detector
                cache[(detector, band)] = 1.0
        return cache[(detector, band)]

    return mean_flat


def _truth_depths(noise: dict[tuple[int, int], dict[str, Any]]) -> dict[str, float]:
    """Per band, the median over detectors of :func:`expected_coadd_depth` of that detector's visits."""
    per: dict[tuple[str, int], list[dict[str, float]]] = {}
    for (_exposure, detector), v in noise.items():
        per.setdefault((v["band"], detector), []).append({"var": v["var"], "fwhm": v["fwhm"]})
    out: dict[str, list[float]] = {}
    for (band, _det), visits in per.items():
        out.setdefault(band, []).append(expected_coadd_depth(visits))
    return {b: float(np.median(v)) for b, v in out.items()}


def _inside(polygon: list[tuple[float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points (x, y) lie inside a convex quadrilateral given in order around it (either sense)."""
    px, py = np.array(polygon, float).T
    side = []
    for k in range(len(px)):
        x0, y0, x1, y1 = px[k], py[k], px[(k + 1) % len(px)], py[(k + 1) % len(px)]
        side.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    cross = np.array(side)
    return np.all(cross >= 0, axis=0) | np.all(cross <= 0, axis=0)


def expected_patch_depth(
    visits: list[dict[str, float]],
    polygons: list[list[tuple[float, float]]],
    shape: tuple[int, int],
    *,
    match_factor: float = 1.02,
    grid: int = 64,
) -> float:
    """Truth-based 5σ depth of a patch coadd where it has its full coverage, as it is measured.

    On a ``grid`` × ``grid`` lattice over the bordered patch, each position's PSF-flux error is
    that of the inverse-variance coadd of the inputs whose detector covers it (each input's
    flux variance as in :func:`expected_coadd_depth`, PSF-matched to ``match_factor`` × the
    broadest input of the whole patch, as the coadder matches). The positions whose error is
    within 10 % of the deepest decile's are the patch's full coverage, and the median error
    there gives the depth: the same selection the measurement makes on the coadd
    (:func:`pachon.pipelines.drp.measure_coadd.random_psf_noise`), so detector gaps, dither
    edges and inputs that reach only part of the patch weigh as they do in the measurement.
    """
    if not visits:
        return float("nan")
    var = np.array([v["var"] for v in visits], float)
    fwhm = np.array([v["fwhm"] for v in visits], float)
    inv_flux_var = 1.0 / _matched_flux_variance(var, fwhm, match_factor * float(fwhm.max()))
    ny, nx = shape
    gy, gx = np.meshgrid(
        (np.arange(grid) + 0.5) * ny / grid, (np.arange(grid) + 0.5) * nx / grid, indexing="ij"
    )
    x, y = gx.ravel(), gy.ravel()
    total = np.zeros(len(x))
    for w, poly in zip(inv_flux_var, polygons, strict=True):
        total += np.where(_inside(poly, x, y), w, 0.0)
    covered = total > 0
    if not covered.any():
        return float("nan")
    sigma = 1.0 / np.sqrt(total[covered])
    full = sigma <= 1.1 * float(np.percentile(sigma, 10))
    return float(-2.5 * np.log10(5 * float(np.median(sigma[full]))) + 31.4)


def _patch_depth_offsets(
    noise: dict[tuple[int, int], dict[str, Any]], patch_depths: list[PatchDepth]
) -> dict[str, tuple[float, int]]:
    """Per band: median over patches of (measured depth − :func:`expected_patch_depth`), and the count.

    Why per patch and per position: the measured depth is taken where each patch has its full
    coverage. Comparing the median patch with the median detector's whole stack of visits
    (``coadd_depth_minus_stack_expected``) counts every patch whose deepest part is reached by
    fewer visits (edges of the dithered footprint, detector gaps) as a shortfall; comparing a
    patch with all of its inputs counts in full an input that reaches only a corner of it.
    """
    diffs: dict[str, list[float]] = {}
    for pd_ in patch_depths:
        pairs = [
            (noise[k], poly)
            for k, poly in zip(map(tuple, pd_.inputs), pd_.polygons, strict=True)
            if k in noise
        ]
        if pairs and np.isfinite(pd_.measured):
            visits = [{"var": n["var"], "fwhm": n["fwhm"]} for n, _ in pairs]
            expected = expected_patch_depth(visits, [p for _, p in pairs], pd_.shape)
            if np.isfinite(expected):
                diffs.setdefault(pd_.band, []).append(pd_.measured - expected)
    return {b: (float(np.median(d)), len(d)) for b, d in diffs.items()}


def _truth(repo: DataRepository, min_visits: int) -> tuple[Table, set[int], dict[tuple[int, int], float]]:
    butler = repo.butler
    stars = butler.get("truth_stars", collections=COLLECTIONS["truth"])
    gals = butler.get("truth_galaxies", collections=COLLECTIONS["truth"])
    stars["is_galaxy"] = np.zeros(len(stars), bool)
    gals["is_galaxy"] = np.ones(len(gals), bool)
    for c in ("pm_ra", "pm_dec", "parallax"):
        gals[c] = np.zeros(len(gals))
    gals["is_variable"] = np.zeros(len(gals), bool)
    if "is_variable" not in stars.colnames:
        stars["is_variable"] = np.zeros(len(stars), bool)
    cols = ["id", "ra", "dec", "pm_ra", "pm_dec", "parallax", "mag_r", "is_galaxy", "is_variable"]
    truth = vstack([stars[cols], gals[cols]], metadata_conflicts="silent")
    counts: dict[int, int] = {}
    refs = butler.query_datasets(
        "truth_visit_sources", collections=COLLECTIONS["truth"], find_first=True, explain=False, limit=None
    )
    fwhm: dict[tuple[int, int], float] = {}  # (exposure, detector) → median truth PSF FWHM (arcsec)
    for ref in refs:
        t = butler.get(ref)
        kinds = np.asarray(t["type"]).astype(str)
        for i in np.asarray(t["id"], np.int64)[np.isin(kinds, ["star", "galaxy"])]:
            counts[int(i)] = counts.get(int(i), 0) + 1
        if len(t) and "psf_fwhm" in t.colnames:
            fwhm[(int(ref.dataId["exposure"]), int(ref.dataId["detector"]))] = float(np.median(t["psf_fwhm"]))
    seen = {i for i, c in counts.items() if c >= min_visits}
    return truth, seen, fwhm


def _object_epochs(objects: Table) -> np.ndarray:
    """Each Object's coadd epoch (MJD): the mean of its per-band ``<band>_epoch`` columns (NaN: none)."""
    cols = [c for c in objects.colnames if c.endswith("_epoch") and len(c) == len("g_epoch")]
    if not cols or not len(objects):
        return np.full(len(objects), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an Object with no band epoch: NaN
        return np.nanmean(np.column_stack([np.asarray(objects[c], float) for c in cols]), axis=1)


def _match_truth(
    objects: Table, truth: Table, ref_epoch_mjd: float, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Objects ↔ truth within ``radius_arcsec``, each Object compared at the epoch of its position.

    An Object joined to the multi-visit astrometric solution is at J2016.0 like the truth; one
    without (most stars fainter than the single-visit detection limit) keeps its coadd position, at
    the coadd's mean epoch. A faint star moving 100 mas/yr is then ~1.2″ from its J2016.0 truth
    position on visits taken in 2027–29, so matching everything at J2016.0 counted such stars both
    as missed (completeness) and as spurious Objects (purity). Truth is moved by its proper motion
    only (its parallax, ≤ 0.06″ here, averages down over the coadd's visits).

    Returns (Object → nearest truth distance, inf if none within the radius; its truth index;
    truth matched by some Object; per Object the truth RA and Dec at that Object's epoch, NaN if
    unmatched).
    """
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600) / 2)
    n_o, n_t = len(objects), len(truth)
    d_ot, j_ot = np.full(n_o, np.inf), np.full(n_o, n_t, np.int64)
    matched_t = np.zeros(n_t, bool)
    t_ra, t_dec = np.full(n_o, np.nan), np.full(n_o, np.nan)
    if n_o == 0 or n_t == 0:
        return d_ot, j_ot, matched_t, t_ra, t_dec
    ra0, dec0 = np.asarray(truth["ra"], float), np.asarray(truth["dec"], float)
    pm_ra = np.nan_to_num(np.asarray(truth["pm_ra"], float))
    pm_dec = np.nan_to_num(np.asarray(truth["pm_dec"], float))
    fitted = (
        np.isfinite(np.asarray(objects["pmRa"], float)) if "pmRa" in objects.colnames else np.ones(n_o, bool)
    )
    epochs = _object_epochs(objects)
    coadd_epoch = (
        float(np.nanmedian(epochs[~fitted])) if np.isfinite(epochs[~fitted]).any() else ref_epoch_mjd
    )
    ovec = unit_vectors(np.asarray(objects["coord_ra"], float), np.asarray(objects["coord_dec"], float))
    for sel, epoch in ((fitted, ref_epoch_mjd), (~fitted, coadd_epoch)):
        if not sel.any():
            continue
        dt = (epoch - ref_epoch_mjd) / 365.25
        ra = ra0 + pm_ra * dt / 3.6e6 / np.cos(np.radians(dec0))
        dec = dec0 + pm_dec * dt / 3.6e6
        tvec = unit_vectors(ra, dec)
        d, j = cKDTree(tvec).query(ovec[sel], distance_upper_bound=chord)
        d_ot[sel], j_ot[sel] = d, j
        hit = np.isfinite(d)
        idx = np.flatnonzero(sel)[hit]
        t_ra[idx], t_dec[idx] = ra[j[hit]], dec[j[hit]]
        d_to, _ = cKDTree(ovec[sel]).query(tvec, distance_upper_bound=chord)
        matched_t |= np.isfinite(d_to)
    return d_ot, j_ot, matched_t, t_ra, t_dec


def compute_release_metrics(
    repo: DataRepository,
    objects: Table,
    sources: Table,
    forced: Table,
    *,
    config: DrpConfig | None = None,
    match_radius_arcsec: float = 0.5,
    pa1_min_snr: float = PA1_MIN_SNR,
    coadd_depth: dict[str, float] | None = None,
    patch_depths: list[PatchDepth] | None = None,
) -> dict[str, Metric]:
    """Every metric of a release (see the module docstring), as ``{name: (value, unit, description)}``."""
    config = config or DrpConfig()
    out: dict[str, Metric] = {}
    ext_arr = np.asarray(objects["refExtendedness"], float) > config.extendedness_threshold
    extended = {int(o): bool(e) for o, e in zip(objects["objectId"], ext_arr, strict=True)}
    truth, seen, fwhm = _truth(repo, config.min_visits)
    d_ot, j_ot, matched_t, t_ra, t_dec = _match_truth(
        objects, truth, config.ref_epoch_mjd, match_radius_arcsec
    )
    matched_o = np.isfinite(d_ot)
    # the simulator makes many bright stars variable (to exercise the alert pipeline); a
    # repeatability metric is about the calibration of constant stars
    is_var = np.asarray(truth["is_variable"], bool)[j_ot[matched_o]]
    variable = set(np.asarray(objects["objectId"], np.int64)[matched_o][is_var].tolist())
    bands = np.asarray(sources["band"]).astype(str)
    per_band: dict[str, float] = {}
    for band in sorted(set(bands.tolist())):
        in_band = sources[bands == band]
        value, n = am1(in_band, extended, min_snr=AM1_MIN_SNR)
        per_band[band] = value
        out[f"AM1_{band}"] = (
            value, "mas", f"median rms of 5′±1′ pair separations over {band}-band visits, stars with "
            f"median S/N ≥ {AM1_MIN_SNR:g} and mag ≥ 17 ({n} pairs)",
        )  # fmt: skip
        value, n = am1(in_band, extended)
        out[f"AM1_faro_{band}"] = (
            value, "mas", f"AM1 with faro's literal window 17 ≤ {band} < 21.5 ({n} pairs; S/N ~20 at its "
            "faint end in this simulation's shallower visits)",
        )  # fmt: skip
        value, n, shot = pa1(in_band, extended, min_snr=pa1_min_snr, exclude=variable)
        out[f"PA1_{band}"] = (
            value, "mmag", f"PA1 in {band}, median S/N ≥ {pa1_min_snr:g} ({n} constant stars; photon noise {shot:.1f} mmag)"
        )  # fmt: skip
    srd = [v for b, v in per_band.items() if b in ("r", "i") and np.isfinite(v)]
    finite = [v for v in per_band.values() if np.isfinite(v)]
    headline = max(srd) if srd else (max(finite) if finite else float("nan"))
    out["AM1"] = (
        headline, "mas", "AM1 of the worse of the r and i bands (the SRD's bands; per band as faro computes it)"
    )  # fmt: skip
    value, n, shot = pa1(_pa1_bands(sources), extended, min_snr=pa1_min_snr, exclude=variable)
    out["PA1"] = (
        value, "mmag", f"median rms of point-source PSF mags in g, r, i (the SRD's PA1 bands), stars with median "
        f"S/N ≥ {pa1_min_snr:g} as faro selects them, the truth's variables left out ({n} star-bands; their photon noise alone {shot:.1f} mmag)",
    )  # fmt: skip

    if len(forced) and {"objectId", "band", "psfFlux", "psfFluxErr"} <= set(forced.colnames):
        value, n, shot = pa1(_pa1_bands(forced), extended, min_snr=pa1_min_snr, exclude=variable)
        out["PA1_forced"] = (
            value, "mmag", f"PA1 of the ForcedSource PSF fluxes (Object positions on every visit) in g, r, i, "
            f"median S/N ≥ {pa1_min_snr:g} ({n} star-bands; photon noise {shot:.1f} mmag)",
        )  # fmt: skip
    noise = _truth_visit_noise(repo, fwhm)
    expected = _truth_depths(noise)
    offsets = _patch_depth_offsets(noise, patch_depths or [])
    for band, depth in sorted(expected.items()):
        out[f"coadd_depth_expected_{band}"] = (
            depth, "mag", "truth-based 5σ PSF depth of the PSF-matched inverse-variance coadd (simulated sky, "
            "read noise, PSF FWHM and throughput of every input visit; median over detectors)",
        )  # fmt: skip
        if coadd_depth and np.isfinite(coadd_depth.get(band, np.nan)):
            out[f"coadd_depth_minus_stack_expected_{band}"] = (
                coadd_depth[band] - depth, "mag", "median patch's measured 5σ depth − median detector's "
                "truth-based expectation for its full stack of visits (counts patches whose deepest part fewer "
                "visits reach as a shortfall)",
            )  # fmt: skip
        if band in offsets:
            value, n = offsets[band]
            out[f"coadd_depth_minus_expected_{band}"] = (
                value, "mag", f"median over {n} patches of (measured 5σ depth − truth-based expectation at the "
                "same full-coverage positions, from the inputs that cover each position)",
            )  # fmt: skip
        elif coadd_depth and np.isfinite(coadd_depth.get(band, np.nan)):
            out[f"coadd_depth_minus_expected_{band}"] = out[f"coadd_depth_minus_stack_expected_{band}"]
    in_fp = np.isin(np.asarray(truth["id"], np.int64), np.fromiter(seen, np.int64, len(seen)))
    tmag = np.asarray(truth["mag_r"], float)
    oflux = (
        np.asarray(objects["r_psfFlux"], float)
        if "r_psfFlux" in objects.colnames
        else np.full(len(objects), np.nan)
    )
    omag = _mag(oflux)
    for lo, hi in itertools.pairwise(MAG_BINS):
        tb = in_fp & (tmag >= lo) & (tmag < hi)
        if tb.sum():
            out[f"completeness_r{lo:.0f}_{hi:.0f}"] = (
                float(matched_t[tb].mean()), "", f"fraction of {int(tb.sum())} truth sources with r in [{lo:g},{hi:g}) found"
            )  # fmt: skip
        ob = (omag >= lo) & (omag < hi)
        if ob.sum():
            out[f"purity_r{lo:.0f}_{hi:.0f}"] = (
                float(matched_o[ob].mean()), "", f"fraction of {int(ob.sum())} Objects with r in [{lo:g},{hi:g}) real"
            )  # fmt: skip
    ref_band = "r" if "r" in expected or (coadd_depth and "r" in coadd_depth) else None
    if ref_band is not None:
        measured = (coadd_depth or {}).get(ref_band, float("nan"))
        depth = measured if np.isfinite(measured) else expected.get(ref_band, float("nan"))
        if np.isfinite(depth):
            star_t = ~np.asarray(truth["is_galaxy"], bool)
            near = in_fp & (tmag >= depth - 1.25) & (tmag < depth - 0.75)
            src = "measured" if np.isfinite(measured) else "truth-expected"
            for name, sel in (
                ("completeness_depth_minus_1", near & star_t),
                ("completeness_depth_minus_1_all", near),
            ):
                if sel.sum():
                    out[name] = (
                        float(matched_t[sel].mean()), "", f"fraction of {int(sel.sum())} truth "
                        f"{'stars' if name.endswith('_1') else 'stars+galaxies'} with r within ±0.25 of "
                        f"({src} r coadd depth {depth:.2f}) − 1 found",
                    )  # fmt: skip
    out["purity"] = (
        float(matched_o.mean()) if len(matched_o) else float("nan"),
        "",
        "fraction of all Objects matched to truth",
    )
    jm = j_ot[matched_o]
    is_gal = np.asarray(truth["is_galaxy"], bool)[jm]
    bright = np.asarray(truth["mag_r"], float)[jm] < 23.0
    if bright.any():
        out["star_galaxy_accuracy"] = (
            float((ext_arr[matched_o][bright] == is_gal[bright]).mean()), "",
            "fraction of matched Objects (truth r<23) whose extendedness matches the truth type",
        )  # fmt: skip
    # astrometry vs truth (stars only)
    star = ~is_gal
    oi = np.flatnonzero(matched_o)[star]
    tj = jm[star]
    cosd = np.cos(np.radians(t_dec[oi]))
    dra = (np.asarray(objects["coord_ra"], float)[oi] - t_ra[oi]) * cosd * 3.6e6
    ddec = (np.asarray(objects["coord_dec"], float)[oi] - t_dec[oi]) * 3.6e6
    if len(oi):
        out["AA1_truth"] = (
            float(np.median(np.abs(np.concatenate([dra, ddec])))), "mas",
            "median absolute position error per coordinate of matched stars, against the truth at J2016.0 for "
            "Objects with an astrometric fit and at the coadd epoch for the others",
        )  # fmt: skip
    for col, tcol, name, _unit in (
        ("pmRa", "pm_ra", "pmRa", "mas/yr"),
        ("pmDec", "pm_dec", "pmDec", "mas/yr"),
        ("parallax", "parallax", "parallax", "mas"),
    ):
        fit = np.asarray(objects[col], float)[oi]
        err = np.asarray(objects[f"{col}Err"], float)[oi]
        mean, std, n = pulls(fit, err, np.asarray(truth[tcol], float)[tj])
        out[f"{name}_pull_mean"] = (mean, "", f"mean of (fit−truth)/err over {n} stars")
        out[f"{name}_pull_std"] = (std, "", f"std of (fit−truth)/err over {n} stars")
    out["n_objects"] = (float(len(objects)), "", "Objects in the release")
    out["n_forced_sources"] = (float(len(forced)), "", "ForcedSource rows")
    return out
