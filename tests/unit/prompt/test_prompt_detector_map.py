"""Memory of the fan-out: ``detector_map`` streams results (the parent holds one at a time, not a
whole visit's or band's), and a worker reads only the template patches its detector touches.

Gathering every result at once kept a template band's 36 calibrated images (50 MB each on the
``small`` preset) in the CLI process together, which reached 7 GB and was OOM-killed there.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pytest

from pachon.pipelines.prompt.parallel import detector_map


def _block(i: int) -> np.ndarray:
    return np.full(200_000, i, dtype=np.float64)  # 1.6 MB: a stand-in for an image


@pytest.fixture(scope="module")
def dask_map() -> Iterator[Callable[..., Iterable[Any]]]:
    with detector_map(2) as mapper:
        yield mapper


@pytest.mark.parametrize("kind", ["builtin", "dask"])
def test_results_come_in_order_and_are_not_kept(kind: str, request: pytest.FixtureRequest) -> None:
    mapper = map if kind == "builtin" else request.getfixturevalue("dask_map")
    alive: list[weakref.ref[np.ndarray]] = []
    seen = []
    for block in mapper(_block, range(5)):
        gc.collect()
        # every result handed out before is gone once the caller dropped it
        assert [r for r in alive if r() is not None] == []
        seen.append(int(block[0]))
        alive.append(weakref.ref(block))
        del block
    assert seen == [0, 1, 2, 3, 4]


def test_an_abandoned_iteration_leaves_nothing_on_the_workers(dask_map: Callable[..., Any]) -> None:
    from dask.distributed import default_client

    it = iter(dask_map(_block, range(6)))
    assert int(next(it)[0]) == 0
    del it  # the generator's cleanup cancels the other tasks
    gc.collect()
    client = default_client()
    for _ in range(50):
        held = client.run(lambda dask_worker: len(dask_worker.data))
        if not sum(held.values()):
            break
        time.sleep(0.1)
    assert sum(held.values()) == 0


def test_a_detector_needs_only_the_template_patches_it_touches() -> None:
    """Workers read these patches only (every patch of every band cost 8 GB per worker on ``small``)."""
    from astropy.wcs import WCS

    from pachon.pipelines.prompt.skymap import SkyMap
    from pachon.pipelines.prompt.templates import patches_overlapping

    skymap = SkyMap("t", ra=150.0, dec=2.0, pixel_scale=0.2, nx=6000, ny=6000, patch_size=1000)
    tract = skymap.tract_wcs()
    det = WCS(naxis=2)
    det.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    det.wcs.crval = list(tract.all_pix2world([[2600.0, 3400.0]], 0)[0])  # detector centre in the tract
    det.wcs.crpix = [400.5, 300.5]
    det.wcs.cd = tract.wcs.cd
    det.wcs.set()
    # an 800×600 detector covering tract x 2200–3000, y 3100–3700 (+48 px pad): patches x 2–3, y 3
    ids = patches_overlapping(skymap, det, (600, 800))
    assert ids == {3 * 6 + 2, 3 * 6 + 3}
    assert len(skymap.patches()) == 36
