"""JupyterHub's local spawners, returning from ``start()`` only once the server listens.

Why: after ``Spawner.start()`` returns, the hub polls the new server's ``/api`` with an
exponential back-off whose waits are random up to 0.2, 0.4, 0.8, 1.6, 3.2 and then 5 s
(``jupyterhub.utils.exponential_backoff``, not configurable). A server that needs 3 s to import
and bind was typically noticed 2-5 s after it was ready, and a spawn that took 3 s of work
took 8 s of the user's time. Waiting here instead, with a cheap TCP connect every 50 ms to the
loopback port the server binds, makes the hub's first poll succeed: the spawn costs what the
server's start-up costs. Nothing else changes (same options, same process handling).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner

__all__ = ["PachonLocalProcessSpawner", "PachonSimpleLocalProcessSpawner", "wait_listening"]

POLL_S = 0.05


async def wait_listening(host: str, port: int, process: Any, timeout: float) -> bool:
    """True once ``host:port`` accepts a connection; False if ``process`` exits or ``timeout`` passes.

    Either way the hub's own checks follow, and they report a failure with the server's log.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1)
        except (TimeoutError, OSError):
            await asyncio.sleep(POLL_S)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


class _StartsWhenListening:
    """Mixin for spawners whose ``start()`` returns ``(ip, port)`` and keeps the child in ``self.proc``."""

    http_timeout: int
    proc: Any

    async def start(self) -> tuple[str, int]:
        ip, port = await super().start()  # type: ignore[misc]
        await wait_listening(ip or "127.0.0.1", port, self.proc, timeout=self.http_timeout)
        return ip, port


class PachonLocalProcessSpawner(_StartsWhenListening, LocalProcessSpawner):  # type: ignore[misc]
    """``LocalProcessSpawner`` (a Unix account per user) that returns once the server listens."""


class PachonSimpleLocalProcessSpawner(_StartsWhenListening, SimpleLocalProcessSpawner):  # type: ignore[misc]
    """``SimpleLocalProcessSpawner`` (one shared account) that returns once the server listens."""
