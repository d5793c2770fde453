"""``detector_map`` streams results: the parent holds one at a time, not a whole visit's or band's.

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
