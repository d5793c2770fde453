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
  700) when an admin approves the sign-up (and, for accounts made otherwise, at the first spawn),
  so one user cannot read another's home. Their servers run the *user environment* of
  :mod:`pachon.hub.userenv` (an interpreter every user can execute, seeing the project's
  packages), decided by ``pachon up`` and recorded in the spec. Otherwise
  ``SimpleLocalProcessSpawner``, which runs every server as the hub's own Unix user with no
  isolation — the banner of ``pachon up`` says so. Both are the subclasses of
  :mod:`pachon.hub.spawners`, which return from ``start()`` once the server listens (spawns
  are not slowed by the hub's poll back-off).
* **JupyterLab defaults** for every server (``overrides.json`` in a settings folder the servers
  can read, ``--LabApp.app_settings_dir``): no news prompt, no update checks.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
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
    "ensure_unix_user",
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


def system_spawner_problem(python: str | None = None) -> str | None:
    """Why servers of other Unix users cannot run ``python`` (None when they can).

    ``python`` None means this very interpreter and environment: a server spawned as another
    user then runs *this* Python, so every folder on the way to the interpreter and the
    environment must be searchable by others. A Python under a private home (pyenv in
    ``/root``, mode 700) is not; ``pachon up`` then prepares a user environment
    (:func:`pachon.hub.userenv.ensure_user_python`) and passes its interpreter here.
    """
    from pachon.hub.userenv import reach_problem

    targets = [Path(python)] if python else [Path(sys.executable), Path(sys.prefix)]
    for target in targets:
        problem = reach_problem(target)
        if problem is not None:
            return (
                f"other Unix users cannot run this Python ({problem}); install Pachón in a Python every user can run (e.g. under /opt), or install "
                f"the system's python{sys.version_info.major}.{sys.version_info.minor} so `pachon up` can "
                "prepare a user environment from it"
            )
    return None


def resolve_spawner(settings: HubSettings, *, python: str | None = None) -> str:
    """``system`` or ``simple`` for servers that would run ``python`` (None: this interpreter).

    ``auto`` means system when running as root *and* other Unix users can run that Python
    (see :func:`system_spawner_problem`), else simple (``pachon up`` then says why). An
    explicit ``system`` that cannot work is refused with the reason instead of failing at
    every spawn.
    """

    def problem() -> str | None:
        return system_spawner_problem(python) if python else system_spawner_problem()

    if settings.spawner == "auto":
        return "system" if os.geteuid() == 0 and problem() is None else "simple"
    if settings.spawner == "system":
        reason = problem()
        if reason is not None:
            raise SettingsError(f"invalid setting hub.spawner = 'system': {reason}")
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
    # Settings of the platform (catalog URL, limits) follow the hub into every server, but not
    # what is the platform's own: the hub's settings, the state database (TAP jobs, metrics) and any
    # URL that carries a password, since every user of the hub can read their server's environment.
    for key, value in os.environ.items():
        if key.startswith("PACHON_") and key not in env and not _private_setting(key, value):
            env[key] = value
    return env


_URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")


def _private_setting(key: str, value: str) -> bool:
    """Whether a ``PACHON_*`` variable must stay in the platform's processes, out of user servers."""
    return (
        key.startswith("PACHON_HUB__")
        or key == "PACHON_STATE_DB_URL"
        or bool(_URL_WITH_PASSWORD.match(value))
    )


def _uid_min() -> int:
    """The first uid of ordinary accounts (``UID_MIN`` of ``/etc/login.defs``, else 1000)."""
    try:
        for line in Path("/etc/login.defs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
                return int(parts[1])
    except OSError:
        pass
    return 1000


def ensure_unix_user(home_root: Path, name: str, log: Any = None) -> Path:
    """The Unix account of hub user ``name``, created with a private home (mode 700) if missing.

    Idempotent (the approval and every spawn call it). An existing *system* account (root,
    daemon, postgres, … : uid below ``UID_MIN``) is refused: a sign-up named ``root`` must never
    get a server running as root. Returns the home folder.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = home_root / name
        home_root.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
             "--comment", "Pachon user", name],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}") from None
        if log is not None:
            log.info("created Unix account %s with home %s", name, home)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0 or entry.pw_uid < _uid_min():
        raise RuntimeError(
            f"the hub user {name!r} is the system account {name!r} (uid {entry.pw_uid}); Pachón runs servers "
            f"only as ordinary accounts (uid >= {_uid_min()}): delete this hub user and choose another name"
        )
    home = Path(entry.pw_dir)
    if home.exists():
        os.chmod(home, 0o700)
    return home


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
    kind = spec.spawner or resolve_spawner(settings)
    python = spec.user_python or spec.python
    env: dict[str, Any] = dict(server_environment(spec))
    env["ACCESS_TOKEN"] = lambda spawner: spawner.api_token
    c.Spawner.cmd = [python, "-m", "pachon.hub.singleuser"]
    c.Spawner.default_url = "/lab"
    c.Spawner.start_timeout = settings.spawn_timeout_s
    c.Spawner.http_timeout = settings.spawn_timeout_s
    # The server's own token (JUPYTERHUB_API_TOKEN, ACCESS_TOKEN) may use every Pachón service.
    c.Spawner.server_token_scopes = [
        "access:servers!server", "users:activity!user", "read:users:name!user", *CUSTOM_SCOPES,
    ]  # fmt: skip
    # The Data panel's server half (pachon.extensions.lab) runs in every single-user server;
    # JupyterLab's defaults come from the platform's settings folder and it never phones home.
    args = [
        "--ServerApp.terminals_enabled=True",
        "--ServerApp.jpserver_extensions=pachon.extensions.lab=True",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
    ]
    if spec.lab_settings_dir:
        args.append(f"--LabApp.app_settings_dir={spec.lab_settings_dir}")
    if kind == "simple":
        c.JupyterHub.spawner_class = "pachon.hub.spawners.PachonSimpleLocalProcessSpawner"
        home_root = Path(settings.home_root) if settings.home_root else state / "homes"
        home_root.mkdir(parents=True, exist_ok=True)
        c.PachonSimpleLocalProcessSpawner.home_dir_template = str(home_root / "{username}")
        if os.geteuid() == 0:
            args.append("--allow-root")
    else:
        c.JupyterHub.spawner_class = "pachon.hub.spawners.PachonLocalProcessSpawner"
        home_root = Path(settings.home_root or "/home/pachon")
        # `python`, `pip list`, … in a user's terminal are the user environment's.
        env["PATH"] = f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin"

        def _hook(spawner: Any) -> Any:
            # In a worker thread: `useradd` would otherwise stall the hub's event loop, and with it
            # every other login and spawn (the hub awaits what the hook returns).
            return asyncio.to_thread(ensure_unix_user, home_root, spawner.user.name, spawner.log)

        def _approved(name: str) -> None:
            ensure_unix_user(home_root, name)

        c.Spawner.pre_spawn_hook = _hook
        c.PachonNativeAuthenticator.approval_hook = _approved
    c.Spawner.environment = env
    c.Spawner.args = args
