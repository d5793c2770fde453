"""A small client of the hub's REST API acting as the operator (``pachon token``, ``pachon user``, tests).

It uses the ``pachon-admin`` service token from ``<repo>/state/hub/secrets.json`` (readable by
the account that ran ``pachon up`` only) and talks to the hub on loopback, never through the
public port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from pachon.hub.config import ADMIN_SERVICE
from pachon.hub.spec import hub_state_dir, load_secrets, load_spec

__all__ = ["HubAPIError", "HubAdminClient"]


class HubAPIError(RuntimeError):
    """The hub refused a request; the message carries its status and reason."""


class HubAdminClient:
    """Operator actions on a running hub."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"token {token}"})

    @classmethod
    def for_repo(cls, repo: Path) -> HubAdminClient:
        state = hub_state_dir(repo)
        spec = load_spec(state / "platform.json")
        secrets = load_secrets(state, create=False)
        return cls(f"http://127.0.0.1:{spec.hub_port}/hub/api", secrets.token(ADMIN_SERVICE))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubAdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, f"{self.api_url}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise HubAPIError(
                f"the hub at {self.api_url} does not answer ({exc}); is `pachon up` running?"
            ) from exc
        if response.status_code >= 400:
            try:
                reason = response.json().get("message", response.text)
            except ValueError:
                reason = response.text
            raise HubAPIError(f"{method} {path}: HTTP {response.status_code}: {reason}")
        return response.json() if response.content else None

    def user(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(self._call("GET", f"/users/{name}"))
        except HubAPIError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise

    def ensure_user(self, name: str, *, admin: bool | None = None) -> dict[str, Any]:
        """The hub's record of ``name``, created if needed; ``admin`` set when given."""
        found = self.user(name)
        if found is None:
            found = dict(self._call("POST", f"/users/{name}", json={"admin": bool(admin)}))
        elif admin is not None and bool(found.get("admin")) != admin:
            found = dict(self._call("PATCH", f"/users/{name}", json={"admin": admin}))
        return found

    def create_token(
        self, name: str, *, scopes: list[str] | None = None, note: str = "", expires_in: int | None = None
    ) -> dict[str, Any]:
        """A new API token owned by ``name`` (``scopes`` None: every permission the user has)."""
        self.ensure_user(name)
        body: dict[str, Any] = {"note": note or "pachon token create"}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in is not None:
            body["expires_in"] = expires_in
        return dict(self._call("POST", f"/users/{name}/tokens", json=body))

    def list_tokens(self, name: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/users/{name}/tokens")["api_tokens"])

    def revoke_token(self, name: str, token_id: str) -> None:
        self._call("DELETE", f"/users/{name}/tokens/{token_id}")

    def services(self) -> dict[str, dict[str, Any]]:
        """The hub's services (name → model; hub-managed ones carry their ``pid``)."""
        return dict(self._call("GET", "/services"))

    def start_server(self, name: str) -> None:
        self._call("POST", f"/users/{name}/server")

    def stop_server(self, name: str) -> None:
        self._call("DELETE", f"/users/{name}/server")
