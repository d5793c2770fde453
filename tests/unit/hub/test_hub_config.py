"""The generated hub configuration, settings, discovery document, CLI accounts and client helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

from pachon.hub.config import configure, read_admins, server_environment
from pachon.hub.discovery import build_discovery, create_app
from pachon.hub.scopes import CUSTOM_SCOPES
from pachon.hub.settings import HubSettings, load_hub_settings
from pachon.hub.spec import PlatformSpec, ServiceSpec, load_secrets, load_spec


def _spec(tmp_path: Path, *, host: str = "127.0.0.1", **settings: object) -> Path:
    state = tmp_path / "state" / "hub"
    spec = PlatformSpec(
        repo=str(tmp_path),
        public_url=f"http://{host}:8000",
        internal_url="http://127.0.0.1:8000",
        bind_host=host,
        port=8000,
        hub_port=18081,
        proxy_api_port=18001,
        state_dir=str(state),
        python="/usr/bin/python3",
        proxy_command=["configurable-http-proxy"],
        services=[
            ServiceSpec(name="tap", upstream="http://127.0.0.1:18100", oauth_scopes=["custom:tap:read"]),
            ServiceSpec(name="discovery", upstream="http://127.0.0.1:18101"),
        ],
        settings=HubSettings(**settings).model_dump(),  # type: ignore[arg-type]
        version="0.0.test",
    )
    path = state / "platform.json"
    spec.save(path)
    return path


def test_config_binds_internals_to_loopback_even_on_a_public_host(tmp_path: Path) -> None:
    c = Config()
    configure(c, _spec(tmp_path, host="0.0.0.0"))
    assert c.JupyterHub.bind_url == "http://0.0.0.0:8000/"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:18081"
    assert c.ConfigurableHTTPProxy.api_url == "http://127.0.0.1:18001"
    assert len(c.ConfigurableHTTPProxy.auth_token) == 64


def test_config_declares_scopes_roles_and_services(tmp_path: Path) -> None:
    c = Config()
    configure(c, _spec(tmp_path))
    assert set(c.JupyterHub.custom_scopes) == set(CUSTOM_SCOPES)
    user_role = next(r for r in c.JupyterHub.load_roles if r["name"] == "user")
    assert {"self", "access:services", "custom:tap:read", "custom:alerts:read", "custom:userdb:write"} <= set(
        user_role["scopes"]
    )
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert services["tap"]["url"] == "http://127.0.0.1:18100"
    assert services["tap"]["oauth_client_allowed_scopes"] == [
        "access:services!service=tap",
        "custom:tap:read",
    ]
    assert "command" in services["idle-culler"] and "--timeout=3600" in services["idle-culler"]["command"]
    secrets = load_secrets(tmp_path / "state" / "hub", create=False)
    assert services["tap"]["api_token"] == secrets.service_tokens["tap"]
    assert (tmp_path / "state" / "hub" / "secrets.json").stat().st_mode & 0o077 == 0
    assert c.JupyterHub.db_url.startswith("sqlite:///") and "state/hub" in c.JupyterHub.db_url


def test_config_authenticators(tmp_path: Path) -> None:
    c = Config()
    configure(c, _spec(tmp_path))
    assert c.JupyterHub.authenticator_class == "pachon.hub.native.PachonNativeAuthenticator"
    assert c.PachonNativeAuthenticator.open_signup is False
    oauth = Config()
    configure(
        oauth,
        _spec(
            tmp_path / "o",
            authenticator="oauth",
            oauth={"client_id": "cid", "authorize_url": "https://idp/auth", "admin_groups": ["astro-admins"]},
        ),
    )
    assert oauth.JupyterHub.authenticator_class == "oauthenticator.generic.GenericOAuthenticator"
    assert oauth.GenericOAuthenticator.client_id == "cid"
    assert oauth.GenericOAuthenticator.admin_groups == {"astro-admins"}


def test_simple_spawner_has_private_state_homes_and_server_env(tmp_path: Path) -> None:
    c = Config()
    configure(c, _spec(tmp_path, spawner="simple"))
    assert c.JupyterHub.spawner_class == "pachon.hub.spawners.PachonSimpleLocalProcessSpawner"
    assert c.PachonSimpleLocalProcessSpawner.home_dir_template.endswith("state/hub/homes/{username}")
    env = c.Spawner.environment
    assert env["PACHON_TAP_URL"] == "http://127.0.0.1:8000/services/tap"
    assert env["EXTERNAL_TAP_URL"] == env["PACHON_TAP_URL"]
    assert env["TAP_ROUTE"] == "/services/tap"
    assert env["PACHON_DISCOVERY_URL"] == "http://127.0.0.1:8000/services/discovery/"

    class FakeSpawner:
        api_token = "server-token"

    assert env["ACCESS_TOKEN"](FakeSpawner()) == "server-token"
    assert "custom:tap:read" in c.Spawner.server_token_scopes


def test_system_spawner_creates_accounts_in_a_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pachon.hub.config as hub_config

    monkeypatch.setattr(hub_config, "system_spawner_problem", lambda: None)
    c = Config()
    configure(c, _spec(tmp_path, spawner="system"))
    assert c.JupyterHub.spawner_class == "pachon.hub.spawners.PachonLocalProcessSpawner"
    assert callable(c.Spawner.pre_spawn_hook)


def test_system_spawner_needs_a_python_other_users_can_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spawning as another Unix user runs this Python: under a private home (/root, 0700) every
    spawn would fail, so auto falls back to the shared account and an explicit choice is refused."""
    import pachon.hub.config as hub_config
    from pachon.core.settings import SettingsError

    private = tmp_path / "private"
    (private / "bin").mkdir(parents=True)
    python = private / "bin" / "python"
    python.write_text("")
    python.chmod(0o755)
    private.chmod(0o700)
    monkeypatch.setattr(hub_config.sys, "executable", str(python))
    problem = hub_config.system_spawner_problem()
    assert problem is not None and str(private) in problem and "700" in problem
    assert hub_config.resolve_spawner(HubSettings(spawner="auto")) == "simple"
    with pytest.raises(SettingsError, match="hub.spawner = 'system'"):
        hub_config.resolve_spawner(HubSettings(spawner="system"))
    private.chmod(0o755)
    monkeypatch.setattr(hub_config.sys, "prefix", str(private))
    assert hub_config.system_spawner_problem() is None or "private" not in hub_config.system_spawner_problem()


def test_hub_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHON_HUB__SPAWNER", "simple")
    monkeypatch.setenv("PACHON_HUB__OAUTH__CLIENT_ID", "abc")
    monkeypatch.setenv("PACHON_HUB__OAUTH__ALLOWED_GROUPS", '["astro"]')
    settings = load_hub_settings()
    assert settings.spawner == "simple"
    assert settings.oauth.client_id == "abc" and settings.oauth.allowed_groups == ["astro"]
    monkeypatch.setenv("PACHON_HUB__SPAWNER", "docker")
    from pachon.core.settings import SettingsError

    with pytest.raises(SettingsError, match="hub.spawner"):
        load_hub_settings()


def test_discovery_document(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path))
    doc = build_discovery(spec)
    assert doc["services"]["tap"]["url"] == "http://127.0.0.1:8000/services/tap"
    assert "ivo://ivoa.net/std/TAP" in doc["services"]["tap"]["standard_ids"]
    assert doc["datasets"]["dp1"]["services"]["tap"]["url"] == doc["services"]["tap"]["url"]
    from fastapi.testclient import TestClient

    client = TestClient(create_app(_spec(tmp_path)))
    for path in ("/services/discovery/", "/services/discovery/discovery", "/services/discovery/health"):
        assert client.get(path).status_code == 200


def test_server_environment_passes_pachon_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACHON_CATALOG_URL", "duckdb:///x")
    monkeypatch.setenv("PACHON_HUB__OAUTH__CLIENT_SECRET", "never-in-servers")
    env = server_environment(load_spec(_spec(tmp_path)))
    assert env["PACHON_CATALOG_URL"] == "duckdb:///x"
    assert not any(k.startswith("PACHON_HUB__") for k in env)


def test_server_environment_keeps_platform_secrets_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every user can read their server's environment: no state DB, no URL with a password."""
    monkeypatch.setenv("PACHON_STATE_DB_URL", "postgresql://pachon@db/state")
    monkeypatch.setenv("PACHON_BUTLER_REGISTRY_URL", "postgresql://butler:s3cret@db:5432/registry")
    monkeypatch.setenv("PACHON_KAFKA_BOOTSTRAP", "broker:9092")
    monkeypatch.setenv("PACHON_TAP__MAX_ROWS", "5000")
    env = server_environment(load_spec(_spec(tmp_path)))
    assert "PACHON_STATE_DB_URL" not in env
    assert "PACHON_BUTLER_REGISTRY_URL" not in env
    assert not any("s3cret" in v for v in env.values())
    assert env["PACHON_KAFKA_BOOTSTRAP"] == "broker:9092"
    assert env["PACHON_TAP__MAX_ROWS"] == "5000"


def test_user_add_stores_only_a_bcrypt_hash(tmp_path: Path) -> None:
    import sqlite3

    import bcrypt

    from pachon.hub.users import UserError, add_user, list_users

    state = tmp_path / "hub"
    assert add_user(state, "alice", "correct-horse", admin=True) == "created"
    assert add_user(state, "alice", "battery-staple") == "updated"
    assert list_users(state) == [("alice", True, True)]
    assert read_admins(state) == {"alice"}
    row = sqlite3.connect(state / "jupyterhub.sqlite").execute("select password from users_info").fetchone()
    assert b"battery-staple" not in row[0]
    assert bcrypt.checkpw(b"battery-staple", row[0])
    with pytest.raises(UserError, match="invalid user name"):
        add_user(state, "Bad Name", "long-enough-pw")
    with pytest.raises(UserError, match="too short"):
        add_user(state, "bob", "short")


def test_client_token_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    import pachon.client as client

    for key in ("PACHON_TOKEN", "ACCESS_TOKEN", "JUPYTERHUB_API_TOKEN", "PACHON_TAP_URL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(client.ClientConfigError, match="token page"):
        client.token()
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "jt")
    assert client.token() == "jt"
    assert client.token("explicit") == "explicit"
    monkeypatch.setenv("PACHON_TAP_URL", "http://127.0.0.1:1/services/tap/")
    assert client.service_url("tap") == "http://127.0.0.1:1/services/tap"


def test_culling_off_defines_neither_service_nor_role(tmp_path: Path) -> None:
    c = Config()
    configure(c, _spec(tmp_path, cull_idle_s=0))
    assert "idle-culler" not in {s["name"] for s in c.JupyterHub.services}
    assert "idle-culler" not in {r["name"] for r in c.JupyterHub.load_roles}
