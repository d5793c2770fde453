"""Real/bogus context features: the host's type from the template, bright neighbours other than the host.

The two supernovae the classifier lost on ``tiny`` were lost to context, not to their own signal: one
on a compact galaxy that the visit (measuring the galaxy *with* the SN on it) called a star, one
three FWHM from a bright star. These tests pin the features that describe that context.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pachon.core.image import Exposure
from pachon.pipelines.prompt.dia import bright_neighbour, template_host_extendedness
from pachon.pipelines.prompt.psf import gaussian_psf
from pachon.pipelines.prompt.training import FakeInjector, _add_source

STARS = [(60.0, 60.0), (140.0, 70.0), (250.0, 60.0), (330.0, 120.0), (80.0, 330.0), (300.0, 320.0)]
GALAXY = (200.0, 200.0)


def _template(sigma: float = 1.5) -> Exposure:
    """A deep, sharp template: six stars and one compact galaxy (a 2-px-wide blob of offset PSFs)."""
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 5.0, (400, 400)).astype(np.float32)
    psf = gaussian_psf(sigma, size=25, shape=(400, 400))
    for x, y in STARS:
        _add_source(data, psf, x, y, 4e4, 0.0, 0.0)
    for dx, dy in [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2), (1.5, 1.5), (-1.5, -1.5)]:
        _add_source(data, psf, GALAXY[0] + dx, GALAXY[1] + dy, 3e3, 0.0, 0.0)
    exp = Exposure(data, unit="nJy")
    exp.variance = np.full(data.shape, 25.0, np.float32)
    exp.mask = np.zeros(data.shape, np.int32)
    return exp


def _direct_sources(galaxy_called: float) -> Table:
    """The visit's catalogue: the stars are PSF stars; the galaxy (with an SN on it) called ``galaxy_called``."""
    xs = [x for x, _ in STARS] + [GALAXY[0] + 0.6]
    ys = [y for _, y in STARS] + [GALAXY[1] - 0.4]
    n = len(xs)
    return Table(
        {
            "x": xs,
            "y": ys,
            "psfFlux": [4e4] * (n - 1) + [5e3],
            "psfFluxErr": [50.0] * n,
            "extendedness": [0.0] * (n - 1) + [galaxy_called],
            "calib_psf_used": [True] * (n - 1) + [False],
        }
    )


def test_host_type_is_measured_on_the_template_not_the_visit() -> None:
    """An SN on a compact galaxy makes the visit call it a star; the template, without the SN, does not."""
    template = _template()
    dia = Table({"x": [GALAXY[0] + 1.0, STARS[2][0] + 0.3, 120.0], "y": [GALAXY[1], STARS[2][1], 250.0]})
    ext = template_host_extendedness(
        dia, template, _direct_sources(galaxy_called=0.0), fwhm=4.5, template_fwhm=1.5 * 2.3548
    )
    assert ext.tolist() == [1.0, 0.0, 0.5]  # galaxy, star, nothing there


def test_host_type_is_neutral_without_a_stellar_locus() -> None:
    """Fewer than five PSF stars give no stellar locus to compare with: every host is 0.5 (unknown)."""
    sources = _direct_sources(galaxy_called=1.0)
    sources["calib_psf_used"] = False
    dia = Table({"x": [GALAXY[0]], "y": [GALAXY[1]]})
    assert template_host_extendedness(dia, _template(), sources, fwhm=4.5, template_fwhm=3.5).tolist() == [
        0.5
    ]


def test_bright_neighbour_counts_other_sources_not_the_host() -> None:
    sources = Table(
        {"x": [100.0, 130.0], "y": [100.0, 100.0], "psfFlux": [1e5, 1e5], "psfFluxErr": [100.0] * 2}
    )
    fwhm = 4.0
    # on its own bright host (2.5 px off its centre), 30 px (7.5 FWHM) from the next bright star
    on_host = bright_neighbour(np.array([102.5]), np.array([100.0]), sources, fwhm=fwhm)
    assert on_host[0] < 0.1
    # 3 FWHM from a bright star, on empty sky: the star counts
    beside = bright_neighbour(np.array([100.0]), np.array([112.0]), sources, fwhm=fwhm)
    assert beside[0] == pytest.approx(np.log10(1000.0) * np.exp(-12.0 / (1.5 * fwhm)))
    # nothing bright: zero; no catalogue: zero
    faint = sources.copy()
    faint["psfFlux"] = 100.0
    assert bright_neighbour(np.array([100.0]), np.array([112.0]), faint, fwhm=fwhm)[0] == 0.0
    assert bright_neighbour(np.array([100.0]), np.array([112.0]), None, fwhm=fwhm)[0] == 0.0


def test_training_puts_fakes_next_to_bright_sources() -> None:
    """``near_bright_share`` of the sky fakes land 1.5–4 FWHM from a bright detected source."""
    template = _template()
    psf = gaussian_psf(1.5, size=25, shape=(400, 400))
    fakes = FakeInjector(n=12, seed=4, fractions=(1.0, 0.0, 0.0), near_bright_share=1.0)(template, psf)
    kind = np.asarray(fakes["kind"]).astype(str)
    assert (kind == "neighbour").sum() >= 4
    bright = np.array([*STARS, GALAXY])
    near = fakes[kind == "neighbour"]
    d = np.hypot(near["x"][:, None] - bright[:, 0], near["y"][:, None] - bright[:, 1]).min(axis=1)
    assert (d >= 1.5 * psf.fwhm - 0.5).all() and (d <= 4.0 * psf.fwhm + 0.5).all()
    # the default injector (used for held-out completeness) puts none there on purpose
    plain = FakeInjector(n=12, seed=4, fractions=(1.0, 0.0, 0.0))(_template(), psf)
    assert "neighbour" not in set(np.asarray(plain["kind"]).astype(str).tolist())
