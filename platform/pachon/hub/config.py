"""The JupyterHub configuration of the embedded platform, applied to the hub's config object ``c``.

``pachon up`` writes ``<repo>/state/hub/jupyterhub_config.py`` containing only::

    from pachon.hub.config import configure
    configure(c, "<repo>/state/hub/platform.json")

so the real configuration is ordinary, tested Python, and the spec file says what this run
decided (ports, services). Choices and why:

* **Proxy**: configurable-http-proxy (npm, installed by ``scripts/build-platform-js``) bound to
  the public address; its REST API and the hub listen on loopback only, so the public port is
  the only thing reachable from outside (and it needs the proxy token anyway).
* **Services** (TAP, discovery, …) are *external* JupyterHub services (``url`` + ``api_token``),
  started and health-checked by ``pachon up``'s supervisor rather than by the hub: the supervisor
  restarts a crashed service with back-off and logs it, ``pachon status`` sees it, and a hub
  restart does not restart the services. The idle culler, which only matters while the hub
  runs, is a hub-managed service (``command``).
* **Accounts**: NativeAuthenticator (sign-up, admin approval at ``/hub/authorize``, bcrypt
  hashes in the hub database) by default; ``GenericOAuthenticator`` for an OIDC provider when
  ``hub.authenticator = "oauth"``.
* **Spawner**: as root, ``LocalProcessSpawner`` with a Unix account per user, created (home mode
  700) on the first spawn after approval, so one user cannot read another's home; otherwise
  ``SimpleLocalProcessSpawner``, which runs every server as the hub's own Unix user with no
  isolation — the banner of ``pachon up`` says so.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from pachon.core.settings import SettingsError
from pachon.hub.scopes import CUSTOM_SCOPES, roles
from pachon.hub.settings import HubSettings
from pachon.hub.spec import PlatformSpec, load_secrets, load_spec, save_secrets

__all__ = [
    "ADMIN_SERVICE",
    "CULLER_SERVICE",
    "USERNAME_PATTERN",
    "admins_file",
    "configure",
    "read_admins",
    "resolve_spawner",
    "server_environment",
]

ADMIN_SERVICE = "pachon-admin"
CULLER_SERVICE = "idle-culler"
USERNAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
"""Lower-case names that are also valid Unix user names (the system spawner creates them)."""


def admins_file(state_dir: Path) -> Path:
    """``admins.txt``: one admin user name a line, written by ``pachon user add --admin``."""
    return state_dir / "admins.txt"


def read_admins(state_dir: Path) -> set[str]:
    path = admins_file(state_dir)
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def system_spawner_problem() -> str | None:
    """Why per-user Unix accounts cannot run notebook servers here (None when they can).

    A server spawned as another Unix user runs *this* Python environment, so every folder
    on the way to the interpreter and the environment must be searchable by other users.
    A Python installed under a private home (e.g. pyenv in ``/root``, mode 700) is not,
    and every spawn would fail with "Permission denied".
    """
    for target in (Path(sys.executable), Path(sys.prefix)):
        for path in (Path(os.path.realpath(target)), *Path(os.path.realpath(target)).parents):
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                return f"cannot inspect {path} ({exc})"
            if not mode & stat.S_IXOTH:
                return (
                    f"other Unix users cannot reach this Python ({path} is mode {stat.S_IMODE(mode):o}); "
                    "install Pachón in a Python every user can run (e.g. under /opt) for per-user accounts"
                )
    return None


def resolve_spawner(settings: HubSettings) -> str:
    """``system`` or ``simple``.

    ``auto`` means system when running as root *and* other Unix users can run this Python
    (see :func:`system_spawner_problem`), else simple (``pachon up`` then says why). An
    explicit ``system`` that cannot work is refused with the reason instead of failing at
    every spawn.
    """
    if settings.spawner == "auto":
        return "system" if os.geteuid() == 0 and system_spawner_problem() is None else "simple"
    if settings.spawner == "system":
        problem = system_spawner_problem()
        if problem is not None:
            raise SettingsError(f"invalid setting hub.spawner = 'system': {problem}")
    return settings.spawner


def server_environment(spec: PlatformSpec) -> dict[str, str]:
    """Variables every single-user server (and so every kernel) gets, besides JupyterHub's own.

    ``pachon.client`` reads the ``PACHON_*`` ones; Rubin's ``lsst-rsp`` reads
    ``EXTERNAL_INSTANCE_URL``/``EXTERNAL_TAP_URL``/``TAP_ROUTE`` and the token in ``ACCESS_TOKEN``
    (set per server to its own API token in :func:`configure`), so ``lsst.rsp.get_tap_service``
    works unchanged where that package installs.
    """
    base = spec.internal_url
    env = {"PACHON_REPO": spec.repo, "PACHON_PLATFORM_URL": base, "EXTERNAL_INSTANCE_URL": base}
    for service in spec.services:
        env[f"PACHON_{service.name.upper()}_URL"] = f"{base}/services/{service.name}"
        env[f"EXTERNAL_{service.name.upper()}_URL"] = f"{base}/services/{service.name}"
        env[f"{service.name.upper()}_ROUTE"] = f"/services/{service.name}"
    env["PACHON_DISCOVERY_URL"] = f"{base}/services/discovery/"
    # Settings of the platform (catalog URL, limits) follow the hub into every server.
    for key, value in os.environ.items():
        if key.startswith("PACHON_") and not key.startswith("PACHON_HUB__") and key not in env:
            env[key] = value
    return env


def _ensure_unix_user(home_root: Path, spawner: Any) -> None:
    """Create the user's Unix account with a private home the first time they spawn."""
    name = spawner.user.name
    try:
        entry = pwd.getpwnam(name)
        home = Path(entry.pw_dir)
    except KeyError:
        home = home_root / name
        home_root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
             "--comment", "Pachon user", name],
            check=True, capture_output=True,
        )  # fmt: skip
        spawner.log.info("created Unix account %s with home %s", name, home)
    if home.exists():
        os.chmod(home, 0o700)


def configure(c: Any, spec_path: str | Path) -> None:
    """Apply the platform's configuration to JupyterHub's config object ``c``."""
    spec = load_spec(Path(spec_path))
    settings = HubSettings(**spec.settings)
    state = Path(spec.state_dir)
    secrets = load_secrets(state)

    # Network: public port via the proxy; hub and proxy API on loopback only.
    c.JupyterHub.bind_url = f"http://{spec.bind_host}:{spec.port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{spec.hub_port}"
    c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{spec.hub_port}"
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{spec.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = secrets.proxy_auth_token
    c.ConfigurableHTTPProxy.command = spec.proxy_command
    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.pid_file = str(state / "proxy.pid")
    c.ConfigurableHTTPProxy.debug = False

    # State: SQLite database and cookie secret under <repo>/state/hub.
    c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret = bytes.fromhex(secrets.cookie_secret)
    c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True

    # Scopes and roles.
    c.JupyterHub.custom_scopes = CUSTOM_SCOPES
    c.JupyterHub.load_roles = roles(
        admin_service=ADMIN_SERVICE, culler_service=CULLER_SERVICE if settings.cull_idle_s > 0 else None
    )

    # Services: ours behind /services/<name>/, the operator's CLI token, the idle culler.
    services: list[dict[str, Any]] = []
    for service in spec.services:
        entry: dict[str, Any] = {
            "name": service.name,
            "url": service.upstream,
            "api_token": secrets.token(service.name),
            "display": False,
            "oauth_no_confirm": True,
        }
        if service.oauth_scopes:
            entry["oauth_client_allowed_scopes"] = [
                f"access:services!service={service.name}",
                *service.oauth_scopes,
            ]
        services.append(entry)
    services.append({"name": ADMIN_SERVICE, "api_token": secrets.token(ADMIN_SERVICE)})
    if settings.cull_idle_s > 0:
        services.append(
            {
                "name": CULLER_SERVICE,
                "command": [
                    spec.python, "-m", "jupyterhub_idle_culler",
                    f"--timeout={settings.cull_idle_s}", f"--cull-every={settings.cull_every_s}",
                ],
            }
        )  # fmt: skip
    save_secrets(state, secrets)
    c.JupyterHub.services = services

    _configure_authenticator(c, settings, state)
    _configure_spawner(c, spec, settings, state)


def _configure_authenticator(c: Any, settings: HubSettings, state: Path) -> None:
    admins = read_admins(state)
    c.Authenticator.admin_users = admins
    if settings.authenticator == "native":
        import nativeauthenticator

        c.JupyterHub.authenticator_class = "pachon.hub.native.PachonNativeAuthenticator"
        c.JupyterHub.template_paths = [str(Path(nativeauthenticator.__file__).parent / "templates")]
        c.PachonNativeAuthenticator.open_signup = settings.open_signup
        c.PachonNativeAuthenticator.minimum_password_length = settings.minimum_password_length
        c.PachonNativeAuthenticator.check_common_password = True
        c.PachonNativeAuthenticator.allowed_failed_logins = 5
        c.PachonNativeAuthenticator.seconds_before_next_try = 60
        # Approval is NativeAuthenticator's gate; every approved account may log in.
        c.Authenticator.allow_all = True
        c.Authenticator.username_pattern = USERNAME_PATTERN
    else:
        oauth = settings.oauth
        c.JupyterHub.authenticator_class = "oauthenticator.generic.GenericOAuthenticator"
        g = c.GenericOAuthenticator
        g.client_id = oauth.client_id
        g.client_secret = oauth.client_secret
        g.authorize_url = oauth.authorize_url
        g.token_url = oauth.token_url
        g.userdata_url = oauth.userdata_url
        g.oauth_callback_url = oauth.callback_url
        g.username_claim = oauth.username_claim
        g.scope = oauth.scope
        g.claim_groups_key = oauth.claim_groups_key
        g.allowed_groups = set(oauth.allowed_groups)
        g.admin_groups = set(oauth.admin_groups)
        g.allow_all = oauth.allow_all
        g.manage_groups = bool(oauth.allowed_groups or oauth.admin_groups)


def _configure_spawner(c: Any, spec: PlatformSpec, settings: HubSettings, state: Path) -> None:
    kind = resolve_spawner(settings)
    env = server_environment(spec)
    c.Spawner.environment = {**env, "ACCESS_TOKEN": lambda spawner: spawner.api_token}
    c.Spawner.cmd = [spec.python, "-m", "jupyterhub.singleuser"]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = settings.spawn_timeout_s
    c.Spawner.http_timeout = settings.spawn_timeout_s
    # The server's own token (JUPYTERHUB_API_TOKEN, ACCESS_TOKEN) may use every Pachón service.
    c.Spawner.server_token_scopes = [
        "access:servers!server", "users:activity!user", "read:users:name!user", *CUSTOM_SCOPES,
    ]  # fmt: skip
    # The Data panel's server half (pachon.extensions.lab) runs in every single-user server.
    args = [
        "--ServerApp.terminals_enabled=True",
        "--ServerApp.jpserver_extensions=pachon.extensions.lab=True",
    ]
    if kind == "simple":
        c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
        home_root = Path(settings.home_root) if settings.home_root else state / "homes"
        home_root.mkdir(parents=True, exist_ok=True)
        c.SimpleLocalProcessSpawner.home_dir_template = str(home_root / "{username}")
        if os.geteuid() == 0:
            args.append("--allow-root")
    else:
        c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
        home_root = Path(settings.home_root or "/home/pachon")

        def _hook(spawner: Any) -> None:
            _ensure_unix_user(home_root, spawner)

        c.Spawner.pre_spawn_hook = _hook
    c.Spawner.args = args
