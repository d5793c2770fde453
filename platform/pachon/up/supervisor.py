"""Process supervision for the embedded platform: start, health-check, restart, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pachon.core.logging import get_logger

__all__ = ["Component", "PortInUseError", "Supervisor", "free_port", "port_is_free", "read_state"]

log = get_logger(__name__)


class PortInUseError(RuntimeError):
    """A port Pachón must bind is taken; the message names it and what to do."""

    user_facing = True


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (we try to bind it, as the server will)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on host right now (for loopback-only internal services)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Component:
    """One supervised child process and how to tell that it is healthy."""

    name: str
    command: Sequence[str]
    health_url: str
    public_url: str
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 60.0
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    log_path: Path | None = None
    cwd: str | None = None
    umask: int = -1
    """The child's umask (-1 keeps ours); 0o077 for services whose files hold users' data."""

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            return httpx.get(self.health_url, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


def read_state(state_file: Path) -> dict[str, Any] | None:
    """The running platform's state file, or None when nothing runs."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    pid = int(state.get("pid", 0))
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return dict(state)


class Supervisor:
    """Starts components, waits until each is healthy, restarts crashed ones, stops all on request."""

    def __init__(
        self,
        components: Sequence[Component],
        *,
        state_file: Path,
        log_dir: Path,
        checks: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.components = list(components)
        self.checks = dict(checks or {})
        self.state_file = state_file
        self.log_dir = log_dir
        self._stop = threading.Event()

    # Lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Start every component at once, then wait until each is healthy (in the given order).

        Started together, their imports overlap (on two cores about halving the platform's
        start-up); none needs another to *start*: services call the hub only when a request
        arrives, and the hub merely registers their URLs.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for component in self.components:
            self._spawn(component)
        for component in self.components:
            self._wait_healthy(component)
        self._write_state()

    def _spawn(self, component: Component) -> None:
        component.log_path = self.log_dir / f"{component.name}.log"
        log_file = open(component.log_path, "ab")  # noqa: SIM115 - owned by the child process
        env = {**os.environ, **component.env}
        component.process = subprocess.Popen(
            list(component.command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=component.cwd,
            start_new_session=True,
            umask=component.umask,
        )
        log_file.close()
        log.info("started %s (pid %d), log %s", component.name, component.process.pid, component.log_path)

    def _wait_healthy(self, component: Component) -> None:
        deadline = time.monotonic() + component.start_timeout_s
        while time.monotonic() < deadline:
            if component.process is not None and component.process.poll() is not None:
                raise RuntimeError(
                    f"{component.name} exited with status {component.process.returncode} while starting; "
                    f"see {component.log_path}:\n{self._tail(component)}"
                )
            if component.healthy():
                log.info("%s is healthy at %s", component.name, component.public_url)
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{component.name} did not become healthy within {component.start_timeout_s:.0f} s; "
            f"see {component.log_path}:\n{self._tail(component)}"
        )

    @staticmethod
    def _tail(component: Component, lines: int = 15) -> str:
        if component.log_path is None or not component.log_path.exists():
            return ""
        return "\n".join(component.log_path.read_text(errors="replace").splitlines()[-lines:])

    def supervise(self, poll_s: float = 1.0) -> None:
        """Block, restarting components that exit, until :meth:`stop` or a signal."""
        while not self._stop.wait(poll_s):
            for component in self.components:
                proc = component.process
                if proc is not None and proc.poll() is not None:
                    component.restarts += 1
                    backoff = min(30.0, 2.0 ** min(component.restarts, 5))
                    log.error(
                        "%s exited with status %s; restarting in %.0f s (restart %d); last log lines:\n%s",
                        component.name, proc.returncode, backoff, component.restarts, self._tail(component),
                    )  # fmt: skip
                    if self._stop.wait(backoff):
                        return
                    self._spawn(component)
                    try:
                        self._wait_healthy(component)
                    except RuntimeError as exc:
                        log.error("%s", exc)
                    self._write_state()

    def stop(self) -> None:
        """Terminate every component (SIGTERM, then SIGKILL after 10 s) and remove the state file."""
        self._stop.set()
        for component in reversed(self.components):
            proc = component.process
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            log.info("stopped %s", component.name)
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def install_signal_handlers(self) -> None:
        def _handler(signum: int, _frame: Any) -> None:
            log.info("received %s; stopping", signal.Signals(signum).name)
            self._stop.set()

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)

    def _write_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "python": sys.executable,
            "components": {
                c.name: {
                    "pid": c.process.pid if c.process else None,
                    "url": c.public_url,
                    "health": c.health_url,
                    "restarts": c.restarts,
                    "log": str(c.log_path) if c.log_path else None,
                }
                for c in self.components
            },
        }
        for name, (url, health) in self.checks.items():
            state["components"][name] = {
                "pid": None,
                "url": url,
                "health": health,
                "restarts": 0,
                "log": None,
            }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)
