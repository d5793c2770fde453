"""The pieces behind PA1 and the depth metric, each against a known answer.

Aperture correction (a PSF-flux gradient across a detector is removed and survives the header),
ubercal's star flat (a flat-field error pattern is recovered from dithered repeat visits, variable
stars do not drag the zero points), the truth-based coadd depth, and AM1's S/N-scaled selection.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from pachon.pipelines.drp.config import DrpConfig
from pachon.pipelines.drp.multivisit import ubercal
from pachon.pipelines.metrics import am1
from pachon.pipelines.metrics.compute import expected_coadd_depth, moffat_neff
from pachon.pipelines.prompt.apcorr import apcorr_from_header, fit_aperture_correction


def test_aperture_correction_removes_a_gradient_and_round_trips_the_header() -> None:
    rng = np.random.default_rng(4)
    n, shape = 200, (1024, 1024)
    x, y = rng.uniform(0, 1023, n), rng.uniform(0, 1023, n)
    true_total = 10 ** rng.uniform(4, 5, n)
    # the PSF model under-fits stars by 0–8 % from left to right (a PSF-width error growing with x)
    psf_flux = true_total * (1 - 0.08 * x / 1023) * (1 + rng.normal(0, 0.003, n))
    ap_flux = true_total * (1 + rng.normal(0, 0.003, n))
    ap_err = ap_flux / 300
    usable = np.ones(n, bool)
    usable[:10] = False
    ap_flux[10:15] *= 1.5  # blended by an undetected neighbour: clipped
    corr = fit_aperture_correction(x, y, psf_flux, ap_flux, ap_err, usable, shape, radius=1.0)
    assert corr.degree == 1 and corr.n_stars >= 180  # a linear gradient: BIC picks degree 1
    fixed = psf_flux * corr(x, y)
    ratio = fixed / true_total
    assert np.std(ratio[15:]) < 0.006  # gradient gone (was 2.3 % rms)
    assert abs(np.median(ratio) / np.median(psf_flux / true_total) - 1) < 0.01  # median kept: ZP unchanged
    header = fits.Header()
    corr.to_header(header)
    back = apcorr_from_header(header)
    assert back is not None and np.allclose(back(x, y), corr(x, y))
    none = np.zeros(20, bool)  # too few stars: identity, and no NaN may reach a FITS header
    few = fit_aperture_correction(
        x[:20], y[:20], psf_flux[:20], ap_flux[:20], ap_err[:20], none, shape, radius=1.0
    )
    header = fits.Header()
    few.to_header(header)
    buffer = io.BytesIO()
    fits.PrimaryHDU(header=header).writeto(buffer)
    assert apcorr_from_header(header) is None and buffer.tell() > 0
    assert np.all(few(x, y) == 1.0)


def test_aperture_correction_fits_only_what_the_stars_show() -> None:
    """Noise alone gives a constant; a curved pattern gives degree 2; bright stars outweigh faint ones."""
    rng = np.random.default_rng(11)
    n, shape = 60, (2048, 2048)
    x, y = rng.uniform(0, 2047, n), rng.uniform(0, 2047, n)
    snr = 10 ** rng.uniform(1.5, 2.7, n)  # aperture S/N 30–500, as on a small detector-visit
    total = 1e4 * snr
    ap_err = total / snr
    ap_flux = total + rng.normal(0, 1, n) * ap_err
    flat = fit_aperture_correction(x, y, total.copy(), ap_flux, ap_err, np.ones(n, bool), shape, radius=1.0)
    assert flat.degree == 0  # a fitted slope here would be noise, different in every visit
    u, v = 2 * x / 2047 - 1, 2 * y / 2047 - 1
    curved = 1 - 0.03 * (u * u + v * v)  # the PSF widening off-axis: 3 % at the corners
    psf_flux = total * curved
    corr = fit_aperture_correction(x, y, psf_flux, ap_flux, ap_err, np.ones(n, bool), shape, radius=1.0)
    assert corr.degree == 2
    bright = snr > 100
    fixed = psf_flux * corr(x, y) / total
    assert np.std(fixed[bright] / np.median(fixed)) < 0.006  # 2.1 % rms before


def _dithered(
    n_star: int = 400, n_visit: int = 12, seed: int = 5
) -> tuple[Table, np.ndarray, np.ndarray, Table]:
    """Repeat visits of stars dithered over one 1000-px detector with a flat error and ZP offsets."""
    rng = np.random.default_rng(seed)
    sx, sy = rng.uniform(150, 850, n_star), rng.uniform(150, 850, n_star)
    mag = rng.uniform(17, 20.5, n_star)
    variable = np.zeros(n_star, bool)
    variable[:12] = True  # 3 % variables with 0.3 mag amplitude
    zp = rng.normal(0, 0.02, n_visit)

    def flat_error(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # 1 % peak, smooth (mag)
        return 0.01 * np.sin(2 * np.pi * x / 1400) * np.cos(2 * np.pi * (y - 300) / 1600)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "flux", "visit", "id")}
    for v in range(n_visit):
        dx, dy = rng.uniform(-150, 150, 2)
        x, y = sx + dx, sy + dy
        m = mag + zp[v] + flat_error(x, y) + np.where(variable, 0.3 * np.sin(v + np.arange(n_star)), 0.0)
        cols["x"].append(x)
        cols["y"].append(y)
        cols["flux"].append(10 ** (-0.4 * (m - 31.4)) * (1 + rng.normal(0, 0.002, n_star)))
        cols["visit"].append(np.full(n_star, v))
        cols["id"].append(np.arange(n_star))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(c["x"])
    table = Table(
        {
            "x": c["x"],
            "y": c["y"],
            "psfFlux": c["flux"],
            "psfFluxErr": c["flux"] * 0.002,
            "visit": c["visit"].astype(np.int64),
            "detector": np.zeros(n, np.int64),
            "ccdVisitId": c["visit"].astype(np.int64) * 1000,
            "band": np.full(n, "r"),
            "coord_ra": 180 + sx[c["id"]] * 0.2 / 3600,  # 0.2″ pixels; positions need no jitter here
            "coord_dec": sy[c["id"]] * 0.2 / 3600,
        }
    )
    true_flux = 10 ** (-0.4 * (mag - 31.4))
    refcat = Table(
        {
            "coord_ra": 180 + sx * 0.2 / 3600,
            "coord_dec": sy * 0.2 / 3600,
            "r_flux": true_flux * (1 + rng.normal(0, 0.005, n_star)),
            "r_fluxErr": true_flux * 0.005,
        }
    )
    return table, c["id"].astype(np.int64), flat_error(c["x"], c["y"]) + zp[c["visit"]], refcat


def test_ubercal_star_flat_recovers_a_flat_error_and_ignores_variables() -> None:
    sources, group, offset, refcat = _dithered()
    ccd, x, y = np.asarray(sources["ccdVisitId"]), np.asarray(sources["x"]), np.asarray(sources["y"])
    anchored = ubercal(sources, group, DrpConfig(), refcat=refcat)
    # with the reference catalog: δ + star flat equals the injected ZP + flat error (0.43 % rms)
    resid = anchored.correction_mag(ccd, x, y) - offset
    assert np.std(resid) < 0.0012, np.std(resid)
    assert anchored.n_rejected_objects >= 10  # the variables
    # without it, a star flat's linear terms are degenerate with the zero points and star means
    # (translational dithers): only the curvature is recovered, so the residual is larger
    free = ubercal(sources, group, DrpConfig())
    resid_free = free.correction_mag(ccd, x, y) - offset
    assert np.std(resid_free - resid_free.mean()) > 1.3 * np.std(resid)
    # zero points alone (no positions) leave the whole flat pattern
    assert np.std(anchored.correction_mag(ccd) - offset) > 3 * np.std(resid)
    mags = -2.5 * np.log10(np.asarray(sources["psfFlux"]) * anchored.factor(ccd, x, y))
    rms = [np.std(mags[group == g]) for g in range(12, 400)]
    assert np.median(rms) < 0.0025  # repeatability at the 0.2 % photon noise


def test_moffat_effective_area_matches_a_rendered_psf() -> None:
    from pachon.pipelines.sim.optics import PsfModel

    psf = PsfModel(seeing=0.8, e1=0.0, e2=0.0, pixel_scale=0.2)
    g = np.arange(-60, 61, dtype=float)
    dx, dy = np.meshgrid(g, g)
    img = psf.render(dx, dy, 0.8, 0.0, 0.0)
    numeric = 1.0 / np.sum((img / img.sum()) ** 2)
    assert abs(moffat_neff(4.0) / numeric - 1) < 0.05  # pixel integration widens the core a little


def test_expected_coadd_depth() -> None:
    one = {"var": 1000.0, "fwhm": 4.0}
    single = expected_coadd_depth([one], psf_matched=False)
    assert abs(single - (31.4 - 2.5 * np.log10(5 * np.sqrt(1000.0 * moffat_neff(4.0))))) < 1e-9
    # N equal visits: 1.25 log10 N deeper (PSF matching to 1.02 × the FWHM costs ~0.02 mag)
    ten = expected_coadd_depth([one] * 10)
    assert abs(ten - single - 1.25 - (expected_coadd_depth([one]) - single)) < 1e-6
    assert -0.05 < expected_coadd_depth([one]) - single < 0
    # a bad-seeing input drags every other input to its PSF: shallower than without it
    mixed = [one] * 9 + [{"var": 1000.0, "fwhm": 7.0}]
    assert expected_coadd_depth(mixed) < expected_coadd_depth([one] * 9)


def test_am1_snr_window_drops_noisy_stars() -> None:
    rng = np.random.default_rng(2)
    n_star, n_visit = 80, 8
    ra0 = 180 + rng.uniform(-0.06, 0.06, n_star)
    dec0 = rng.uniform(-0.02, 0.02, n_star)
    faint = np.arange(n_star) % 2 == 1  # half the stars are faint: 40 mas centroids, S/N 30
    rows = []
    for v in range(n_visit):
        sig = np.where(faint, 40.0, 3.0)
        flux = np.where(faint, 1e4, 1e5)
        rows.append(
            Table(
                {
                    "objectId": np.arange(n_star, dtype=np.int64),
                    "visit": np.full(n_star, v),
                    "coord_ra": ra0 + rng.normal(0, sig) / 3.6e6 / np.cos(np.radians(dec0)),
                    "coord_dec": dec0 + rng.normal(0, sig) / 3.6e6,
                    "psfFlux": flux,
                    "psfFluxErr": np.where(faint, flux / 30, flux / 300),
                    "band": np.full(n_star, "r"),
                }
            )
        )
    from astropy.table import vstack

    cat = vstack(rows)
    point = {i: False for i in range(n_star)}
    everything, n_all = am1(cat, point, mag_range=(0, 99))
    bright, n_bright = am1(cat, point, mag_range=(0, 99), min_snr=95)
    assert n_bright < n_all
    assert bright < 7 < 20 < everything  # √2·3 mas for bright pairs; mixed pairs dominate without the cut


def test_patch_depths_are_compared_position_by_position() -> None:
    """The expectation is taken where the patch has its full coverage, from the inputs that reach it.

    A patch covered whole by four visits expects the four-visit stack; an edge patch reached by one
    visit expects one visit (not a shortfall against the full stack); an input reaching only a
    thin sliver of a patch does not deepen its expectation, one covering a wide corner does.
    """
    from pachon.pipelines.drp.coadd import PatchDepth
    from pachon.pipelines.metrics.compute import _patch_depth_offsets, _truth_depths, expected_patch_depth

    noise = {(v, 0): {"band": "r", "var": 40.0 + 5 * v, "fwhm": 4.0 + 0.2 * v} for v in range(4)}
    visits = [{"var": n["var"], "fwhm": n["fwhm"]} for n in noise.values()]
    full = expected_coadd_depth(visits)
    one = expected_coadd_depth([visits[2]])
    three = expected_coadd_depth(visits[:3])
    assert full - one > 0.5  # four visits are deeper than one
    assert _truth_depths(noise) == {"r": full}
    whole = [(-10.0, -10.0), (-10.0, 110.0), (110.0, 110.0), (110.0, -10.0)]

    def box(x1: float, y1: float) -> list[tuple[float, float]]:
        return [(-10.0, -10.0), (-10.0, y1), (x1, y1), (x1, -10.0)]

    shape = (100, 100)
    assert expected_patch_depth(visits, [whole] * 4, shape) == pytest.approx(full)
    # the fourth visit (the broadest PSF, so the matching target is the same) reaches a 40 % corner:
    # the deepest decile is there
    assert expected_patch_depth(visits, [whole] * 3 + [box(40, 40)], shape) == pytest.approx(full)
    # … or a 3 % sliver: the full coverage is the three-visit stack's
    sliver = expected_patch_depth(visits, [whole] * 3 + [box(3, 100)], shape)
    assert abs(sliver - three) < 0.06 < full - three
    patches = [
        PatchDepth("r", full - 0.05, [(v, 0) for v in range(4)], [whole] * 4, shape),
        PatchDepth("r", one - 0.05, [(2, 0)], [whole], shape),
        PatchDepth("r", one - 0.05, [(2, 0), (9, 9)], [whole, whole], shape),  # (9, 9): no truth, left out
    ]
    offsets = _patch_depth_offsets(noise, patches)
    assert offsets["r"][1] == 3 and abs(offsets["r"][0] + 0.05) < 1e-9
