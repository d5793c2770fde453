"""Detector effects in isolation: charge bleeding, noise levels, defects, flats."""

from __future__ import annotations

import numpy as np

from pachon.pipelines.sim import CameraConfig, SimConfig, build_survey
from pachon.pipelines.sim.render import (
    FULL_WELL,
    _bleed,
    detector_electronics,
    pipeline_flat,
    render_detector_visit,
    true_flat,
)
from pachon.pipelines.sim.skymodel import sources_at


def _micro() -> SimConfig:
    return SimConfig(
        name="micro",
        camera=CameraConfig(nx=256, ny=256, n_col=2, n_row=1, pitch_x_px=270.0, pitch_y_px=270.0),
        n_visits=2,
        n_asteroids=2,
        n_neos=0,
    )


def test_bleeding_conserves_charge_and_caps_at_full_well() -> None:
    img = np.zeros((200, 5))
    img[100, 2] = 40 * FULL_WELL
    img[99, 2] = 2 * FULL_WELL
    total = img.sum()
    _bleed(img)
    assert np.isclose(img.sum(), total)
    assert img.max() <= FULL_WELL
    trail = np.flatnonzero(img[:, 2] > 0)
    assert 35 <= len(trail) <= 45 and np.all(img[:, [0, 1, 3, 4]] == 0)


def test_raw_noise_bias_and_defects() -> None:
    cfg = _micro()
    survey = build_survey(cfg, 3)
    visit = survey.visits[0]
    sources = sources_at(survey.sky, visit, survey.observer[0], survey.ephemerides[visit.exposure])
    result = render_detector_visit(cfg, 3, visit, 0, sources)
    raw, hdr = result.raw, result.raw.meta
    el = detector_electronics(3, 0, 256, 256)
    overscan = np.asarray(raw.data[:, 256 + 2 :], dtype=float)
    row_level = overscan.mean(axis=1, keepdims=True)
    # overscan: bias level (with a row drift) and read noise / gain
    assert abs(np.median(overscan) - hdr["BIASLEV"]) < 5
    assert abs(np.std(overscan - row_level) / (el.read_noise / el.gain) - 1) < 0.1
    # the hot column is flagged BAD and is bright; the imaging area sits above the bias
    assert (raw.mask[:, el.hot_column] & 1).any()
    img = np.asarray(raw.data[:, :256], dtype=float) - row_level
    assert np.median(img[el.hot_start :, el.hot_column]) > np.median(img) + 300
    sky = result.info["sky_electrons"] / el.gain
    assert abs(np.median(img) / sky - 1) < 0.1
    # the truth table covers the detector and its counts follow from flux
    truth = result.truth
    assert np.allclose(truth["counts"], truth["flux"] * result.info["electrons_per_njy"])
    assert truth["x"].min() >= -0.5 and truth["x"].max() < 255.5


def test_pipeline_flat_is_imperfect_by_the_stated_amount() -> None:
    cfg = _micro()
    cfg_json = cfg.model_dump_json()
    truth = true_flat(cfg_json, 3, 0, "r").astype(float)
    given = pipeline_flat(cfg_json, 3, 0, "r").astype(float)
    ratio = given / truth
    assert abs(np.std(ratio) - np.hypot(cfg.flat_error, 0.001)) < 0.001
    assert abs(ratio.mean() - 1) < 1e-3
    assert 0.003 < np.std(truth / truth.mean()) < 0.05  # pixel response + vignetting
