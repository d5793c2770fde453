"""Settings of the hub: authenticator, spawner, culling, OAuth (read from ``PACHON_HUB__*`` and ``[hub]``).

Why separate from :class:`pachon.core.settings.Settings`: the hub settings are only read by
``pachon up`` and the generated JupyterHub config, and they carry deployment secrets (an OIDC
client secret) that no service should load. They use the same sources as the main settings
(``PACHON_HUB__AUTHENTICATOR=oauth``, or the ``[hub]`` table of ``pachon.toml``).
"""

from __future__ import annotations

import os
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from pachon.core.settings import SettingsError, config_file

__all__ = ["HubSettings", "OAuthSettings", "load_hub_settings"]


class OAuthSettings(BaseModel):
    """A generic OpenID Connect / OAuth2 identity provider (oauthenticator's ``GenericOAuthenticator``)."""

    client_id: str = Field(default="", description="Client id registered at the identity provider.")
    client_secret: str = Field(default="", description="Client secret (keep it out of version control).")
    authorize_url: str = Field(default="", description="The provider's authorization endpoint.")
    token_url: str = Field(default="", description="The provider's token endpoint.")
    userdata_url: str = Field(default="", description="The provider's userinfo endpoint.")
    callback_url: str = Field(default="", description="https://HOST/hub/oauth_callback as registered.")
    username_claim: str = Field(default="preferred_username", description="Claim used as the user name.")
    scope: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    allowed_groups: list[str] = Field(default_factory=list, description="Groups allowed to log in.")
    admin_groups: list[str] = Field(default_factory=list, description="Groups whose members are admins.")
    claim_groups_key: str = Field(default="groups", description="Claim that lists the user's groups.")
    allow_all: bool = Field(default=False, description="Let every user of the provider log in.")


class HubSettings(BaseModel):
    """How the hub authenticates and spawns; defaults fit the embedded one-machine platform."""

    authenticator: Literal["native", "oauth"] = Field(
        default="native",
        description="native: sign-up with admin approval and hashed passwords in the hub database; "
        "oauth: a generic OpenID Connect provider (see [hub.oauth]).",
    )
    spawner: Literal["auto", "simple", "system"] = Field(
        default="auto",
        description="system: every account is a Unix user (LocalProcessSpawner; needs root; homes are "
        "private); simple: one shared Unix account, no isolation (SimpleLocalProcessSpawner); auto: system "
        "when running as root and a Python every user can run is found, else simple.",
    )
    home_root: str = Field(default="", description="Where single-user homes live; default <repo>/state/hub/homes "
                           "(simple) or /home/pachon (system).")  # fmt: skip
    user_python: str = Field(
        default="",
        description="system spawner: the interpreter (same Python version as Pachón, runnable by every user) "
        "the servers' user environment is made from; default this environment's base, else /usr/bin/python3.X.",
    )
    user_env_root: str = Field(
        default="",
        description="system spawner: where user environments are made; default /var/lib/pachon/user-python.",
    )
    cull_idle_s: int = Field(
        default=3600, ge=0, description="Stop servers idle this long; 0 disables culling."
    )
    cull_every_s: int = Field(default=300, gt=0, description="How often the idle culler looks.")
    auth_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="Seconds a service caches a token check (a revoked token works this long).",
    )
    minimum_password_length: int = Field(default=8, ge=1)
    open_signup: bool = Field(default=False, description="Approve sign-ups without an admin (native only).")
    spawn_timeout_s: int = Field(default=60, gt=0)
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)


def _env_overrides() -> dict[str, Any]:
    """``PACHON_HUB__X=..`` and ``PACHON_HUB__OAUTH__Y=..`` as a nested dict (lists as JSON or commas)."""
    import json

    out: dict[str, Any] = {}
    prefix = "PACHON_HUB__"
    for key, value in os.environ.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix) :].lower().split("__")
        target = out
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        parsed: Any = value
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
        target[parts[-1]] = parsed
    return out


def load_hub_settings(**overrides: Any) -> HubSettings:
    """The hub settings from ``[hub]`` in the config file, ``PACHON_HUB__*`` variables and arguments."""
    data: dict[str, Any] = {}
    path = config_file()
    if path is not None:
        with path.open("rb") as fh:
            data.update(tomllib.load(fh).get("hub", {}))
    for key, value in _env_overrides().items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    data.update(overrides)
    try:
        return HubSettings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "hub." + ".".join(str(p) for p in err.get("loc", ()))
        raise SettingsError(f"invalid setting {name} = {err.get('input')!r}: {err.get('msg')}") from None
