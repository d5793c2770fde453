"""The sky-based flat-field correction of :func:`pachon.pipelines.prompt.measure.estimate_illumination`.

A 1k² image whose flat carries the simulator's kind of error (0.5 % rms, plane waves of 0.5–2.5
cycles per detector, multiplying sky and stars alike) on a sky with a 1 % additive gradient,
Moffat stars and Gaussian noise: the map must recover the error, and dividing by it must flatten
the sky and correct the stars' fluxes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pachon.core.image import Exposure
from pachon.pipelines.prompt.characterize import characterize
from pachon.pipelines.prompt.config import CharacterizeConfig
from pachon.pipelines.prompt.measure import estimate_background, estimate_illumination
from pachon.pipelines.prompt.testing import moffat_stamp

N = 1024
SKY = 1500.0


def _flat_error(rng: np.random.Generator) -> np.ndarray:
    """The simulator's ``pipeline_flat`` error: four plane waves, 0.5 % rms, zero mean."""
    y, x = np.mgrid[0:N, 0:N].astype(float)
    err = np.zeros((N, N))
    for _ in range(4):
        kx, ky = rng.uniform(0.5, 2.5, 2) * 2 * math.pi / N
        err += np.cos(kx * x + ky * y + rng.uniform(0, 2 * math.pi))
    err *= 0.005 / err.std()
    return err - err.mean()


@pytest.fixture(scope="module")
def scene() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    err = _flat_error(rng)
    y, x = np.mgrid[0:N, 0:N].astype(float)
    sky = SKY * (1 + 0.01 * ((x - N / 2) / N + (y - N / 2) / N))
    stars = np.zeros((N, N))
    n = 250
    sx, sy = rng.uniform(30, N - 30, n), rng.uniform(30, N - 30, n)
    flux = 10 ** rng.uniform(3.5, 5.5, n)
    for xi, yi, f in zip(sx, sy, flux, strict=True):
        ix, iy = round(xi), round(yi)
        stars[iy - 15 : iy + 16, ix - 15 : ix + 16] += f * moffat_stamp(4.0, 31, xi - ix, yi - iy, beta=3.5)
    truth = sky + stars
    variance = truth + 36.0
    # the flat-fielded image: everything the photons made, times (1 − flat error)
    image = (truth + rng.normal(size=(N, N)) * np.sqrt(variance)) * (1 - err)
    return {
        "image": image.astype(np.float32),
        "variance": (variance * (1 - err) ** 2).astype(np.float32),
        "err": err,
        "sky": sky,
        "x": sx,
        "y": sy,
        "flux": flux,
    }


def test_the_map_recovers_the_flat_error(scene: dict[str, np.ndarray]) -> None:
    bad = np.zeros((N, N), bool)
    illum = estimate_illumination(scene["image"], bad, scene["variance"], box=64)
    assert illum is not None
    expected = 1 - scene["err"]
    # the map is defined up to the sky's own plane: compare after removing a plane from both
    y, x = np.mgrid[0:N:8, 0:N:8].astype(float)
    design = np.column_stack([np.ones(x.size), x.ravel(), y.ravel()])

    def deplane(a: np.ndarray) -> np.ndarray:
        s = a[::8, ::8].ravel()
        c, *_ = np.linalg.lstsq(design, s, rcond=None)
        return s - design @ c

    resid = deplane(np.asarray(illum, float)) - deplane(expected)
    print(f"flat error rms {deplane(expected).std():.4f}, map residual rms {resid.std():.5f}")
    assert resid.std() < 0.3 * deplane(expected).std()  # measured: 0.0009 against 0.0049


def test_dividing_by_it_flattens_the_sky(scene: dict[str, np.ndarray]) -> None:
    bad = np.zeros((N, N), bool)
    image, variance = scene["image"], scene["variance"]
    illum = estimate_illumination(image, bad, variance, box=64)
    assert illum is not None
    sigma = math.sqrt(SKY + 36.0)
    for img, limit in ((image, None), (image / illum, 0.05)):
        bg = estimate_background(img, bad, box=128)
        # the background a 128-px mesh leaves against the sky it should have found (block means of 32 px)
        resid = (bg - scene["sky"] * np.median(img) / np.median(scene["sky"]))[::32, ::32]
        rms = float((resid - resid.mean()).std()) / sigma
        print(f"background error rms {rms:.3f} σ ({'corrected' if limit else 'flat error left'})")
        if limit is None:
            assert rms > 0.1  # the 0.5 % flat error on a 1500 e⁻ sky: 0.19 σ
        else:
            assert rms < limit


def _aperture_mag_errors(
    scene: dict[str, np.ndarray], config: CharacterizeConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Aperture magnitudes of isolated S/N > 100 stars after :func:`characterize` − truth (median removed),
    the flat error at each star, the photon-noise errors, and the characterized exposure's header."""
    exposure = Exposure(scene["image"], unit="electron", mask=np.zeros((N, N), np.int32))
    exposure.variance = scene["variance"]
    char = characterize(exposure, config=config, seeing_px=4.0)
    src = char.sources
    truth = np.column_stack([scene["x"], scene["y"]])
    d, j = cKDTree(truth).query(np.column_stack([src["x"], src["y"]]))
    d2, _ = cKDTree(truth).query(truth, k=2)
    snr = np.asarray(src["apFlux"]) / np.asarray(src["apFluxErr"])
    ok = (d < 0.5) & (snr > 100) & (d2[:, 1] > 25)[j]
    dm = -2.5 * np.log10(np.asarray(src["apFlux"])[ok] / scene["flux"][j[ok]])
    err_at = scene["err"][np.round(src["y"][ok]).astype(int), np.round(src["x"][ok]).astype(int)]
    return dm - np.median(dm), err_at, 1.0857 / snr[ok], char.exposure.meta


def test_star_fluxes_are_corrected_through_characterize(scene: dict[str, np.ndarray]) -> None:
    dm, err_at, photon, meta = _aperture_mag_errors(scene)
    assert meta["ILLUMBOX"] == 64
    assert 0.003 < meta["ILLUMRMS"] < 0.007
    dm0, err0, _, meta0 = _aperture_mag_errors(scene, CharacterizeConfig(illumination_box=0))
    assert meta0["ILLUMBOX"] == 0
    print(
        f"{len(dm)} stars: aperture mag rms {dm.std() * 1000:.1f} mmag "
        f"(photon {np.sqrt(np.mean(photon**2)) * 1000:.1f}), "
        f"correlation with the flat error {np.corrcoef(dm, err_at)[0, 1]:.2f}; without the correction "
        f"{dm0.std() * 1000:.1f} mmag, correlation {np.corrcoef(dm0, err0)[0, 1]:.2f}"
    )
    assert len(dm) > 30
    # uncorrected, the flat error (and the background error it causes) dominates: measured 20.9 mmag, r = 0.87
    assert np.corrcoef(dm0, err0)[0, 1] > 0.6
    # corrected: photon noise (7.4 mmag) and no trace of the flat error (measured 6.0 mmag, r = 0.09)
    assert dm.std() < 0.5 * dm0.std()
    assert abs(np.corrcoef(dm, err_at)[0, 1]) < 0.3


def test_no_map_when_the_sky_is_too_faint_to_measure_it() -> None:
    rng = np.random.default_rng(1)
    image = (5.0 + rng.normal(size=(512, 512)) * 6.0).astype(np.float32)
    variance = np.full(image.shape, 36.0, np.float32)
    assert estimate_illumination(image, np.zeros(image.shape, bool), variance, box=64) is None
