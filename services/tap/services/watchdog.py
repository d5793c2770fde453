"""One timer thread for every query's time limit.

``threading.Timer`` starts a thread per query, which on a busy 2-core machine costs
milliseconds per request (``Thread.start`` waits for the new thread to run). The service
instead keeps one daemon thread with a heap of deadlines; arming and disarming a deadline
is a heap push and a flag.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Deadline", "Watchdog"]


class Deadline:
    """An armed deadline; :meth:`cancel` disarms it (idempotent, thread-safe)."""

    __slots__ = ("action", "cancelled", "when")

    def __init__(self, when: float, action: Callable[[], None]) -> None:
        self.when = when
        self.action = action
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Watchdog:
    """Calls actions at their deadlines from a single background thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tap-watchdog", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, action: Callable[[], None]) -> Deadline:
        deadline = Deadline(time.monotonic() + delay, action)
        with self._cond:
            heapq.heappush(self._heap, (deadline.when, next(self._counter), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()
        return deadline

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
                _, _, due = heapq.heappop(self._heap)
            if not due.cancelled:
                with contextlib.suppress(Exception):  # an action must never kill the watchdog
                    due.action()
