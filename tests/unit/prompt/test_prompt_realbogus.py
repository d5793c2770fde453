"""The real/bogus model (boosted trees, operating point), its training labels and the fake scorer."""

from __future__ import annotations

import json

import numpy as np
from astropy.table import Table

from pachon.core.image import Exposure
from pachon.pipelines.prompt.dia import RB_FEATURES
from pachon.pipelines.prompt.psf import gaussian_psf
from pachon.pipelines.prompt.realbogus import (
    RealBogusModel,
    choose_offset,
    fit_real_bogus,
    train_boosted_trees,
    train_real_bogus,
)
from pachon.pipelines.prompt.scoring import fake_completeness, score_fakes
from pachon.pipelines.prompt.training import (
    FakeInjector,
    _add_source,
    ambiguous_near_fakes,
    label_dia_sources,
)


def _interaction_problem(n: int, seed: int) -> tuple[Table, np.ndarray]:
    """Real = a small change is real only on an extended host (the galaxy-core vs star-residual case)."""
    rng = np.random.default_rng(seed)
    t = Table({f: rng.normal(0, 1, n) for f in RB_FEATURES})
    small_change = t["rb_flux_ratio"] < 0
    extended = t["rb_host_extendedness"] > 0
    return t, np.asarray(~small_change | extended)


def test_boosted_trees_learn_an_interaction_a_linear_model_cannot() -> None:
    train, y = _interaction_problem(3000, 0)
    test, y_test = _interaction_problem(2000, 1)
    trees = train_boosted_trees(train, y, n_trees=80)
    linear = train_real_bogus(train, y)
    acc_trees = float(((trees.predict(test) >= 0.5) == y_test).mean())
    acc_linear = float(((linear.predict(test) >= 0.5) == y_test).mean())
    assert acc_trees > 0.97
    assert acc_linear < 0.9  # an XOR-like quadrant is beyond a single hyperplane


def test_boosted_trees_round_trip_through_json_without_pickle() -> None:
    train, y = _interaction_problem(1000, 2)
    model = train_boosted_trees(train, y, n_trees=20, depth=2)
    model.offset = 0.7
    text = model.to_json()
    again = RealBogusModel.from_dict(json.loads(text))
    assert again.kind == "gbdt" and len(again.trees) == 20
    assert np.allclose(again.predict(train), model.predict(train))
    assert model.version.startswith("gbdt")


def test_training_is_reproducible_and_needs_both_classes() -> None:
    train, y = _interaction_problem(500, 3)
    a = train_boosted_trees(train, y, n_trees=10, seed=4)
    b = train_boosted_trees(train, y, n_trees=10, seed=4)
    assert np.array_equal(a.predict(train), b.predict(train))
    try:
        train_boosted_trees(train, np.ones(len(train), bool))
    except ValueError as exc:
        assert "both real and bogus" in str(exc)
    else:  # pragma: no cover - the assertion above must fire
        raise AssertionError("one-class training did not raise")


def test_logistic_models_stored_before_trees_still_load() -> None:
    stored = {
        "weights": [1.0] + [0.0] * (len(RB_FEATURES) - 1),
        "bias": 0.0,
        "mean": [0.0] * len(RB_FEATURES),
        "scale": [1.0] * len(RB_FEATURES),
        "features": list(RB_FEATURES),
        "version": "logreg-1",
    }
    model = RealBogusModel.from_dict(stored)
    t = Table({f: np.zeros(2) for f in RB_FEATURES})
    t["rb_log_snr"] = [-3.0, 3.0]
    p = model.predict(t)
    assert model.kind == "logreg" and p[0] < 0.1 < 0.9 < p[1]


def test_operating_point_meets_the_false_positive_budget() -> None:
    rng = np.random.default_rng(5)
    bogus = rng.normal(-2, 1, 200)
    real = rng.normal(3, 1, 800)
    logits = np.concatenate([bogus, real])
    labels = np.concatenate([np.zeros(200, bool), np.ones(800, bool)])
    # 100 detector-visits, at most 0.05 false per detector-visit: 5 bogus may pass
    cut = choose_offset(logits, labels, 100, max_false_per_detector_visit=0.05)
    assert int((bogus > cut).sum()) == 5
    assert choose_offset(logits, labels, 100, max_false_per_detector_visit=10.0) == 0.0
    assert (bogus < choose_offset(logits, labels, 100, max_false_per_detector_visit=0.0)).all()


def _field(seed: int = 0) -> tuple[Exposure, object, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 10.0, (400, 400)).astype(np.float32)
    psf = gaussian_psf(1.7, size=25, shape=(400, 400))
    hosts = [(100, 120), (250, 300), (300, 90), (180, 260)]
    for k, (x, y) in enumerate(hosts):  # two stars, two galaxies (a wide Gaussian made of offset PSFs)
        if k < 2:
            _add_source(data, psf, float(x), float(y), 5e4, 0.0, 0.0)
        else:
            for dx, dy in [(0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)]:
                _add_source(data, psf, float(x + dx), float(y + dy), 1e4, 0.0, 0.0)
    exp = Exposure(data, unit="nJy")
    exp.variance = np.full(data.shape, 100.0, np.float32)
    return exp, psf, np.array(hosts, float)


def test_supernova_like_fakes_sit_on_galaxies_only() -> None:
    exp, psf, hosts = _field()
    fakes = FakeInjector(
        n=40,
        seed=2,
        fractions=(0.0, 1.0, 0.0),
        galaxy_hosts=True,
        variable_hosts=False,
        negative_fraction=0.0,
    )(exp, psf)
    assert set(np.asarray(fakes["kind"]).tolist()) == {"host"}
    d = np.hypot(fakes["x"][:, None] - hosts[:, 0], fakes["y"][:, None] - hosts[:, 1])
    nearest = np.argmin(d, axis=1)
    assert set(nearest.tolist()) <= {2, 3}  # the extended hosts
    assert (np.asarray(fakes["flux"]) > 0).all()
    assert "angle" in fakes.colnames


def test_fakes_never_share_a_host_nor_blend() -> None:
    """One fake per host and none within 3 FWHM of another: piled-up fakes blend into one DIA source.

    With hosts drawn with replacement, most galaxy-core fakes on ``tiny`` shared their galaxy with
    another fake and were scored ``offset`` (the blend's centroid lay between them).
    """
    exp, psf, hosts = _field(4)
    fakes = FakeInjector(n=60, seed=3, fractions=(0.3, 0.4, 0.3), n_shifted=4)(exp, psf)
    kind = np.asarray(fakes["kind"]).astype(str)
    on_hosts = fakes[kind == "host"]
    assert 1 <= len(on_hosts) <= len(hosts)
    d = np.hypot(on_hosts["x"][:, None] - hosts[:, 0], on_hosts["y"][:, None] - hosts[:, 1])
    assert len(set(np.argmin(d, axis=1).tolist())) == len(on_hosts)  # each on its own host
    real = fakes[kind != "shifted"]
    reach = np.asarray(real["trail"], float) / 2
    sep = np.hypot(real["x"][:, None] - real["x"][None, :], real["y"][:, None] - real["y"][None, :])
    sep -= reach[:, None] + reach[None, :]
    np.fill_diagonal(sep, np.inf)
    assert sep.min() >= 3 * psf.fwhm - 1e-6
    # the shifted stars carry no real fake
    moved = fakes[kind == "shifted"]
    if len(moved) and len(on_hosts):
        assert (
            np.hypot(moved["x"][:, None] - on_hosts["x"], moved["y"][:, None] - on_hosts["y"]).min()
            > psf.fwhm
        )


def test_unmatched_sources_near_fakes_are_ambiguous() -> None:
    fakes = Table({"x": [100.0], "y": [100.0], "flux": [500.0], "trail": [0.0]})
    dia = Table({"x": [100.5, 108.0, 200.0], "y": [100.0, 100.0, 200.0]})
    labels = np.array([True, False, False])
    assert ambiguous_near_fakes(dia, fakes, labels, fwhm=4.0).tolist() == [False, True, False]
    assert not ambiguous_near_fakes(dia, None, labels).any()


def test_fake_scorer_finds_kept_sources_and_names_the_losses() -> None:
    psf = gaussian_psf(1.7, size=25, shape=(300, 300))
    diff = Exposure(np.zeros((300, 300), np.float32), unit="nJy")
    diff.variance = np.full((300, 300), 100.0, np.float32)
    fakes = Table(
        {
            "kind": ["sky", "sky", "trail", "sky"],
            "x": [100.0, 150.0, 200.0, 5.0],
            "y": [100.0, 150.0, 200.0, 5.0],
            "flux": [2000.0, -800.0, 3000.0, 1000.0],
            "snr": [20.0, 8.0, 10.0, 10.0],
            "trail": [0.0, 0.0, 12.0, 0.0],
            "angle": [0.0, 0.0, 0.5, 0.0],
        }
    )
    dia = Table(
        {
            "x": [100.4, 150.0, 200.0 + 5.0 * np.cos(0.5)],
            "y": [100.0, 150.5, 200.0 + 5.0 * np.sin(0.5)],
            "reliability": [0.9, 0.1, 0.8],
        }
    )
    out = score_fakes(dia, fakes, diff, psf)
    assert out["outcome"].tolist() == ["found", "rejected_rb", "found", "edge"]
    # true SNR: |flux| / (σ_pix / √Σ P²) for a point source
    sigma = 10.0 / np.sqrt((psf.image() ** 2).sum())
    assert np.isclose(out["snr"][0], 2000.0 / sigma, rtol=0.02)
    assert out["snr"][2] < 3000.0 / sigma  # a trail spreads the flux: lower optimal SNR
    frac, n = fake_completeness(out, 5.0)
    assert n == 3 and np.isclose(frac, 2 / 3)


def test_shifted_sources_are_bogus_dipoles() -> None:
    exp, psf, hosts = _field(3)
    before = np.asarray(exp.data).copy()
    fakes = FakeInjector(n=4, seed=5, fractions=(1.0, 0.0, 0.0), n_shifted=3)(exp, psf)
    shifted = fakes[np.asarray(fakes["kind"]) == "shifted"]
    assert len(shifted) == 2  # only the two stars move: galaxies have no proper motion
    d = np.hypot(shifted["x"][:, None] - hosts[:, 0], shifted["y"][:, None] - hosts[:, 1])
    assert set(np.argmin(d, axis=1).tolist()) == {0, 1}
    assert (np.asarray(shifted["trail"]) >= 0.2).all() and (np.asarray(shifted["trail"]) <= 1.5).all()
    # flux moved, not added: the image sum changes only by the real (sky) fakes
    real = fakes[np.asarray(fakes["kind"]) != "shifted"]
    added = float((np.asarray(exp.data) - before).sum())
    assert abs(added - float(np.sum(real["flux"]))) < 1e-3 * float(np.abs(fakes["flux"]).sum())
    # a DiaSource on a shifted source is never labelled real, nor left out as ambiguous
    dia = Table({"x": [float(shifted["x"][0])], "y": [float(shifted["y"][0])], "isNegative": [False]})
    assert not label_dia_sources(dia, fakes=fakes, truth=None, variable_ids=set()).any()
    assert not ambiguous_near_fakes(dia, shifted, np.zeros(1, bool)).any()


def test_operating_point_is_chosen_on_held_out_detectors() -> None:
    rng = np.random.default_rng(6)
    tables, labels, groups, synthetic = [], [], [], []
    for det in range(4):
        t, y = _interaction_problem(600, 10 + det)
        syn = ~y & (rng.uniform(size=len(y)) < 0.5)
        tables.append(t)
        labels.append(y)
        synthetic.append(syn)
        groups.append(np.array([f"1#{det}#{k % 3}" for k in range(len(y))]))
    from astropy.table import vstack

    table = vstack(tables)
    model, figures = fit_real_bogus(
        table,
        np.concatenate(labels),
        groups=np.concatenate(groups),
        synthetic_bogus=np.concatenate(synthetic),
        max_false_per_4k=16.0,  # one per 1k² detector-visit: 12 runs, 12 natural bogus may pass
        n_trees=40,
    )
    assert model.offset == figures["offset"]
    assert figures["heldout_natural_bogus_per_4k"] <= 16.0
    assert figures["heldout_real_kept"] > 0.9
    assert figures["synthetic_bogus"] > 0 and figures["natural_bogus"] > 0


def test_budget_counts_the_natural_bogus_of_clean_runs() -> None:
    """With clean runs (nothing injected) the budget is nature's bogus there, per clean run.

    In the injected runs natural residuals on shifted stars count as synthetic, so they under-count
    nature; a clean run of the same detector-visit sees every one of them.
    """
    from astropy.table import vstack

    tables, labels, groups, synthetic, clean = [], [], [], [], []
    for det in range(4):
        for run in ("17", "101", "clean"):
            t, y = _interaction_problem(300, 20 + det * 3 + len(run))
            is_clean = run == "clean"
            # injected runs: most bogus near a shifted star (synthetic); clean runs: none
            syn = ~y & ~np.full(len(y), is_clean) & (np.arange(len(y)) % 5 != 0)
            tables.append(t)
            labels.append(y)
            synthetic.append(syn)
            clean.append(np.full(len(y), is_clean))
            groups.append(np.full(len(y), f"1#{det}#{run}"))
    table = vstack(tables)
    y, syn, cl = np.concatenate(labels), np.concatenate(synthetic), np.concatenate(clean)
    kw = {"groups": np.concatenate(groups), "synthetic_bogus": syn, "max_false_per_4k": 16.0, "n_trees": 30}
    _, with_clean = fit_real_bogus(table, y, clean=cl, **kw)
    _, without = fit_real_bogus(table, y, **kw)
    assert with_clean["budget_runs"] == 4 and without["budget_runs"] == 12
    assert with_clean["natural_bogus"] == float((~y & cl).sum())
    assert without["natural_bogus"] == float((~y & ~syn).sum())
    assert with_clean["heldout_natural_bogus_per_4k"] <= 16.0


def test_no_fake_sits_on_a_source_next_to_flagged_pixels() -> None:
    """A bad column's bright edge is detected like a star: it must not become a host (or be shifted)."""
    from pachon.core.image import MASK_PLANES

    exp, psf, hosts = _field(5)
    mask = np.zeros(np.shape(exp.data), np.int32)
    mask[:, 102] = 1 << MASK_PLANES["BAD"]  # next to the star at (100, 120)
    exp.mask = mask
    fakes = FakeInjector(n=40, seed=1, fractions=(0.0, 1.0, 0.0), n_shifted=4)(exp, psf)
    d = np.hypot(np.asarray(fakes["x"]) - hosts[0, 0], np.asarray(fakes["y"]) - hosts[0, 1])
    assert len(fakes) and d.min() > 2 * psf.fwhm


def test_operating_point_holds_out_visits_so_detector_defects_are_known() -> None:
    """A defect fixed to one detector (a bad column) is learned from that detector's other visits.

    Held out by detector (what a single training visit allows), the defect's bogus look new to the
    model and force a high cut; held out by visit, as the deployed model meets new visits of known
    detectors, they do not.
    """
    from astropy.table import vstack

    rng = np.random.default_rng(11)
    tables, labels, groups = [], [], []
    for visit in (1, 2):
        for det in range(3):
            n_real, n_bogus = 200, 12
            t = Table({f: rng.normal(0, 1, n_real + n_bogus) for f in RB_FEATURES})
            t["rb_flagged"] = np.zeros(len(t))
            t["rb_chi2"] = np.concatenate([rng.normal(0, 0.3, n_real), rng.normal(0, 0.3, n_bogus)])
            if det == 0:  # this detector's bogus: next to its bad column, otherwise like reals
                t["rb_flagged"][n_real:] = 3.0
            else:  # the others': bad PSF fits
                t["rb_chi2"][n_real:] = rng.normal(2.0, 0.3, n_bogus)
            tables.append(t)
            labels.append(np.arange(len(t)) < n_real)
            groups.append(np.full(len(t), f"{visit}#{det}#clean"))
    table, y = vstack(tables), np.concatenate(labels)
    clean = np.ones(len(y), bool)
    kw = {"clean": clean, "max_false_per_4k": 4.0, "n_trees": 40, "min_offset": -10.0}
    _, by_visit = fit_real_bogus(table, y, groups=np.concatenate(groups), **kw)
    # the same runs named as if from one visit (run names kept distinct): detector folds
    one_visit = np.array(["1#{1}#v{0}".format(*g.split("#")) for g in np.concatenate(groups)])
    _, by_detector = fit_real_bogus(table, y, groups=one_visit, **kw)
    assert by_visit["offset"] < by_detector["offset"]
    assert by_visit["heldout_real_kept"] > 0.9
