"""Progress bars for long work (simulation, processing, ingest).

A thin wrapper over rich so every long loop looks the same: description, bar,
``done/total``, elapsed and remaining time. On a non-terminal (CI logs) rich prints
nothing per step, so logs stay readable; pass ``disable=True`` to silence it entirely.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress"]


@contextmanager
def progress(*, disable: bool = False, transient: bool = False) -> Iterator[Progress]:
    """A rich Progress with Pachón's standard columns, writing to stderr.

    Examples
    --------
    >>> with progress() as bar:                       # doctest: +SKIP
    ...     task = bar.add_task("rendering", total=24)
    ...     for _ in range(24):
    ...         bar.advance(task)
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=disable, transient=transient) as bar:
        yield bar
