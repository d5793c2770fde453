"""Service-side authentication against JupyterHub: Bearer tokens for programs, OAuth cookies for browsers.

Every Pachón service runs behind the hub at ``/services/<name>/`` and trusts only the hub
(ARCHITECTURE.md, "Identity and access"). A request carries either

* ``Authorization: Bearer <token>`` (or ``token <token>``): a hub API token from the token
  page, ``pachon token create``, or a notebook's own ``JUPYTERHUB_API_TOKEN``; or
* the service's cookie, set after the browser went through the hub's OAuth login
  (``/hub/api/oauth2/authorize`` → ``<prefix>oauth_callback``).

The hub says who owns the token and which scopes it carries (``GET /hub/api/user``). The answer
is cached for :attr:`HubAuth.cache_ttl_s` seconds only (5 s by default, ``PACHON_HUB__AUTH_CACHE_S``),
so a revoked token stops working within seconds. Outcomes: no token → 401; unknown, expired or
revoked token → 401; a token without the required custom scope → 403.

Two ways to use it:

* :class:`HubAuthMiddleware` wraps any ASGI app: it enforces one scope on every path except the
  public ones (``availability``, ``capabilities``, ``health``…), runs the browser OAuth flow, and
  puts the :class:`HubIdentity` in ``request.state.hub_identity``;
* :func:`require_scope` is a FastAPI dependency for per-route checks.

The hub wiring (:mod:`pachon.hub.config`) sets the ``JUPYTERHUB_*`` variables that
:meth:`HubAuth.from_env` reads, and ``PACHON_SERVICE_AUTH=hub`` to say the service runs behind
the hub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import httpx
from fastapi import HTTPException, Request

from pachon.core.logging import get_logger

__all__ = [
    "HubAuth",
    "HubAuthMiddleware",
    "HubIdentity",
    "behind_hub",
    "get_hub_auth",
    "identity_of",
    "require_scope",
]

log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def behind_hub() -> bool:
    """True when this service process runs behind the hub (``PACHON_SERVICE_AUTH=hub``)."""
    return os.environ.get("PACHON_SERVICE_AUTH", "").lower() == "hub"


@dataclass(frozen=True)
class HubIdentity:
    """Who a request acts as, as the hub reported it for the presented token."""

    name: str
    kind: str = "user"
    scopes: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False
    groups: tuple[str, ...] = ()

    def has_scope(self, scope: str) -> bool:
        """True if the token holds ``scope`` (unfiltered, or filtered to this very user)."""
        return scope in self.scopes or f"{scope}!user={self.name}" in self.scopes


class HubAuth:
    """Checks hub tokens for one service, with a short cache, and speaks the hub's OAuth.

    Parameters
    ----------
    api_url
        The hub API on loopback, e.g. ``http://127.0.0.1:8081/hub/api``.
    api_token
        This service's own API token (its OAuth client secret).
    service_prefix
        The service's public path, e.g. ``/services/tap/``.
    client_id
        The service's OAuth client id (``service-<name>``).
    oauth_callback_url
        The redirect URI registered with the hub (``/services/tap/oauth_callback``).
    cache_ttl_s
        How long a token check is remembered; a revoked token keeps working at most this long.
    """

    def __init__(
        self,
        *,
        api_url: str,
        api_token: str,
        service_prefix: str,
        client_id: str,
        oauth_callback_url: str,
        hub_prefix: str = "/hub/",
        cache_ttl_s: float = 5.0,
        cache_max_entries: int = 10_000,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_token = api_token
        self.service_prefix = "/" + service_prefix.strip("/") + "/"
        self.client_id = client_id
        self.oauth_callback_url = oauth_callback_url
        self.hub_prefix = "/" + hub_prefix.strip("/") + "/"
        self.cache_ttl_s = cache_ttl_s
        self.cache_max_entries = cache_max_entries
        name = self.service_prefix.strip("/").split("/")[-1] or "service"
        self.cookie_name = f"pachon-{name}-token"
        self.state_cookie_name = f"pachon-{name}-oauth-state"
        self._cache: dict[str, tuple[float, HubIdentity | None]] = {}
        self._lock = threading.Lock()
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> HubAuth:
        """Build from the ``JUPYTERHUB_*`` variables the hub (or ``pachon up``) gives a service."""
        env = os.environ if environ is None else environ
        missing = [k for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN") if not env.get(k)]
        if missing:
            raise RuntimeError(
                f"hub authentication needs {', '.join(missing)} in the environment; run the service "
                "through `pachon up` (which sets them) or unset PACHON_SERVICE_AUTH to serve anonymously"
            )
        prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/services/service/")
        name = env.get("JUPYTERHUB_SERVICE_NAME") or prefix.strip("/").split("/")[-1]
        return cls(
            api_url=env["JUPYTERHUB_API_URL"],
            api_token=env["JUPYTERHUB_API_TOKEN"],
            service_prefix=prefix,
            client_id=env.get("JUPYTERHUB_CLIENT_ID", f"service-{name}"),
            oauth_callback_url=env.get(
                "JUPYTERHUB_OAUTH_CALLBACK_URL", prefix.rstrip("/") + "/oauth_callback"
            ),
            hub_prefix=env.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/",
            cache_ttl_s=float(env.get("PACHON_HUB__AUTH_CACHE_S", "5")),
        )

    # Token checks -------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(timeout=10.0)
        return self._client

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def _cached(self, key: str) -> tuple[bool, HubIdentity | None]:
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return False, None
            if hit[0] < time.monotonic():
                del self._cache[key]
                return False, None
            return True, hit[1]

    def _remember(self, key: str, identity: HubIdentity | None) -> None:
        with self._lock:
            if len(self._cache) >= self.cache_max_entries:
                now = time.monotonic()
                for stale in [k for k, (exp, _) in self._cache.items() if exp < now]:
                    del self._cache[stale]
                if len(self._cache) >= self.cache_max_entries:
                    self._cache.clear()
            self._cache[key] = (time.monotonic() + self.cache_ttl_s, identity)

    async def identify(self, token: str) -> HubIdentity | None:
        """The owner and scopes of ``token``, or None if the hub does not accept it."""
        key = self._key(token)
        hit, identity = self._cached(key)
        if hit:
            return identity
        try:
            response = await self._http().get(
                f"{self.api_url}/user", headers={"Authorization": f"token {token}"}
            )
        except httpx.HTTPError as exc:
            # The hub is down: fail closed, without caching, and say why in the log.
            log.error("cannot reach the hub at %s to check a token: %s", self.api_url, exc)
            raise HubUnavailableError(f"the hub at {self.api_url} does not answer") from exc
        if response.status_code in (401, 403, 404):
            identity = None
        elif response.status_code != 200:
            log.error("the hub answered HTTP %d to a token check", response.status_code)
            raise HubUnavailableError(f"the hub answered HTTP {response.status_code}")
        else:
            model = response.json()
            identity = HubIdentity(
                name=str(model.get("name", "")),
                kind=str(model.get("kind", "user")),
                scopes=frozenset(model.get("scopes") or ()),
                admin=bool(model.get("admin", False)),
                groups=tuple(model.get("groups") or ()),
            )
        self._remember(key, identity)
        return identity

    def forget(self) -> None:
        """Drop every cached token check (tests; after an operator revokes tokens in bulk)."""
        with self._lock:
            self._cache.clear()

    # OAuth (browsers) ---------------------------------------------------------------------------
    def authorize_url(self, state: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.oauth_callback_url,
                "response_type": "code",
                "state": state,
            }
        )
        return f"{self.hub_prefix}api/oauth2/authorize?{query}"

    async def exchange_code(self, code: str) -> str:
        """Trade the OAuth code for an access token (the service's API token is its client secret)."""
        response = await self._http().post(
            f"{self.api_url}/oauth2/token",
            data={
                "client_id": self.client_id,
                "client_secret": self.api_token,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.oauth_callback_url,
            },
        )
        if response.status_code != 200:
            raise PermissionError(f"the hub refused the OAuth code (HTTP {response.status_code})")
        return str(response.json()["access_token"])

    def sign(self, value: str) -> str:
        """HMAC-sign a small value with the service token (the OAuth state cookie)."""
        mac = hmac.new(self.api_token.encode(), value.encode(), hashlib.sha256).hexdigest()
        return f"{value}.{mac}"

    def unsign(self, signed: str) -> str | None:
        value, _, mac = signed.rpartition(".")
        expected = hmac.new(self.api_token.encode(), value.encode(), hashlib.sha256).hexdigest()
        return value if value and hmac.compare_digest(mac, expected) else None


class HubUnavailableError(RuntimeError):
    """The hub could not be asked about a token (the service answers 503, never lets the request in)."""


_default_auth: HubAuth | None = None


def get_hub_auth() -> HubAuth:
    """The process-wide :class:`HubAuth` built from the environment on first use."""
    global _default_auth
    if _default_auth is None:
        _default_auth = HubAuth.from_env()
    return _default_auth


def _token_from_headers(headers: Iterable[tuple[bytes, bytes]], cookie_name: str) -> tuple[str | None, bool]:
    """(token, from_cookie) from the Authorization header or the service cookie."""
    cookie_token: str | None = None
    for key, value in headers:
        if key == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() in ("bearer", "token") and credential.strip():
                return credential.strip(), False
        elif key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is treated as no cookie
                continue
            if cookie_name in jar:
                cookie_token = jar[cookie_name].value
    return cookie_token, cookie_token is not None


def identity_of(request: Any) -> HubIdentity | None:
    """The :class:`HubIdentity` the middleware attached to a Starlette/FastAPI request, if any."""
    state = getattr(request, "state", None)
    return getattr(state, "hub_identity", None) if state is not None else None


class HubAuthMiddleware:
    """ASGI middleware: hub login for every path of a service except the public ones.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    auth
        The token checker; default :func:`get_hub_auth` (from the environment).
    required_scope
        Scope every non-public request needs (``custom:tap:read``).
    public_paths
        Path suffixes (relative to the service root) open to anonymous requests, e.g.
        ``{"availability", "capabilities", "health"}``. A request to them that does carry a
        valid token still gets its identity attached.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        required_scope: str,
        public_paths: Iterable[str] = ("availability", "capabilities", "health"),
        auth: HubAuth | None = None,
    ) -> None:
        self.app = app
        self.required_scope = required_scope
        self.public_paths = {p.strip("/") for p in public_paths}
        self._auth = auth

    @property
    def auth(self) -> HubAuth:
        if self._auth is None:
            self._auth = get_hub_auth()
        return self._auth

    def _relative(self, path: str) -> str:
        prefix = self.auth.service_prefix
        if path.startswith(prefix):
            return path[len(prefix) :].strip("/")
        return path.strip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        auth = self.auth
        relative = self._relative(scope.get("path", ""))
        if relative == "oauth_callback":
            await self._oauth_callback(scope, send)
            return
        token, from_cookie = _token_from_headers(scope.get("headers", []), auth.cookie_name)
        identity: HubIdentity | None = None
        if token:
            try:
                identity = await auth.identify(token)
            except HubUnavailableError as exc:
                await _respond(send, 503, f"login cannot be checked now: {exc}; try again shortly\n")
                return
        is_public = relative in self.public_paths
        if not is_public:
            if identity is None:
                if _wants_html(scope):
                    await self._start_login(scope, send)
                    return
                why = "the token is not valid (expired or revoked)" if token else "no token"
                await _respond(
                    send, 401,
                    f"authentication required ({why}): send 'Authorization: Bearer <token>' with a token "
                    "from the hub's token page (/hub/token), or log in through the hub\n",
                    extra_headers=[(b"www-authenticate", b'Bearer realm="pachon"')]
                    + ([_expire_cookie(auth.cookie_name, auth.service_prefix)] if from_cookie else []),
                )  # fmt: skip
                return
            if not identity.has_scope(self.required_scope):
                await _respond(
                    send, 403,
                    f"forbidden: the token of {identity.name!r} lacks the scope {self.required_scope!r}; "
                    "create a token that includes it\n",
                )  # fmt: skip
                return
        # Identity comes only from the hub: drop any identity header a client tried to smuggle in.
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k not in _IDENTITY_HEADERS]
        state = scope.setdefault("state", {})
        state["hub_identity"] = identity
        await self.app(scope, receive, send)

    async def _start_login(self, scope: Scope, send: Send) -> None:
        auth = self.auth
        path = scope.get("root_path", "") + scope.get("path", "/")
        query = scope.get("query_string", b"").decode("latin-1")
        next_url = path + ("?" + query if query else "")
        nonce = secrets.token_urlsafe(16)
        payload = base64.urlsafe_b64encode(json.dumps({"n": nonce, "next": next_url}).encode()).decode()
        cookie = (
            f"{auth.state_cookie_name}={auth.sign(payload)}; Path={auth.service_prefix}; HttpOnly; "
            "SameSite=Lax; Max-Age=600"
        )
        await _respond(
            send, 302, "redirecting to the hub's login\n",
            extra_headers=[(b"location", auth.authorize_url(nonce).encode()), (b"set-cookie", cookie.encode())],
        )  # fmt: skip

    async def _oauth_callback(self, scope: Scope, send: Send) -> None:
        auth = self.auth
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        code = (params.get("code") or [""])[0]
        state = (params.get("state") or [""])[0]
        jar: SimpleCookie = SimpleCookie()
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                try:
                    jar.load(value.decode("latin-1"))
                except Exception:
                    continue
        signed = jar[auth.state_cookie_name].value if auth.state_cookie_name in jar else ""
        payload = auth.unsign(signed) if signed else None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode())) if payload else None
        except ValueError:
            data = None
        if not code or data is None or not hmac.compare_digest(str(data.get("n", "")), state):
            await _respond(send, 400, "OAuth state does not match: start again from the service's page\n")
            return
        try:
            token = await auth.exchange_code(code)
        except (PermissionError, httpx.HTTPError) as exc:
            await _respond(send, 403, f"login failed: {exc}\n")
            return
        next_url = str(data.get("next") or auth.service_prefix)
        if not next_url.startswith("/") or next_url.startswith("//"):
            next_url = auth.service_prefix  # never redirect off-site
        cookie = f"{auth.cookie_name}={token}; Path={auth.service_prefix}; HttpOnly; SameSite=Lax"
        await _respond(
            send, 302, "logged in\n",
            extra_headers=[
                (b"location", quote(next_url, safe="/?=&%:;,+@!$'()*~").encode()),
                (b"set-cookie", cookie.encode()),
                _expire_cookie(auth.state_cookie_name, auth.service_prefix),
            ],
        )  # fmt: skip


_IDENTITY_HEADERS = {b"x-forwarded-user", b"x-auth-request-user", b"remote-user"}


def _wants_html(scope: Scope) -> bool:
    if scope.get("type") != "http" or scope.get("method") != "GET":
        return False
    for key, value in scope.get("headers", []):
        if key == b"accept":
            return b"text/html" in value
    return False


def _expire_cookie(name: str, path: str) -> tuple[bytes, bytes]:
    return b"set-cookie", f"{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax".encode()


async def _respond(
    send: Send, status: int, body: str, extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = body.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": data})


def require_scope(scope_name: str) -> Callable[..., Awaitable[HubIdentity]]:
    """A FastAPI dependency: the caller's :class:`HubIdentity`, or 401/403 (per-route checks).

    Example::

        @router.get("/mine")
        async def mine(user: HubIdentity = Depends(require_scope("custom:alerts:read"))): ...
    """

    async def dependency(request: Request) -> HubIdentity:
        identity = identity_of(request)
        if identity is None:
            auth = get_hub_auth()
            token, _ = _token_from_headers(request.scope.get("headers", []), auth.cookie_name)
            if token:
                try:
                    identity = await auth.identify(token)
                except HubUnavailableError as exc:
                    raise HTTPException(503, f"login cannot be checked now: {exc}") from None
        if identity is None:
            raise HTTPException(
                401, "authentication required", headers={"WWW-Authenticate": 'Bearer realm="pachon"'}
            )
        if not identity.has_scope(scope_name):
            raise HTTPException(403, f"forbidden: the token lacks the scope {scope_name!r}")
        return identity

    return dependency
