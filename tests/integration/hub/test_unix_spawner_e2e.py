"""Per-user Unix accounts end to end: `pachon up` as root with the system spawner, two users, two servers.

Starts its own platform (``PACHON_HUB__SPAWNER=system``, so a platform that cannot prepare the user
environment fails loudly instead of falling back), signs two users up, has the admin approve them
(their Unix accounts exist from that moment), spawns a server for each through the hub API and checks:

* each server process runs as its own user's uid, in the user environment's interpreter;
* code in one user's kernel cannot list or read the other's home, nor the hub's secrets and
  database, the TAP jobs database or the logs, while it can read its own home and the repo;
* JupyterLab's news prompt and update check are off in the servers (the settings API's defaults).

Needs root (creating Unix accounts); under ``PACHON_REQUIRE_SERVICES=1`` it fails instead of skipping.
The accounts are removed (``userdel --remove``) at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.platform import pachon_up, xsrf_token

from pachon.core.alerts.broker import free_port

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

ADMIN, ADMIN_PASSWORD = "sysadmin", "sysadmin-Pw-7d1"


@dataclass
class SystemPlatform:
    url: str
    repo: Path
    homes: Path
    log: Path
    users: dict[str, str]
    """name → password of the two signed-up users."""


def _login(url: str, name: str, password: str) -> httpx.Client:
    """A logged-in browser-like client; the redirect after login (which would spawn) is not followed."""
    client = httpx.Client(base_url=url, timeout=60)
    response = client.post(
        "/hub/login", data={"username": name, "password": password, "_xsrf": xsrf_token(client, "/hub/login")}
    )
    assert response.status_code == 302, response.text[:300]
    return client


def _signup(url: str, name: str, password: str) -> None:
    with httpx.Client(base_url=url, follow_redirects=True, timeout=60) as client:
        response = client.post(
            "/hub/signup",
            data={"username": name, "signup_password": password, "signup_password_confirmation": password,
                  "_xsrf": xsrf_token(client, "/hub/signup")},
        )  # fmt: skip
        assert response.status_code == 200 and "information has been sent to the admin" in response.text


def _user_pids(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
    return pids


def _remove_account(name: str) -> None:
    with contextlib.suppress(KeyError):
        uid = pwd.getpwnam(name).pw_uid
        for pid in _user_pids(uid):  # leftovers of the test's own accounts only
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        subprocess.run(["userdel", "--remove", name], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def system_platform(require: Any) -> Iterator[SystemPlatform]:
    if os.geteuid() != 0:
        require.missing("root", "the system spawner creates Unix accounts: run the tests as root")
    for tool in ("useradd", "userdel"):
        require.binary(tool, "install Debian's passwd package")
    # Homes and the repo must be reachable by the users (pytest's tmp folder is root-only).
    base = Path(tempfile.mkdtemp(prefix="pachon-sysspawn-"))
    os.chmod(base, 0o755)
    repo, homes, log = base / "repo", base / "homes", base / "up.log"
    homes.mkdir(mode=0o755)
    tag = uuid.uuid4().hex[:6]
    users = {f"ua{tag}": f"Pw-a-{uuid.uuid4().hex[:10]}", f"ub{tag}": f"Pw-b-{uuid.uuid4().hex[:10]}"}
    env = {
        **os.environ,
        "PACHON_HUB__SPAWNER": "system",
        "PACHON_HUB__HOME_ROOT": str(homes),
        "PACHON_HUB__CULL_IDLE_S": "0",
    }
    py = sys.executable
    subprocess.run([py, "-m", "pachon.cli", "repo", "create", str(repo)], check=True, capture_output=True,
                   timeout=120, env=env)  # fmt: skip
    subprocess.run([py, "-m", "pachon.cli", "user", "add", ADMIN, "--admin", "--password-stdin", "--repo", str(repo)],
                   input=ADMIN_PASSWORD + "\n", text=True, check=True, capture_output=True, env=env, timeout=120)  # fmt: skip
    port = free_port()
    try:
        with pachon_up(repo, port, env, log, python=py, what=" (system spawner)"):
            yield SystemPlatform(f"http://127.0.0.1:{port}", repo, homes, log, users)
    finally:
        for name in (*users, ADMIN):
            _remove_account(name)
        shutil.rmtree(base, ignore_errors=True)


def _run_in_kernel(url: str, user: str, token: str, code: str, timeout: float = 90) -> str:
    """Start a kernel on ``user``'s server, run ``code``, return its stdout (fails on an error)."""
    import asyncio

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    kernel = httpx.post(
        f"{url}/user/{user}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60
    )
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]

    async def run() -> str:
        ws_url = url.replace("http://", "ws://") + f"/user/{user}/api/kernels/{kernel_id}/channels"
        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers, connect_timeout=30))
        msg_id = uuid.uuid4().hex
        conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True},
        }))  # fmt: skip
        out, replied, idle = [], None, False
        while replied is None or not idle:
            raw = await asyncio.wait_for(conn.read_message(), timeout)
            assert raw is not None, "the kernel's websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append("\n".join(msg["content"]["traceback"]))
            elif kind == "execute_reply":
                replied = msg["content"]["status"]
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
        conn.close()
        assert replied == "ok", "".join(out)
        return "".join(out)

    try:
        return asyncio.run(run())
    finally:
        httpx.delete(f"{url}/user/{user}/api/kernels/{kernel_id}", headers=headers, timeout=30)


def _server_pid(name: str) -> int:
    """The single-user server of ``name`` (found by its environment, which root can read)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"pachon.hub.singleuser" not in cmdline:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
            if f"JUPYTERHUB_USER={name}".encode() in environ:
                return int(entry.name)
    raise AssertionError(f"no single-user server process (pachon.hub.singleuser) for {name}")


PROBE = """
import json, os
from pathlib import Path
def probe(path, kind):
    try:
        os.listdir(path) if kind == "list" else Path(path).read_bytes()
        return "readable"
    except PermissionError:
        return "denied"
    except FileNotFoundError:
        return "missing"
home = Path.home()
(home / "mine.txt").write_text("mine")
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "home": str(home), "python": os.path.realpath(os.sys.executable),
    "own_file": probe(home / "mine.txt", "read"),
    "targets": {name: probe(path, kind) for name, (path, kind) in TARGETS.items()},
}))
"""


def test_two_users_get_their_own_accounts_servers_and_private_homes(system_platform: SystemPlatform) -> None:
    p = system_platform
    url = p.url
    spec = json.loads((p.repo / "state" / "hub" / "platform.json").read_text())
    assert spec["spawner"] == "system", spec
    assert "SINGLE-USER MODE" not in p.log.read_text() and "per-user accounts" in p.log.read_text()
    alice, bob = list(p.users)

    # Sign-up, then approval by the admin: the Unix accounts exist from that moment, homes private.
    for name, password in p.users.items():
        _signup(url, name, password)
        with pytest.raises(KeyError):
            pwd.getpwnam(name)
    admin = _login(url, ADMIN, ADMIN_PASSWORD)
    for name in p.users:
        assert admin.get(f"/hub/authorize/{name}").status_code == 302
        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
        assert home == p.homes / name and home.stat().st_uid == entry.pw_uid
        assert home.stat().st_mode & 0o777 == 0o700
    admin.close()

    # Each user logs in and starts their server through the hub API with their own token.
    from pachon.hub.api import HubAdminClient

    with HubAdminClient.for_repo(p.repo) as hub:
        tokens = {name: hub.create_token(name, note="system spawner test")["token"] for name in p.users}
    for name, password in p.users.items():
        _login(url, name, password).close()
    for name in p.users:
        assert not (httpx.get(f"{url}/hub/api/users/{name}", headers={"Authorization": f"Bearer {tokens[name]}"},
                              timeout=30).json().get("servers"))  # fmt: skip
    spawn_s = {}
    for name in p.users:
        headers = {"Authorization": f"Bearer {tokens[name]}"}
        started = time.perf_counter()
        response = httpx.post(f"{url}/hub/api/users/{name}/server", headers=headers, timeout=90)
        assert response.status_code in (201, 202), response.text
        deadline = time.monotonic() + 90
        while True:
            server = (httpx.get(f"{url}/hub/api/users/{name}", headers=headers, timeout=30).json()
                      .get("servers") or {}).get("")  # fmt: skip
            if server and server.get("ready"):
                break
            assert time.monotonic() < deadline, f"server of {name} not ready:\n{p.log.read_text()[-3000:]}"
            time.sleep(0.2)
        spawn_s[name] = time.perf_counter() - started
    print(f"spawn times (system spawner): {spawn_s}")

    # Each server process runs as its own account, with the user environment's Python.
    for name in p.users:
        pid = _server_pid(name)
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert {int(u) for u in uids} == {pwd.getpwnam(name).pw_uid}, (name, uids)
        assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(spec["user_python"])

    # JupyterLab's news prompt and update check are off (defaults of the settings API).
    notification = httpx.get(
        f"{url}/user/{alice}/lab/api/settings/@jupyterlab/apputils-extension:notification",
        headers={"Authorization": f"token {tokens[alice]}"}, timeout=30,
    ).json()  # fmt: skip
    assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert notification["schema"]["properties"]["checkForUpdates"]["default"] is False

    # Bob keeps a file in his home; Alice's kernel can reach neither it nor the platform's secrets.
    bob_home = Path(pwd.getpwnam(bob).pw_dir)
    _run_in_kernel(
        url, bob, tokens[bob], "from pathlib import Path; (Path.home() / 'secret.txt').write_text('bob')"
    )
    state = p.repo / "state"
    targets = {
        "bob_home": (str(bob_home), "list"),
        "bob_file": (str(bob_home / "secret.txt"), "read"),
        "hub_secrets": (str(state / "hub" / "secrets.json"), "read"),
        "hub_db": (str(state / "hub" / "jupyterhub.sqlite"), "read"),
        "tap_jobs_db": (str(state / "pachon.sqlite3"), "read"),
        "tap_results": (str(state / "tap-results"), "list"),
        "logs": (str(state / "logs"), "list"),
        "repo_butler": (str(p.repo / "butler.yaml"), "read"),
    }
    code = f"TARGETS = {targets!r}\n" + PROBE
    seen = json.loads(_run_in_kernel(url, alice, tokens[alice], code).strip().splitlines()[-1])
    alice_entry = pwd.getpwnam(alice)
    assert seen["uid"] == seen["euid"] == alice_entry.pw_uid
    assert seen["home"] == alice_entry.pw_dir
    assert seen["python"] == os.path.realpath(spec["user_python"])
    assert seen["own_file"] == "readable"
    assert (bob_home / "secret.txt").read_text() == "bob"  # it is there, …
    expected = {name: "denied" for name in targets}
    expected["repo_butler"] = "readable"  # … the repo itself is shared (the Butler reads it)
    if not (state / "pachon.sqlite3").exists():
        expected["tap_jobs_db"] = "missing"
    assert seen["targets"] == expected
