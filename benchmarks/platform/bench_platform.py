"""Platform benchmark: hub start → ready, spawn time, 20 concurrent users querying TAP with tokens.

Run: ``.venv/bin/python benchmarks/platform/bench_platform.py [--users 20] [--spawners 5] [--queries 5]``

Everything is on loopback: a fresh repo in a temporary folder, ``pachon up`` on a free port, users
created with ``pachon user add``, tokens from the hub API. Each simulated user logs in through the
hub's login form, then runs TAP sync queries with its token; the first ``--spawners`` of them also
start a notebook server at the same time. The whole run is bounded (``--timeout``). Prints and
writes JSON (``benchmarks/.data/platform.json``) with p50/p95 of every figure.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawners", type=int, default=5)
    parser.add_argument("--queries", type=int, default=5, help="TAP queries per user")
    parser.add_argument("--timeout", type=float, default=600, help="bound on the concurrent phase (s)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pachon-bench-platform-"))
    repo = work / "repo"
    py = sys.executable
    subprocess.run([py, "-m", "pachon.cli", "repo", "create", str(repo)], check=True, capture_output=True)
    env = {**os.environ, "PACHON_HUB__SPAWNER": "simple", "PACHON_HUB__CULL_IDLE_S": "0"}
    users = [f"bench{i:02d}" for i in range(args.users)]
    passwords = {u: f"pw-{u}-bench" for u in users}
    for user in users:
        subprocess.run([py, "-m", "pachon.cli", "user", "add", user, "--password-stdin", "--repo", str(repo)],
                       input=passwords[user] + "\n", text=True, check=True, capture_output=True, env=env)  # fmt: skip
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (work / "up.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen([py, "-m", "pachon.cli", "up", "--repo", str(repo), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
    results: dict[str, Any] = {"machine": "2-core, 24 GiB (this workplace's kind)", "users": args.users,
                               "spawners": args.spawners, "queries_per_user": args.queries}  # fmt: skip
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
            tokens = {u: hub.create_token(u, note="bench")["token"] for u in users}

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
        with ThreadPoolExecutor(max_workers=args.users) as pool:
            list(pool.map(one_user, range(args.users)))
        results["concurrent_phase_s"] = round(time.perf_counter() - t1, 2)
        results["login"] = _summary(logins)
        results["tap_query"] = _summary(queries)
        results["spawn"] = _summary(spawns)
        results["errors"] = errors
        results["all_succeeded"] = not errors and len(spawns) == args.spawners
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
    out = ROOT / "benchmarks" / ".data" / "platform.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not results.get("all_succeeded"):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
