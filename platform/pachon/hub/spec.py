"""What ``pachon up`` decided (ports, services, paths), shared by the hub config, discovery and the CLI.

Why a file: the JupyterHub config runs in the hub's own process, the discovery service in
another, and ``pachon token``/``pachon status`` in a third; ``pachon up`` writes one JSON
document (``<repo>/state/hub/platform.json``) and everyone reads it, so the facts cannot drift.
Secrets are *not* in it (see :mod:`pachon.hub.secrets`).
"""

from __future__ import annotations

import json
import os
import secrets as _secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HubSecrets",
    "PlatformSpec",
    "ServiceSpec",
    "hub_state_dir",
    "load_secrets",
    "load_spec",
    "save_secrets",
]


def hub_state_dir(repo: Path) -> Path:
    """``<repo>/state/hub``: the hub database, cookie secret, config, homes of the simple spawner."""
    return (repo / "state" / "hub").resolve()


@dataclass
class ServiceSpec:
    """One Pachón service behind the hub at ``/services/<name>/``."""

    name: str
    upstream: str
    """Loopback URL the proxy forwards to (``http://127.0.0.1:PORT``)."""
    description: str = ""
    standard_ids: list[str] = field(default_factory=list)
    """IVOA standard ids the service implements (for discovery)."""
    oauth_scopes: list[str] = field(default_factory=list)
    """Custom scopes a browser login to this service carries."""
    health_path: str = "health"
    """Path below the service root that answers 200 without login."""


@dataclass
class PlatformSpec:
    """Everything about the running platform that is not secret."""

    repo: str
    public_url: str
    """What a browser uses: ``http://HOST:PORT`` (no trailing slash)."""
    internal_url: str
    """What processes on this machine use (loopback when the public host is a wildcard)."""
    bind_host: str
    port: int
    hub_port: int
    proxy_api_port: int
    state_dir: str
    python: str
    proxy_command: list[str]
    services: list[ServiceSpec] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """:class:`pachon.hub.settings.HubSettings` as a dict."""
    version: str = ""
    spawner: str = ""
    """``system`` or ``simple`` as ``pachon up`` decided (empty: decide from the settings)."""
    user_python: str = ""
    """The interpreter servers run when it is not :attr:`python` (the system spawner's user environment)."""
    lab_settings_dir: str = ""
    """Folder with the platform's JupyterLab ``overrides.json``, readable by every server."""

    def service_url(self, name: str, *, internal: bool = False) -> str:
        base = self.internal_url if internal else self.public_url
        return f"{base}/services/{name}"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


def load_spec(path: Path) -> PlatformSpec:
    """Read ``platform.json``; a clear error names the file if it is missing or broken."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: start the platform with `pachon up` first") from None
    services = [ServiceSpec(**s) for s in data.pop("services", [])]
    return PlatformSpec(**data, services=services)


@dataclass
class HubSecrets:
    """Secrets of one platform installation, created once and kept (mode 600) in the hub state folder."""

    cookie_secret: str
    proxy_auth_token: str
    service_tokens: dict[str, str]

    def token(self, service: str) -> str:
        """The API token of a service, created on first use (the caller saves the secrets)."""
        if service not in self.service_tokens:
            self.service_tokens[service] = _secrets.token_hex(32)
        return self.service_tokens[service]


def load_secrets(state_dir: Path, *, create: bool = True) -> HubSecrets:
    """Read ``secrets.json`` or create it with fresh random values (never logged, owner-only)."""
    path = state_dir / "secrets.json"
    if path.exists():
        data = json.loads(path.read_text())
        return HubSecrets(**data)
    if not create:
        raise FileNotFoundError(f"{path} does not exist: start the platform with `pachon up` first")
    found = HubSecrets(
        cookie_secret=_secrets.token_hex(32), proxy_auth_token=_secrets.token_hex(32), service_tokens={}
    )
    save_secrets(state_dir, found)
    return found


def save_secrets(state_dir: Path, value: HubSecrets) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    path = state_dir / "secrets.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(value), fh)
    tmp.replace(path)
