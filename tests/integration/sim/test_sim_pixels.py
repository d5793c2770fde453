"""Truth against pixels on the shared ``tiny`` repo: photometry, PSF size, WCS, asteroids, products.

The calibration here is done the way a pipeline would, from what the raw and the flat
carry: per-row overscan subtraction, gain from the header, division by the (imperfect)
flat; the aperture correction comes from the Moffat PSF model at the truth FWHM.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from astropy.wcs import WCS
from scipy.optimize import least_squares

from pachon.core.repo import DataRepository
from pachon.pipelines.sim.optics import MOFFAT_BETA, PsfModel

# future observing dates are beyond ERFA's leap-second table ("dubious year"): expected, harmless
pytestmark = pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")


@pytest.fixture(scope="module")
def repo(tiny_repo: Path) -> Iterator[DataRepository]:
    yield DataRepository.open(tiny_repo)
    _CACHE.clear()  # calibrated images are large; free them when this module is done


def _exposures(repo: DataRepository) -> list[int]:
    return sorted(r.id for r in repo.butler.registry.queryDimensionRecords("exposure", instrument="Pachon"))


_CACHE: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray, dict]] = {}


def _calibrated(repo: DataRepository, exposure: int, detector: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Electrons per pixel (bias-subtracted, gain-applied, flat-fielded), bad-pixel mask, header."""
    key = (str(repo.path), exposure, detector)
    if key not in _CACHE:
        _CACHE[key] = _calibrate(repo, exposure, detector)
    return _CACHE[key]


def _calibrate(repo: DataRepository, exposure: int, detector: int) -> tuple[np.ndarray, np.ndarray, dict]:
    raw = repo.get("raw", exposure=exposure, detector=detector)
    hdr = raw.meta
    nx = int(str(hdr["DATASEC"]).strip("[]").split(",")[0].split(":")[1])
    data = np.asarray(raw.data, dtype=np.float64)
    overscan = np.mean(data[:, nx + 2 :], axis=1)  # skip the first overscan columns (as ISR does)
    electrons = (data[:, :nx] - overscan[:, None]) * float(hdr["GAIN"])
    flat = repo.get("flat", detector=detector, physical_filter=hdr["FILTER"])
    electrons /= np.asarray(flat.data, dtype=np.float64)
    bad = (np.asarray(raw.mask)[:, :nx] & 1) != 0
    bad |= data[:, :nx] >= float(hdr["SATURATE"])
    return electrons, bad, dict(hdr)


def _isolated(truth: Table, k: int, radius: float, min_counts: float) -> bool:
    d = np.hypot(truth["x"] - truth["x"][k], truth["y"] - truth["y"][k])
    close = (d > 0) & (d < radius) & (truth["counts"] > min_counts)
    return not close.any()


def test_aperture_photometry_pulls(repo: DataRepository) -> None:
    """Pulls (measured − true)/σ of ≥100 isolated unsaturated stars: mean ≈ 0, σ ≈ 1."""
    pulls = []
    for exposure in _exposures(repo)[:12]:
        for detector in range(4):
            img, bad, hdr = _calibrated(repo, exposure, detector)
            truth = repo.get("truth_visit_sources", exposure=exposure, detector=detector)
            ny, nx = img.shape
            fwhm_px = float(hdr["SEEING"]) / float(hdr["PIXSCALE"])
            r_ap, r_in, r_out = 3.0 * fwhm_px, 4.5 * fwhm_px, 6.5 * fwhm_px
            yy, xx = np.mgrid[0:ny, 0:nx]
            psf = PsfModel(float(hdr["SEEING"]), 0, 0, float(hdr["PIXSCALE"]))
            for k in np.flatnonzero((truth["type"] == "star") & ~truth["is_saturated"]):
                x, y, counts = float(truth["x"][k]), float(truth["y"][k]), float(truth["counts"][k])
                if not (r_out < x < nx - r_out and r_out < y < ny - r_out):
                    continue
                # no neighbour whose light reaches the aperture; the clipped annulus copes with faint ones
                if not _isolated(truth, k, r_ap + 4 * fwhm_px, 10.0):
                    continue
                if not _isolated(truth, k, r_out + 4 * fwhm_px, 0.1 * counts):
                    continue
                y0, y1, x0, x1 = (
                    int(y - r_out - 1),
                    int(y + r_out + 2),
                    int(x - r_out - 1),
                    int(x + r_out + 2),
                )
                cut, cbad = img[y0:y1, x0:x1], bad[y0:y1, x0:x1]
                r = np.hypot(xx[y0:y1, x0:x1] - x, yy[y0:y1, x0:x1] - y)
                ap = r < r_ap
                ann = (r >= r_in) & (r < r_out) & ~cbad
                if cbad[ap].any():
                    continue
                sky_mean, _, sky_std = sigma_clipped_stats(cut[ann], sigma=3.0)
                n_ap, n_ann = ap.sum(), ann.sum()
                flux = float(cut[ap].sum() - n_ap * sky_mean)
                frac = psf.enclosed_fraction(r_ap, float(truth["psf_fwhm"][k]))
                expected = counts * frac
                var = max(flux, 0.0) + n_ap * sky_std**2 * (1 + n_ap / n_ann)
                var += (0.005 * expected) ** 2  # the flat's stated 0.5 % error
                snr = expected / np.sqrt(var)
                if 5 < snr < 300:
                    pulls.append((flux - expected) / np.sqrt(var))
    pulls_arr = np.array(pulls)
    assert len(pulls_arr) >= 100, len(pulls_arr)
    mean, _, std = sigma_clipped_stats(pulls_arr, sigma=4.0)
    outliers = np.mean(np.abs(pulls_arr - mean) > 4 * std)
    print(f"photometry pulls: n={len(pulls_arr)} mean={mean:.3f} sigma={std:.3f} outliers={outliers:.3f}")
    assert abs(mean) < 0.15, (mean, std, len(pulls_arr))
    assert 0.85 < std < 1.15, (mean, std, len(pulls_arr))
    assert outliers < 0.05  # cosmic rays in an aperture make the rare outlier


def _moffat_model(p: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    x0, y0, flux, fwhm, beta, bg = p
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    out = np.zeros_like(gx)
    for sy in (-1 / 3, 0, 1 / 3):
        for sx in (-1 / 3, 0, 1 / 3):
            r2 = (gx + sx - x0) ** 2 + (gy + sy - y0) ** 2
            out += (1 + r2 / alpha**2) ** (-beta)
    return flux * (beta - 1) / (np.pi * alpha**2) * out / 9 + bg


def test_psf_fwhm_matches_seeing(repo: DataRepository) -> None:
    """A Moffat fit (β free, pixel-integrated) to bright isolated stars recovers the header SEEING to 5 %."""
    checked = 0
    for exposure in _exposures(repo)[::3]:
        fits_fwhm = []
        hdr: dict = {}
        for detector in range(4):
            img, bad, hdr = _calibrated(repo, exposure, detector)
            truth = repo.get("truth_visit_sources", exposure=exposure, detector=detector)
            scale = float(hdr["PIXSCALE"])
            guess = float(hdr["SEEING"]) / scale
            h = int(4 * guess)
            ny, nx = img.shape
            sel = (truth["type"] == "star") & ~truth["is_saturated"] & (truth["counts"] > 3e4)
            for k in np.flatnonzero(sel):
                x, y = float(truth["x"][k]), float(truth["y"][k])
                ix, iy = round(x), round(y)
                if not (h < ix < nx - h and h < iy < ny - h) or not _isolated(truth, k, 3 * h, 50.0):
                    continue
                cut = img[iy - h : iy + h + 1, ix - h : ix + h + 1]
                if bad[iy - h : iy + h + 1, ix - h : ix + h + 1].any():
                    continue
                gy, gx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
                p0 = np.array([x - ix, y - iy, cut.sum(), guess, 3.0, np.median(cut)])
                res = least_squares(
                    lambda p, cut=cut, gx=gx, gy=gy: (
                        (_moffat_model(p, gx, gy) - cut).ravel() / np.sqrt(np.abs(cut.ravel()) + 50)
                    ),
                    p0,
                    bounds=([-3, -3, 0, 1, 1.5, -1e4], [3, 3, 1e9, 20, 10, 1e5]),
                )
                fits_fwhm.append(res.x[3] * scale)
        if len(fits_fwhm) >= 3:
            measured = float(np.median(fits_fwhm))
            print(f"FWHM {exposure}: measured {measured:.3f} header {hdr['SEEING']} n={len(fits_fwhm)}")
            assert abs(measured / float(hdr["SEEING"]) - 1) < 0.05, (exposure, measured, hdr["SEEING"])
            checked += 1
    assert checked >= 4
    assert MOFFAT_BETA == 3.5  # the fit above does not assume it


def test_nominal_wcs_error_within_stated_pointing_error(repo: DataRepository) -> None:
    """Nominal (raw) vs true WCS differ by less than PTGERR everywhere, and by more than nothing."""
    worst = []
    for exposure in _exposures(repo):
        for detector in range(4):
            raw_wcs = repo.get("raw.wcs", exposure=exposure, detector=detector)
            hdr = repo.get("raw.metadata", exposure=exposure, detector=detector)
            info = repo.get("truth_visit_info", exposure=exposure, detector=detector)
            true_wcs = WCS(info["true_wcs"])
            gx, gy = np.meshgrid(np.linspace(0, 1023, 9), np.linspace(0, 1023, 9))
            a1, d1 = raw_wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
            a2, d2 = true_wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
            sep = np.hypot((a1 - a2) * np.cos(np.radians(d1)), d1 - d2) * 3600
            assert sep.max() <= float(hdr["PTGERR"]), (exposure, detector, sep.max())
            worst.append(sep.max())
    assert np.median(worst) > 0.2  # the pipeline does have something to solve
    print(f"nominal-vs-true WCS: median max offset {np.median(worst):.2f}″, worst {np.max(worst):.2f}″")


def test_truth_positions_follow_the_true_wcs_plus_jitter(repo: DataRepository) -> None:
    """Rendered positions = true WCS(ra, dec) + atmospheric jitter of a few mas rms."""
    exposure = _exposures(repo)[5]
    offsets = []
    for detector in range(4):
        info = repo.get("truth_visit_info", exposure=exposure, detector=detector)
        truth = repo.get("truth_visit_sources", exposure=exposure, detector=detector)
        x, y = WCS(info["true_wcs"]).all_world2pix(truth["ra"], truth["dec"], 0, tolerance=1e-8)
        offsets.append(np.hypot(x - truth["x"], y - truth["y"]) * 0.2 * 1000 / np.sqrt(2))  # mas per axis
    rms = float(np.sqrt(np.mean(np.concatenate(offsets) ** 2)))
    assert 1.0 < rms < 15.0, rms
    print(f"jitter rms per axis {rms:.1f} mas")


def _observer_gcrs_astropy(mjd: np.ndarray) -> np.ndarray:
    """Observer barycentric position from astropy alone (independent of the simulator's ERFA path)."""
    from astropy import units as u
    from astropy.coordinates import EarthLocation, get_body_barycentric
    from astropy.time import Time
    from astropy.utils import iers

    t = Time(mjd, format="mjd", scale="tai")
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # future dates: IERS tables end, polar motion defaults to its mean
        site = EarthLocation.from_geodetic(-70.7367, -30.2446, 2663.0)
        gcrs, _ = site.get_gcrs_posvel(t)
        earth = get_body_barycentric("earth", t, ephemeris="builtin")
    return (earth.xyz.to_value(u.AU) + gcrs.xyz.to_value(u.AU)).T


def test_asteroids_move_on_their_orbits(repo: DataRepository) -> None:
    """Independent two-body check: integrate each orbit numerically from its elements and observe it."""
    from astropy import units as u
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time
    from scipy.integrate import solve_ivp

    orbits = repo.get("truth_asteroid_orbits")
    k2 = 0.01720209895**2
    eps = np.radians(23.4392911)
    rot = np.array([[1, 0, 0], [0, np.cos(eps), -np.sin(eps)], [0, np.sin(eps), np.cos(eps)]])
    checked = 0
    pair_rates = 0
    for exposure in _exposures(repo):
        eph = repo.get("truth_ephemerides", exposure=exposure)
        on = eph[eph["detector"] >= 0]
        if not len(on):
            continue
        mjd = float(on["mjd"][0])
        obs = _observer_gcrs_astropy(np.array([mjd]))[0]
        sun = get_body_barycentric("sun", Time(mjd, format="mjd", scale="tai"), ephemeris="builtin")
        sun = sun.xyz.to_value(u.AU)
        for row in on:
            o = orbits[orbits["id"] == row["id"]][0]
            # state at epoch from elements via the true anomaly (a different route from the simulator's)
            e, a = o["e"], o["a"]
            m0 = np.radians(o["mean_anomaly"])
            ecc = m0
            for _ in range(50):
                ecc = m0 + e * np.sin(ecc)
            nu = 2 * np.arctan2(np.sqrt(1 + e) * np.sin(ecc / 2), np.sqrt(1 - e) * np.cos(ecc / 2))
            p = a * (1 - e * e)
            r = p / (1 + e * np.cos(nu))
            w, node, inc = np.radians([o["argperi"], o["node"], o["incl"]])
            u_ = w + nu
            pos = r * np.array([
                np.cos(node) * np.cos(u_) - np.sin(node) * np.sin(u_) * np.cos(inc),
                np.sin(node) * np.cos(u_) + np.cos(node) * np.sin(u_) * np.cos(inc),
                np.sin(u_) * np.sin(inc),
            ])  # fmt: skip
            h = np.sqrt(k2 * p)
            vel = -k2 / h * np.array([
                np.cos(node) * (np.sin(u_) + e * np.sin(w)) + np.sin(node) * (np.cos(u_) + e * np.cos(w)) * np.cos(inc),
                np.sin(node) * (np.sin(u_) + e * np.sin(w)) - np.cos(node) * (np.cos(u_) + e * np.cos(w)) * np.cos(inc),
                -(np.cos(u_) + e * np.cos(w)) * np.sin(inc),
            ])  # fmt: skip
            t_obs = mjd + 32.184 / 86400
            delta = float(row["delta"])
            t_emit = t_obs - delta / 173.1446326846693

            def rhs(_t: float, y: np.ndarray) -> np.ndarray:
                return np.concatenate([y[3:], -k2 * y[:3] / np.linalg.norm(y[:3]) ** 3])

            sol = solve_ivp(rhs, (o["epoch"], t_emit), np.concatenate([pos, vel]), rtol=1e-12, atol=1e-14)
            vec = rot @ sol.y[:3, -1] + sun - obs
            ra = np.degrees(np.arctan2(vec[1], vec[0])) % 360
            dec = np.degrees(np.arcsin(vec[2] / np.linalg.norm(vec)))
            sep = np.hypot((ra - row["ra"]) * np.cos(np.radians(dec)), dec - row["dec"]) * 3.6e6
            assert sep < 20.0, (row["id"], exposure, sep)  # mas
            checked += 1
    assert checked >= 10
    # rates: the displacement between the two visits of a night matches the tabulated rates
    by_night: dict[int, list[int]] = {}
    for exposure in _exposures(repo):
        by_night.setdefault(exposure // 1000, []).append(exposure)
    for exps in by_night.values():
        if len(exps) != 2:
            continue
        e1, e2 = (repo.get("truth_ephemerides", exposure=x) for x in exps)
        dt = float(e2["mjd"][0] - e1["mjd"][0])
        for i in np.flatnonzero((e1["detector"] >= 0) & (e2["detector"] >= 0)):
            dra = (e2["ra"][i] - e1["ra"][i]) * np.cos(np.radians(e1["dec"][i])) / dt
            ddec = (e2["dec"][i] - e1["dec"][i]) / dt
            rate = np.hypot(e1["ra_rate"][i], e1["dec_rate"][i])
            assert np.hypot(dra - e1["ra_rate"][i], ddec - e1["dec_rate"][i]) < 0.03 * rate + 1e-4
            pair_rates += 1
    assert pair_rates >= 3


def test_asteroid_light_is_where_the_truth_says(repo: DataRepository) -> None:
    """The flux-weighted centroid near each bright asteroid's truth position is within 0.5 px of it."""
    found = 0
    for exposure in _exposures(repo):
        eph = repo.get("truth_ephemerides", exposure=exposure)
        for row in eph[(eph["detector"] >= 0) & (eph["mag"] < 21.5)]:
            det = int(row["detector"])
            truth = repo.get("truth_visit_sources", exposure=exposure, detector=det)
            t = truth[truth["id"] == row["id"]][0]
            if not _isolated(truth, int(np.flatnonzero(truth["id"] == row["id"])[0]), 12, 200):
                continue
            img, _, _ = _calibrated(repo, exposure, det)
            ix, iy = round(t["x"]), round(t["y"])
            if not (8 <= ix < img.shape[1] - 8 and 8 <= iy < img.shape[0] - 8):
                continue
            cut = img[iy - 6 : iy + 7, ix - 6 : ix + 7]
            cut = cut - np.median(img[iy - 20 : iy + 21, ix - 20 : ix + 21])
            gy, gx = np.mgrid[-6:7, -6:7]
            cx = (cut * gx).sum() / cut.sum() + ix
            cy = (cut * gy).sum() / cut.sum() + iy
            assert np.hypot(cx - t["x"], cy - t["y"]) < 0.5, (row["id"], exposure)
            found += 1
    assert found >= 3


def test_products_are_complete(repo: DataRepository) -> None:
    """Every detector-visit has a raw and truth; refcat, flats and the truth tables exist with their columns."""
    b = repo.butler
    n_exp = len(_exposures(repo))
    assert n_exp == 20
    assert len(b.query_datasets("raw", collections="Pachon/raw/all")) == n_exp * 4
    assert len(b.query_datasets("truth_visit_sources", collections="Pachon/truth")) == n_exp * 4
    assert len(b.query_datasets("truth_ephemerides", collections="Pachon/truth")) == n_exp
    refs = b.query_datasets("refcat", collections="refcats")
    refcat = [b.get(r) for r in refs]
    assert sum(len(t) for t in refcat) > 50
    assert {"coord_ra", "coord_dec", "pm_ra", "pm_dec", "parallax", "epoch", "r_flux"} <= set(
        refcat[0].colnames
    )
    stars = repo.get("truth_stars")
    assert {"ra", "dec", "pm_ra", "pm_dec", "parallax", "flux_r", "is_variable"} <= set(stars.colnames)
    raw = repo.get("raw", exposure=_exposures(repo)[0], detector=0)
    assert raw.data.shape == (1024, 1056) and raw.unit == "adu"
    assert np.all(raw.data == np.floor(raw.data)) and raw.data.max() <= 65535
    for key in ("MJD-OBS", "EXPTIME", "BAND", "FILTER", "AIRMASS", "SEEING", "GAIN", "RDNOISE", "SATURATE",
                "BIASLEV", "DATASEC", "BIASSEC", "PTGERR"):  # fmt: skip
        assert key in raw.meta, key
    assert "DATE" not in raw.meta  # nothing about when the simulation ran
    # the overscan sits at the bias level, the imaging area above it
    assert abs(np.median(raw.data[:, 1030:]) - raw.meta["BIASLEV"]) < 10
    variables = repo.get("truth_variables")
    assert {"period", "amplitude", "var_type"} <= set(variables.colnames)
    transients = repo.get("truth_transients")
    assert {"SN", "flare"} <= set(transients["type"])
