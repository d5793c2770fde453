"""Fan-out of per-detector work: the builtin ``map`` for one core, a Dask ``LocalCluster`` for more.

One single-threaded worker *process* per core (numpy, sep and FFTs release the GIL only partly, and
each detector's working set is private), created once per command and reused for every visit, so a
visit pays only for its tasks, not for starting workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["detector_map"]


@contextmanager
def detector_map(workers: int) -> Iterator[Callable[..., Iterable[Any]]]:
    """A ``map(func, *iterables)`` that returns results in order, on ``workers`` processes."""
    if workers <= 1:
        yield map
        return
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = Client(cluster)

    def dmap(func: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        futures = client.map(func, *[list(it) for it in iterables], pure=False)  # type: ignore[arg-type]
        return list(client.gather(futures))

    try:
        yield dmap
    finally:
        client.close()
        cluster.close()
