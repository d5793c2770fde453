"""Platform benchmark: hub start → ready, spawn time, 20 concurrent users querying TAP with tokens.

Run: ``.venv/bin/python benchmarks/platform/bench_platform.py [--users 20] [--spawners 5] [--queries 5]``

Everything is on loopback: a fresh repo in a temporary folder, ``pachon up`` on a free port, users
created with ``pachon user add``, tokens from the hub API. Each simulated user logs in through the
hub's login form, then runs TAP sync queries with its token; the first ``--spawners`` of them also
start a notebook server at the same time. The whole run is bounded (``--timeout``). Prints and
writes JSON (``benchmarks/.data/platform.json``) with p50/p95 of every figure.

``--spawner auto`` (default) is what ``pachon up`` picks: as root, a Unix account per user
(created on the first spawn, removed at the end with ``userdel``) and the user environment; else
single-user mode. Before the concurrent phase one server is spawned alone (the "spawn" budget);
the hub's log then splits every spawn into the server's own start-up (spawn request → "is
running at") and the hub's part (→ "took N seconds to start"). CPU seconds of the whole platform
(process tree) and the load average are recorded, since other work shares this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
QUERY = "SELECT TOP 10 table_name, description FROM TAP_SCHEMA.tables"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_s": round(_pct(values, 0.5), 3),
        "p95_s": round(_pct(values, 0.95), 3),
        "max_s": round(max(values), 3) if values else float("nan"),
        "mean_s": round(statistics.fmean(values), 3) if values else float("nan"),
    }


def _login(url: str, name: str, password: str) -> float:
    start = time.perf_counter()
    with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as client:
        page = client.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, "no _xsrf on the login page"
        response = client.post(
            "/hub/login", data={"username": name, "password": password, "_xsrf": xsrf.group(1)}
        )
        assert response.status_code == 302, f"login of {name}: HTTP {response.status_code}"
    return time.perf_counter() - start


def _spawn(url: str, name: str, token: str, deadline: float) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    SPAWN_REQUESTED[name] = time.time()
    response = httpx.post(f"{url}/hub/api/users/{name}/server", headers=headers, timeout=60)
    assert response.status_code in (201, 202), f"spawn of {name}: HTTP {response.status_code} {response.text}"
    while time.monotonic() < deadline:
        model = httpx.get(f"{url}/hub/api/users/{name}", headers=headers, timeout=30).json()
        server = (model.get("servers") or {}).get("")
        if server and server.get("ready"):
            # Ready in the hub's eyes; check the lab answers through the proxy too.
            lab = httpx.get(f"{url}/user/{name}/api/status", headers=headers, timeout=30)
            if lab.status_code == 200:
                return time.perf_counter() - start
        time.sleep(0.2)
    raise TimeoutError(f"server of {name} not ready before the deadline")


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its living descendants."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


SPAWN_REQUESTED: dict[str, float] = {}
"""User → wall-clock time of the spawn request (for the phases read from the hub's log)."""


def _spawn_phases(hub_log: str) -> dict[str, dict[str, float]]:
    """Per user: the server's own start-up (request → Jupyter "running at") and the hub's whole spawn."""
    found: dict[str, dict[str, float]] = {}
    running = re.compile(
        r"\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d{3}) ServerApp\] http://127\.0\.0\.1:\d+/user/(\w+)/"
    )
    for m in running.finditer(hub_log):
        user = m.group(3)
        if user in SPAWN_REQUESTED:
            # The hub logs local time; time.mktime reads it the same way.
            at = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + float(m.group(2))
            found.setdefault(user, {})["server_startup_s"] = round(at - SPAWN_REQUESTED[user], 2)
    for m in re.finditer(r"User (\w+) took ([\d.]+) seconds to start", hub_log):
        found.setdefault(m.group(1), {})["hub_spawn_s"] = float(m.group(2))
    return found


def _remove_accounts(names: list[str], homes: Path) -> None:
    """Delete the Unix accounts the system spawner created for this run (homes under ``homes`` only)."""
    import pwd

    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if not entry.pw_dir.startswith(str(homes)):
            continue  # not ours
        for pid in psutil.pids():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).uids().real == entry.pw_uid:
                    os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawners", type=int, default=5)
    parser.add_argument("--queries", type=int, default=5, help="TAP queries per user")
    parser.add_argument("--timeout", type=float, default=600, help="bound on the concurrent phase (s)")
    parser.add_argument("--spawner", choices=("auto", "simple", "system"), default="auto")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pachon-bench-platform-"))
    os.chmod(work, 0o755)  # the system spawner's users reach their homes (and the repo) through it
    homes = work / "homes"
    homes.mkdir(mode=0o755)
    repo = work / "repo"
    py = sys.executable
    subprocess.run([py, "-m", "pachon.cli", "repo", "create", str(repo)], check=True, capture_output=True)
    env = {**os.environ, "PACHON_HUB__SPAWNER": args.spawner, "PACHON_HUB__CULL_IDLE_S": "0",
           "PACHON_HUB__HOME_ROOT": str(homes)}  # fmt: skip
    users = [f"bench{i:02d}" for i in range(args.users)]
    solo = "benchsolo"
    passwords = {u: f"pw-{u}-bench" for u in users}
    # What `pachon user add` does, in this process (twenty CLI start-ups would dominate the set-up).
    from pachon.hub.spec import hub_state_dir
    from pachon.hub.users import add_user

    for user in [*users, solo]:
        passwords.setdefault(user, f"pw-{user}-bench")
        add_user(hub_state_dir(repo), user, passwords[user])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "up.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([py, "-m", "pachon.cli", "up", "--repo", str(repo), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    results: dict[str, Any] = {"machine": "2-core, 24 GiB (this workplace's kind)", "users": args.users,
                               "spawners": args.spawners, "queries_per_user": args.queries,
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    try:
        while time.perf_counter() - t0 < 120:
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(f"{url}/hub/health", timeout=2).status_code == 200
                    and "Pachón is up" in (work / "up.log").read_text()
                ):
                    break
            time.sleep(0.1)
        else:
            raise SystemExit(f"platform did not start:\n{(work / 'up.log').read_text()[-3000:]}")
        results["platform_start_to_ready_s"] = round(time.perf_counter() - t0, 2)
        results["platform_start_cpu_s"] = round(_tree_cpu_s(proc.pid), 2)
        spec = json.loads((repo / "state" / "hub" / "platform.json").read_text())
        results["spawner"] = spec.get("spawner")
        text = (work / "up.log").read_text()
        stamps = re.findall(r"(\d\d:\d\d:\d\d) INFO pachon.up.supervisor: (started hub|hub is healthy)", text)
        if len(stamps) >= 2:
            h0 = time.strptime(stamps[0][0], "%H:%M:%S")
            h1 = time.strptime(stamps[1][0], "%H:%M:%S")
            results["hub_process_start_to_healthy_s_1s_resolution"] = (
                h1.tm_hour * 3600 + h1.tm_min * 60 + h1.tm_sec
            ) - (h0.tm_hour * 3600 + h0.tm_min * 60 + h0.tm_sec)
        sys.path.insert(0, str(ROOT / "platform"))
        from pachon.hub.api import HubAdminClient

        with HubAdminClient.for_repo(repo) as hub:
            tokens = {u: hub.create_token(u, note="bench")["token"] for u in [*users, solo]}

        # One spawn alone: the "a user's server spawn" budget.
        cpu0 = _tree_cpu_s(proc.pid)
        results["spawn_alone_s"] = round(_spawn(url, solo, tokens[solo], time.monotonic() + 120), 2)
        results["spawn_alone_platform_cpu_s"] = round(_tree_cpu_s(proc.pid) - cpu0, 2)

        logins: list[float] = []
        queries: list[float] = []
        spawns: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        deadline = time.monotonic() + args.timeout

        def one_user(index: int) -> None:
            name = users[index]
            try:
                login_s = _login(url, name, passwords[name])
                spawner = None
                if index < args.spawners:
                    spawner = threading.Thread(
                        target=lambda: spawns.append(_spawn(url, name, tokens[name], deadline))
                    )
                    spawner.start()
                mine = []
                with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {tokens[name]}"}) as client:
                    for _ in range(args.queries):
                        if time.monotonic() > deadline:
                            raise TimeoutError("bounded run: deadline reached")
                        start = time.perf_counter()
                        response = client.post(
                            f"{url}/services/tap/sync", data={"LANG": "ADQL", "QUERY": QUERY}
                        )
                        assert response.status_code == 200, (
                            f"HTTP {response.status_code}: {response.text[:200]}"
                        )
                        mine.append(time.perf_counter() - start)
                if spawner is not None:
                    spawner.join(timeout=max(1.0, deadline - time.monotonic()))
                with lock:
                    logins.append(login_s)
                    queries.extend(mine)
            except Exception as exc:  # collected and reported; the run still ends
                with lock:
                    errors.append(f"{name}: {type(exc).__name__}: {exc}")

        t1 = time.perf_counter()
        cpu1 = _tree_cpu_s(proc.pid)
        load1 = os.getloadavg()[0]
        with ThreadPoolExecutor(max_workers=args.users) as pool:
            list(pool.map(one_user, range(args.users)))
        results["concurrent_phase_s"] = round(time.perf_counter() - t1, 2)
        results["concurrent_phase_platform_cpu_s"] = round(_tree_cpu_s(proc.pid) - cpu1, 2)
        results["load_average_1min_before_after_concurrent_phase"] = [
            round(load1, 2),
            round(os.getloadavg()[0], 2),
        ]
        results["login"] = _summary(logins)
        results["tap_query"] = _summary(queries)
        results["spawn"] = _summary(spawns)
        results["errors"] = errors
        results["all_succeeded"] = not errors and len(spawns) == args.spawners
        hub_log = repo / "state" / "logs" / "hub.log"
        if hub_log.exists():
            results["spawn_phases_from_hub_log"] = _spawn_phases(hub_log.read_text(errors="replace"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        _remove_accounts([*users, solo], homes)
    out = ROOT / "benchmarks" / ".data" / "platform.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not results.get("all_succeeded"):
        raise SystemExit(
            f"not every operation succeeded; the platform's logs are in {repo / 'state' / 'logs'}"
        )
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
