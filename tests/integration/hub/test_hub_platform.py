"""The running platform (`pachon up`): hub, proxy, discovery, accounts, tokens, scopes, TAP behind the hub.

All tests share one platform started by the session fixture ``running_platform``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from fixtures.platform import ADMIN, ADMIN_PASSWORD, RunningPlatform, xsrf_token

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

QUERY = "SELECT TOP 3 table_name FROM TAP_SCHEMA.tables"


def _login(platform: RunningPlatform, name: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=platform.url, follow_redirects=True, timeout=30)
    xsrf = xsrf_token(client, "/hub/login")
    response = client.post("/hub/login", data={"username": name, "password": password, "_xsrf": xsrf})
    assert response.status_code == 200, response.text[:500]
    return client


def _signup(platform: RunningPlatform, name: str, password: str) -> None:
    with httpx.Client(base_url=platform.url, follow_redirects=True, timeout=30) as client:
        xsrf = xsrf_token(client, "/hub/signup")
        response = client.post(
            "/hub/signup",
            data={
                "username": name,
                "signup_password": password,
                "signup_password_confirmation": password,
                "_xsrf": xsrf,
            },
        )
        assert response.status_code == 200
        assert (
            "information has been sent to the admin" in response.text or "authoriz" in response.text.lower()
        )


def _sync(platform: RunningPlatform, token: str | None, query: str = QUERY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{platform.url}/services/tap/sync",
        data={"LANG": "ADQL", "REQUEST": "doQuery", "QUERY": query},
        headers=headers,
        timeout=60,
    )


# Start-up, status, discovery -------------------------------------------------------------------
def test_hub_starts_within_budget(running_platform: RunningPlatform) -> None:
    # Includes repo preparation and the service start-ups; the budget is 15 s.
    assert running_platform.started_in_s < 30, running_platform.started_in_s
    assert "Open http://127.0.0.1" in running_platform.log.read_text()


def test_status_lists_every_component(running_platform: RunningPlatform) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pachon.cli", "status", "--repo", str(running_platform.repo)],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    for name in ("hub", "proxy", "discovery", *(["tap"] if running_platform.tap_available else [])):
        assert re.search(rf"{name}\s+healthy", out), out
    assert re.search(r"idle-culler\s+running\s+managed by the hub", out), out


def test_discovery_is_anonymous_and_lists_services(running_platform: RunningPlatform) -> None:
    response = httpx.get(f"{running_platform.url}/services/discovery/", timeout=10)
    assert response.status_code == 200
    doc = response.json()
    assert doc["applications"]["token"].endswith("/hub/token")
    assert "discovery" in doc["services"]
    if running_platform.tap_available:
        tap = doc["services"]["tap"]
        assert tap["url"] == f"{running_platform.url}/services/tap"
        assert "ivo://ivoa.net/std/TAP" in tap["standard_ids"]
        assert doc["datasets"]["dp1"]["services"]["tap"]["url"] == tap["url"]


def test_port_in_use_is_a_clear_error(running_platform: RunningPlatform, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "other"
    subprocess.run(
        [sys.executable, "-m", "pachon.cli", "repo", "create", str(repo)], check=True, capture_output=True
    )
    result = subprocess.run(
        [sys.executable, "-m", "pachon.cli", "up", "--repo", str(repo), "--port", str(running_platform.port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"port {running_platform.port}" in (result.stderr + result.stdout)
    assert "already in use" in (result.stderr + result.stdout)


# What is and is not reachable -------------------------------------------------------------------
def test_hub_and_proxy_apis_need_auth(running_platform: RunningPlatform) -> None:
    url = running_platform.url
    for path in (
        "/hub/api/users",
        f"/hub/api/users/{ADMIN}",
        f"/hub/api/users/{ADMIN}/tokens",
        "/hub/api/services",
    ):
        response = httpx.get(url + path, timeout=10)
        assert response.status_code in (401, 403), (path, response.status_code)
    assert httpx.post(f"{url}/hub/api/users/mallory", json={"admin": True}, timeout=10).status_code in (
        401,
        403,
    )
    # The admin page sends an anonymous browser to the login page.
    admin_page = httpx.get(f"{url}/hub/admin", timeout=10)
    assert admin_page.status_code == 302 and "login" in admin_page.headers["location"]
    # The proxy's REST API is not on the public port (there the path is just the hub's), …
    routes = httpx.get(f"{url}/api/routes", timeout=10)
    assert routes.status_code in (302, 404) and "/services/discovery" not in routes.text
    # … and on its own loopback port it wants the proxy token.
    spec = json.loads((running_platform.repo / "state" / "hub" / "platform.json").read_text())
    api = httpx.get(f"http://127.0.0.1:{spec['proxy_api_port']}/api/routes", timeout=10)
    assert api.status_code == 403


def test_only_the_public_port_is_bound_beyond_loopback_ports(running_platform: RunningPlatform) -> None:
    spec = json.loads((running_platform.repo / "state" / "hub" / "platform.json").read_text())
    internal = {
        spec["hub_port"],
        spec["proxy_api_port"],
        *(int(s["upstream"].rsplit(":", 1)[1]) for s in spec["services"]),
    }
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    for line in listening.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        if int(port) in internal:
            assert host in ("127.0.0.1", "[::1]"), f"internal port {port} is bound on {host}"
    # The configuration never binds internals beyond loopback, whatever --host says.
    from traitlets.config import Config

    from pachon.hub.config import configure

    c = Config()
    configure(c, running_platform.repo / "state" / "hub" / "platform.json")
    assert c.JupyterHub.hub_bind_url.startswith("http://127.0.0.1:")
    assert c.ConfigurableHTTPProxy.api_url.startswith("http://127.0.0.1:")


# Accounts ------------------------------------------------------------------------------------
def test_signup_needs_approval_and_passwords_are_never_logged(running_platform: RunningPlatform) -> None:
    name = "signup" + uuid.uuid4().hex[:6]
    password = "Pw-" + uuid.uuid4().hex
    _signup(running_platform, name, password)
    # Not approved yet: login fails.
    with httpx.Client(base_url=running_platform.url, follow_redirects=True, timeout=30) as client:
        xsrf = xsrf_token(client, "/hub/login")
        response = client.post("/hub/login", data={"username": name, "password": password, "_xsrf": xsrf})
        assert "not been authorized" in response.text or "/hub/login" in str(response.url)
    # The admin approves (the page NativeAuthenticator serves at /hub/authorize/<name>).
    admin = _login(running_platform, ADMIN, ADMIN_PASSWORD)
    assert admin.get(f"/hub/authorize/{name}").status_code == 200
    user = _login(running_platform, name, password)
    assert user.get("/hub/api/user").json()["name"] == name if user.cookies else True
    home = user.get("/hub/home")
    assert home.status_code == 200 and name in home.text
    time.sleep(0.5)
    logs = running_platform.logs()
    assert password not in logs
    assert ADMIN_PASSWORD not in logs


def test_cli_user_add_then_login(running_platform: RunningPlatform) -> None:
    running_platform.cli("user", "add", "cliuser", "--password-stdin", stdin="cli-user-pw-1\n")
    client = _login(running_platform, "cliuser", "cli-user-pw-1")
    assert "cliuser" in client.get("/hub/home").text
    assert "cli-user-pw-1" not in running_platform.logs()


def test_token_carries_the_requested_scopes(running_platform: RunningPlatform) -> None:
    running_platform.add_user("scoped", "scoped-user-pw")
    token = running_platform.cli("token", "create", "scoped", "--scopes", "custom:alerts:read").splitlines()[
        -1
    ]
    me = httpx.get(
        f"{running_platform.url}/hub/api/user", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert me.status_code == 200
    assert "custom:alerts:read" in me.json()["scopes"]
    assert "custom:tap:read" not in me.json()["scopes"]
    full = running_platform.token("scoped")
    scopes = httpx.get(
        f"{running_platform.url}/hub/api/user", headers={"Authorization": f"Bearer {full}"}, timeout=10
    ).json()["scopes"]
    assert {"custom:tap:read", "custom:userdb:write", "custom:alerts:read"} <= set(scopes)
    # `pachon token list` shows the ids (never the secrets); `pachon token revoke` kills one at once.
    listing = running_platform.cli("token", "list", "scoped")
    assert token not in listing
    token_id = me.json()["token_id"]
    assert token_id in listing
    running_platform.cli("token", "revoke", "scoped", token_id)
    gone = httpx.get(
        f"{running_platform.url}/hub/api/user", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert gone.status_code in (401, 403)


# TAP behind the hub ----------------------------------------------------------------------------
def test_tap_vosi_is_anonymous(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    for path in ("availability", "capabilities"):
        response = httpx.get(f"{running_platform.url}/services/tap/{path}", timeout=30)
        assert response.status_code == 200, (path, response.text[:300])
    caps = httpx.get(f"{running_platform.url}/services/tap/capabilities", timeout=30).text
    assert f">{running_platform.url}/services/tap" in caps
    assert f">{running_platform.url}/tap" not in caps


def test_tap_without_token_is_401(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    response = _sync(running_platform, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert _sync(running_platform, "not-a-token").status_code == 401


def test_tap_with_wrong_scope_is_403(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    running_platform.add_user("noscope", "noscope-user-pw")
    response = _sync(running_platform, running_platform.token("noscope", "custom:alerts:read"))
    assert response.status_code == 403
    assert "custom:tap:read" in response.text


def test_tap_with_scope_returns_rows(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    running_platform.add_user("reader", "reader-user-pw")
    response = _sync(running_platform, running_platform.token("reader", "custom:tap:read"))
    assert response.status_code == 200, response.text[:500]
    from astropy.io.votable import parse_single_table

    table = parse_single_table(io.BytesIO(response.content)).to_table()
    assert len(table) == 3 and "table_name" in table.colnames


def test_pachon_client_tap_outside_notebooks(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    running_platform.add_user("pyvouser", "pyvo-user-pw")
    import pachon.client

    service = pachon.client.tap(
        url=f"{running_platform.url}/services/tap", token=running_platform.token("pyvouser")
    )
    table = service.search(QUERY).to_table()
    assert len(table) >= 1


def test_revoked_token_is_refused_within_seconds(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    running_platform.add_user("revoker", "revoker-user-pw")
    with running_platform.admin_client() as hub:
        record = hub.create_token("revoker", scopes=["custom:tap:read"], note="to revoke")
        assert _sync(running_platform, record["token"]).status_code == 200
        hub.revoke_token("revoker", record["id"])
    revoked_at = time.monotonic()
    while time.monotonic() - revoked_at < 15:
        if _sync(running_platform, record["token"]).status_code == 401:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - revoked_at
    assert _sync(running_platform, record["token"]).status_code == 401
    assert elapsed < 10, f"revoked token still worked for {elapsed:.1f} s"


def _owned_job(platform: RunningPlatform) -> tuple[str, dict[str, str], dict[str, str]]:
    platform.add_user("owner", "owner-user-pw")
    platform.add_user("intruder", "intruder-user-pw")
    owner = {"Authorization": f"Bearer {platform.token('owner', 'custom:tap:read')}"}
    intruder = {"Authorization": f"Bearer {platform.token('intruder', 'custom:tap:read')}"}
    created = httpx.post(
        f"{platform.url}/services/tap/async", data={"LANG": "ADQL", "QUERY": QUERY}, headers=owner, timeout=30
    )
    assert created.status_code in (200, 303), created.text[:300]
    job_id = (created.headers.get("location") or "").rstrip("/").rsplit("/", 1)[-1]
    assert job_id
    return f"{platform.url}/services/tap/async/{job_id}", owner, intruder


def test_other_users_job_is_out_of_reach(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    job_url, owner, intruder = _owned_job(running_platform)
    job_id = job_url.rsplit("/", 1)[-1]
    assert httpx.get(job_url, headers=owner, timeout=30).status_code == 200
    for method in ("GET", "DELETE"):
        response = httpx.request(method, job_url, headers=intruder, timeout=30)
        assert response.status_code == 404, (method, response.status_code)
        assert "<uws:job" not in response.text
    for suffix in ("/results", "/parameters", "/phase"):
        assert httpx.get(job_url + suffix, headers=intruder, timeout=30).status_code == 404
    listing = httpx.get(f"{running_platform.url}/services/tap/async", headers=intruder, timeout=30)
    assert listing.status_code == 200 and job_id not in listing.text
    assert httpx.get(job_url, headers=owner, timeout=30).status_code == 200  # DELETE did not destroy it


def test_other_users_job_is_404(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    job_url, _owner, intruder = _owned_job(running_platform)
    assert httpx.get(job_url, headers=intruder, timeout=30).status_code == 404


def test_browser_without_cookie_is_sent_to_hub_login(running_platform: RunningPlatform) -> None:
    running_platform.require_tap()
    response = httpx.get(
        f"{running_platform.url}/services/tap/async", headers={"Accept": "text/html"}, timeout=30
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith("/hub/api/oauth2/authorize?client_id=service-tap")


def test_crashed_service_is_restarted(running_platform: RunningPlatform) -> None:
    import os
    import signal

    state_file = running_platform.repo / "state" / "up.json"
    before = json.loads(state_file.read_text())["components"]["discovery"]
    os.kill(before["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = json.loads(state_file.read_text())["components"]["discovery"]
        if now["restarts"] >= 1 and now["pid"] != before["pid"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the discovery service was not restarted within 30 s")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{running_platform.url}/services/discovery/", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    assert httpx.get(f"{running_platform.url}/services/discovery/", timeout=5).status_code == 200
    assert "restarting" in (running_platform.log.read_text())
