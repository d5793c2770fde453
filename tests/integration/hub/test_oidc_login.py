"""Logging in through a real OpenID Connect provider (``hub.authenticator = "oauth"``).

The provider is ``oidc-provider-mock`` (PyPI; an OIDC OP built on Authlib and Flask, run here in a
thread on a loopback port): authorization-code flow, token endpoint, userinfo with custom claims.
``pachon up`` runs with ``GenericOAuthenticator`` pointed at it, and a client plays the browser:
``/hub/oauth_login`` → the provider's authorization form → ``/hub/oauth_callback`` → logged in.
Checks the user name claim, group-based admission (``allowed_groups``), admin mapping
(``admin_groups``) and that a member of no allowed group is refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fixtures.platform import pachon_up

from pachon.core.alerts.broker import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning"),  # inside the test provider
]

CLIENT_ID, CLIENT_SECRET = "pachon-hub", "oidc-test-secret-4b1d"


@pytest.fixture(scope="module")
def provider(require: Any) -> Iterator[str]:
    """The OpenID provider's base URL (its users are set with ``PUT /users/<sub>``)."""
    try:
        import oidc_provider_mock
        import werkzeug.serving
    except ImportError:
        require.missing("the Python package oidc-provider-mock", "pip install -e '.[test]'")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain http on loopback, in this process only
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def oauth_hub(provider: str) -> Iterator[tuple[str, Path]]:
    """`pachon up` with GenericOAuthenticator on ``provider``; yields (hub URL, repo)."""
    base = Path(tempfile.mkdtemp(prefix="pachon-oidc-"))
    repo, log = base / "repo", base / "up.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PACHON_HUB__SPAWNER": "simple",
        "PACHON_HUB__CULL_IDLE_S": "0",
        "PACHON_HUB__AUTHENTICATOR": "oauth",
        "PACHON_HUB__OAUTH__CLIENT_ID": CLIENT_ID,
        "PACHON_HUB__OAUTH__CLIENT_SECRET": CLIENT_SECRET,
        "PACHON_HUB__OAUTH__AUTHORIZE_URL": f"{provider}/oauth2/authorize",
        "PACHON_HUB__OAUTH__TOKEN_URL": f"{provider}/oauth2/token",
        "PACHON_HUB__OAUTH__USERDATA_URL": f"{provider}/userinfo",
        "PACHON_HUB__OAUTH__CALLBACK_URL": f"{url}/hub/oauth_callback",
        "PACHON_HUB__OAUTH__ALLOWED_GROUPS": '["astro"]',
        "PACHON_HUB__OAUTH__ADMIN_GROUPS": '["astro-admins"]',
    }
    subprocess.run([sys.executable, "-m", "pachon.cli", "repo", "create", str(repo)], check=True,
                   capture_output=True, timeout=120, env=env)  # fmt: skip
    try:
        with pachon_up(repo, port, env, log, what=" (OIDC)"):
            yield url, repo
    finally:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


def _oidc_login(hub_url: str, sub: str) -> tuple[httpx.Client, httpx.Response]:
    """Play the browser through the authorization-code flow as the provider's user ``sub``."""
    client = httpx.Client(timeout=60)
    start = client.get(f"{hub_url}/hub/oauth_login")
    assert start.status_code == 302, start.text[:300]
    authorize = start.headers["location"]
    assert authorize.split("?")[0].endswith("/oauth2/authorize") and "state=" in authorize
    form = client.get(authorize)
    assert form.status_code == 200 and 'name="sub"' in form.text
    granted = client.post(authorize, data={"sub": sub})  # the provider's "log in as" form
    assert granted.status_code == 302, granted.text[:300]
    callback = granted.headers["location"]
    assert callback.startswith(f"{hub_url}/hub/oauth_callback?") and "code=" in callback
    return client, client.get(callback)


def test_oidc_login_maps_name_groups_and_admin(provider: str, oauth_hub: tuple[str, Path]) -> None:
    hub_url, repo = oauth_hub
    people = {
        "carol-sub": {"preferred_username": "carol", "email": "carol@example.org", "groups": ["astro"]},
        "erin-sub": {"preferred_username": "erin", "groups": ["astro", "astro-admins"]},
        "dave-sub": {"preferred_username": "dave", "groups": ["other"]},
    }
    for sub, claims in people.items():
        assert httpx.put(f"{provider}/users/{quote(sub)}", json=claims, timeout=30).status_code == 204

    from pachon.hub.api import HubAdminClient

    # A member of an allowed group logs in under the name claim; the hub knows her groups.
    client, done = _oidc_login(hub_url, "carol-sub")
    assert done.status_code == 302, done.text[:500]
    assert "jupyterhub-session-id" in client.cookies or any("jupyterhub" in c for c in client.cookies)
    home = client.get(f"{hub_url}/hub/home")
    assert home.status_code == 200 and "carol" in home.text
    with HubAdminClient.for_repo(repo) as hub:
        carol = hub.user("carol")
        assert carol is not None and carol["admin"] is False and "astro" in carol["groups"]

    # A member of the admin group becomes an admin.
    _client, done = _oidc_login(hub_url, "erin-sub")
    assert done.status_code == 302
    with HubAdminClient.for_repo(repo) as hub:
        erin = hub.user("erin")
        assert erin is not None and erin["admin"] is True

    # A member of no allowed group is refused and gets no account.
    _client, refused = _oidc_login(hub_url, "dave-sub")
    assert refused.status_code == 403, refused.status_code
    with HubAdminClient.for_repo(repo) as hub:
        assert hub.user("dave") is None
    # The client secret never reaches the logs.
    logs = "".join(p.read_text(errors="replace") for p in (repo / "state" / "logs").glob("*.log"))
    assert CLIENT_SECRET not in logs
    assert re.search(r"carol", logs)  # the login itself is logged
