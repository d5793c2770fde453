"""pachon.core.auth against a fake hub API: 401/403, cache lifetime, OAuth state, header hygiene."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from pachon.core.auth import HubAuth, HubAuthMiddleware, HubIdentity, identity_of
from pachon.hub.tap_runner import PrefixRewrite

TOKENS: dict[str, dict[str, Any]] = {
    "good": {"name": "alice", "kind": "user", "scopes": ["custom:tap:read", "read:users:name!user=alice"]},
    "alerts-only": {"name": "bob", "kind": "user", "scopes": ["custom:alerts:read"]},
}


class FakeHub:
    """Answers GET /hub/api/user like JupyterHub does, counting calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.revoked: set[str] = set()

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            form = dict(x.split("=") for x in request.content.decode().split("&"))
            if form.get("code") == "good-code" and form.get("client_secret") == "svc-token":
                return httpx.Response(200, json={"access_token": "good", "token_type": "Bearer"})
            return httpx.Response(400, json={"error": "invalid_grant"})
        self.calls += 1
        token = request.headers["authorization"].split(" ", 1)[1]
        if token in TOKENS and token not in self.revoked:
            return httpx.Response(200, json=TOKENS[token])
        return httpx.Response(403, json={"message": "invalid token"})


def _auth(hub: FakeHub, ttl: float = 5.0) -> HubAuth:
    auth = HubAuth(
        api_url="http://hub.invalid/hub/api",
        api_token="svc-token",
        service_prefix="/services/tap/",
        client_id="service-tap",
        oauth_callback_url="/services/tap/oauth_callback",
        cache_ttl_s=ttl,
    )
    auth._client = httpx.AsyncClient(transport=httpx.MockTransport(hub.handler))
    return auth


def _app(auth: HubAuth) -> TestClient:
    inner = FastAPI()

    @inner.get("/tap/availability")
    def availability(request: Request) -> dict[str, Any]:
        identity = identity_of(request)
        return {"ok": True, "user": identity.name if identity else None}

    @inner.get("/tap/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        identity = identity_of(request)
        assert identity is not None
        return {"name": identity.name, "forwarded": request.headers.get("x-forwarded-user")}

    app = HubAuthMiddleware(
        PrefixRewrite(inner, public_prefix="/services/tap", app_prefix="/tap"),
        required_scope="custom:tap:read",
        public_paths=("availability",),
        auth=auth,
    )
    return TestClient(app)  # type: ignore[arg-type]


def test_no_token_is_401_with_bearer_challenge() -> None:
    client = _app(_auth(FakeHub()))
    response = client.get("/services/tap/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="pachon"'
    assert "/hub/token" in response.text


def test_invalid_token_is_401() -> None:
    client = _app(_auth(FakeHub()))
    assert client.get("/services/tap/whoami", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_wrong_scope_is_403_naming_the_scope() -> None:
    client = _app(_auth(FakeHub()))
    response = client.get("/services/tap/whoami", headers={"Authorization": "Bearer alerts-only"})
    assert response.status_code == 403
    assert "custom:tap:read" in response.text and "bob" in response.text


def test_good_token_reaches_the_app_as_the_hub_user() -> None:
    client = _app(_auth(FakeHub()))
    for scheme in ("Bearer", "token"):
        response = client.get("/services/tap/whoami", headers={"Authorization": f"{scheme} good"})
        assert response.status_code == 200
        assert response.json()["name"] == "alice"


def test_identity_headers_from_clients_are_dropped() -> None:
    client = _app(_auth(FakeHub()))
    response = client.get(
        "/services/tap/whoami", headers={"Authorization": "Bearer good", "X-Forwarded-User": "mallory"}
    )
    assert response.json() == {"name": "alice", "forwarded": None}


def test_public_paths_are_anonymous_but_still_identify() -> None:
    client = _app(_auth(FakeHub()))
    assert client.get("/services/tap/availability").json() == {"ok": True, "user": None}
    who = client.get("/services/tap/availability", headers={"Authorization": "Bearer good"}).json()
    assert who["user"] == "alice"
    # Suffix tricks are not public: only the exact service-relative path is.
    assert client.get("/services/tap/whoami/availability").status_code == 401


def test_cache_hides_revocation_only_for_its_lifetime() -> None:
    hub = FakeHub()
    auth = _auth(hub, ttl=0.5)

    async def scenario() -> None:
        assert (await auth.identify("good")) is not None
        assert (await auth.identify("good")) is not None
        assert hub.calls == 1  # second answer from the cache
        hub.revoked.add("good")
        assert (await auth.identify("good")) is not None  # still cached
        await asyncio.sleep(0.6)
        assert (await auth.identify("good")) is None
        assert hub.calls == 2

    asyncio.run(scenario())


def test_cache_is_bounded() -> None:
    hub = FakeHub()
    auth = _auth(hub)
    auth.cache_max_entries = 3

    async def scenario() -> None:
        for i in range(10):
            await auth.identify(f"unknown-{i}")
        assert len(auth._cache) <= 3

    asyncio.run(scenario())


def test_browser_is_redirected_to_hub_oauth_and_back() -> None:
    hub = FakeHub()
    client = _app(_auth(hub))
    first = client.get("/services/tap/whoami?x=1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert first.status_code == 302
    location = first.headers["location"]
    assert location.startswith("/hub/api/oauth2/authorize?client_id=service-tap")
    state = httpx.URL(location).params["state"]
    # A forged state is refused.
    bad = client.get("/services/tap/oauth_callback?code=good-code&state=forged", follow_redirects=False)
    assert bad.status_code == 400
    back = client.get(f"/services/tap/oauth_callback?code=good-code&state={state}", follow_redirects=False)
    assert back.status_code == 302
    assert back.headers["location"] == "/services/tap/whoami?x=1"
    assert "pachon-tap-token=good" in back.headers["set-cookie"]
    # The cookie now logs the browser in.
    client.cookies.set("pachon-tap-token", "good", path="/services/tap/")
    assert client.get("/services/tap/whoami").json()["name"] == "alice"


def test_signed_values_detect_tampering() -> None:
    auth = _auth(FakeHub())
    signed = auth.sign("payload")
    assert auth.unsign(signed) == "payload"
    assert auth.unsign(signed[:-1] + ("0" if signed[-1] != "0" else "1")) is None
    assert auth.unsign("payload") is None


def test_hub_down_fails_closed_with_503() -> None:
    auth = _auth(FakeHub())

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    auth._client = httpx.AsyncClient(transport=httpx.MockTransport(broken))
    client = _app(auth)
    assert client.get("/services/tap/whoami", headers={"Authorization": "Bearer good"}).status_code == 503


def test_identity_scope_filter_for_self() -> None:
    identity = HubIdentity(name="alice", scopes=frozenset({"custom:tap:read!user=alice"}))
    assert identity.has_scope("custom:tap:read")
    assert not HubIdentity(name="bob", scopes=frozenset({"custom:tap:read!user=alice"})).has_scope(
        "custom:tap:read"
    )


def test_from_env_requires_the_hub_variables() -> None:
    with pytest.raises(RuntimeError, match="JUPYTERHUB_API_URL"):
        HubAuth.from_env({})
    auth = HubAuth.from_env(
        {
            "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
            "JUPYTERHUB_API_TOKEN": "t",
            "JUPYTERHUB_SERVICE_PREFIX": "/services/alerts/",
            "PACHON_HUB__AUTH_CACHE_S": "1.5",
        }
    )
    assert auth.client_id == "service-alerts"
    assert auth.oauth_callback_url == "/services/alerts/oauth_callback"
    assert auth.cookie_name == "pachon-alerts-token"
    assert auth.cache_ttl_s == 1.5


def test_require_scope_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    import pachon.core.auth as auth_module
    from pachon.core.auth import require_scope

    hub = FakeHub()
    monkeypatch.setattr(auth_module, "_default_auth", _auth(hub))
    app = FastAPI()

    @app.get("/mine")
    def mine(user: HubIdentity = Depends(require_scope("custom:tap:read"))) -> dict[str, str]:
        return {"name": user.name}

    client = TestClient(app)
    assert client.get("/mine").status_code == 401
    assert client.get("/mine", headers={"Authorization": "Bearer alerts-only"}).status_code == 403
    assert client.get("/mine", headers={"Authorization": "Bearer good"}).json() == {"name": "alice"}


def test_tap_current_user_behind_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behind the hub the TAP user is the hub's identity, else anonymous; an identity header is never trusted."""
    from types import SimpleNamespace

    from starlette.requests import Request as StarletteRequest

    from pachon.services.tap.dependencies import current_user
    from pachon.services.tap.models.user import ANONYMOUS

    process = SimpleNamespace(config=SimpleNamespace(anonymous=False))
    smuggled = {"type": "http", "headers": [(b"x-forwarded-user", b"mallory")], "state": {}}
    monkeypatch.setenv("PACHON_SERVICE_AUTH", "hub")
    assert current_user(StarletteRequest(smuggled), process) == ANONYMOUS  # type: ignore[arg-type]
    signed_in = {"type": "http", "headers": [], "state": {"hub_identity": HubIdentity(name="alice")}}
    assert current_user(StarletteRequest(signed_in), process).name == "alice"  # type: ignore[arg-type]
