"""What ``pachon up`` runs, and how it prepares the repo's catalog first.

Components (each a supervised child process; only the proxy binds the public address):

* ``tap``: the TAP service on the repo's catalog, on a loopback port, behind the hub at
  ``/services/tap`` with hub login (``custom:tap:read``; ``availability``/``capabilities``
  anonymous);
* ``discovery``: the anonymous service-discovery document at ``/services/discovery/``;
* ``hub``: JupyterHub (loopback port) which starts configurable-http-proxy on ``--host:--port``
  and the idle culler, with the config of :mod:`pachon.hub.config`.

All components start at once (their imports overlap); ``pachon up`` then waits until each is
healthy, services first, so the hub's proxy has somewhere to send ``/services/<name>/`` by the
time the platform is announced. Services only need the hub when a request arrives.

Before starting, the catalog gets the empty DP1 and ObsCore schemas (so TAP_SCHEMA shows
what a release will hold) and, when the repo holds simulator truth, the schema ``sim``
with the truth stars and galaxies, so there is something real to query before the first
data release is processed.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pachon.core.logging import get_logger
from pachon.hub.scopes import SERVICE_SCOPES
from pachon.hub.settings import HubSettings, load_hub_settings
from pachon.hub.spec import PlatformSpec, ServiceSpec, hub_state_dir, load_secrets, save_secrets
from pachon.up.supervisor import Component, PortInUseError, free_port, port_is_free

__all__ = ["PlatformPlan", "find_proxy", "plan_platform", "prepare_catalog"]

log = get_logger(__name__)

TRUTH_TABLES = {"truth_stars": "sim.truth_stars", "truth_galaxies": "sim.truth_galaxies"}
PROXY_BIN = (
    Path(__file__).resolve().parent.parent
    / "hub"
    / "proxy"
    / "node_modules"
    / ".bin"
    / "configurable-http-proxy"
)


@dataclass
class PlatformPlan:
    """The components to start and what to tell the user."""

    components: list[Component]
    catalog_url: str
    notes: list[str]
    spec: PlatformSpec | None = None
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Extra health checks shown by ``pachon status``: name → (public URL, health URL)."""


def catalog_url_for(repo: Path, explicit: str | None) -> str:
    return explicit or f"duckdb:///{(repo / 'catalog').resolve()}/"


def prepare_catalog(repo: Path, catalog_url: str) -> list[str]:
    """Create the standard schemas and publish simulator truth (idempotent); return what changed."""
    try:
        from pachon.core.catalog import open_catalog
    except ImportError as exc:
        log.warning("the catalog layer is not available (%s); serving the catalog as it is", exc)
        return []

    changed: list[str] = []
    (repo / "catalog").mkdir(parents=True, exist_ok=True)
    catalog = open_catalog(catalog_url, read_only=False)
    try:
        present = {schema.name.lower() for schema in catalog.schemas()}
        standard: tuple[tuple[Literal["dp1", "obscore"], str], ...] = (("dp1", "dp1"), ("obscore", "ivoa"))
        for kind, name in standard:
            if name not in present:
                catalog.create_schema(kind)
                changed.append(f"schema {name} (empty {kind} tables)")
        changed.extend(_publish_truth(repo, catalog))
    finally:
        catalog.close()
    return changed


def _publish_truth(repo: Path, catalog: object) -> list[str]:
    from pachon.core.repo import DataRepository

    data = DataRepository.open(repo)
    published: list[str] = []
    for dataset_type, table in TRUTH_TABLES.items():
        schema, name = table.split(".")
        if catalog.resolve(schema, name) is not None:  # type: ignore[attr-defined]
            continue
        if not data.has(dataset_type):
            continue
        truth = data.get(dataset_type)
        ra = "ra" if "ra" in truth.colnames else None
        dec = "dec" if "dec" in truth.colnames else None
        catalog.load_table(truth, table, ra=ra, dec=dec)  # type: ignore[attr-defined]
        published.append(f"table {table} ({len(truth)} rows from {dataset_type})")
    return published


def find_proxy() -> list[str]:
    """The configurable-http-proxy command: ``PACHON_HUB_PROXY``, the one ``make`` installed, or PATH."""
    explicit = os.environ.get("PACHON_HUB_PROXY")
    if explicit:
        return explicit.split()
    if PROXY_BIN.exists():
        return [str(PROXY_BIN)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise FileNotFoundError(
        "configurable-http-proxy is not installed: run `scripts/build-platform-js` (or `make`), which "
        f"installs it with npm into {PROXY_BIN.parent.parent.parent}, or set PACHON_HUB_PROXY to its path"
    )


def _public_host(host: str) -> str:
    """The host name a browser should use for a bind address (a wildcard means this machine's name)."""
    if host in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return host


def plan_platform(
    repo: Path,
    *,
    host: str,
    port: int,
    catalog_url: str | None = None,
    hub_settings: HubSettings | None = None,
) -> PlatformPlan:
    """Decide the components, their ports and the hub spec; a taken port is a clear error."""
    import pachon

    if not port_is_free(host, port):
        raise PortInUseError(
            f"port {port} on {host} is already in use (another `pachon up`? check `pachon status --repo {repo}`); "
            f"stop that process or choose another port with --port"
        )
    settings = hub_settings or load_hub_settings()
    repo = repo.resolve()
    url = catalog_url_for(repo, catalog_url)
    state = hub_state_dir(repo)
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    protect_private_state(repo)
    spawner, user_python, lab_settings, spawner_note = decide_spawner(settings, state)
    public_url = f"http://{_public_host(host)}:{port}"
    internal_host = "127.0.0.1" if host in ("0.0.0.0", "::", "", "127.0.0.1", "localhost") else host
    internal_url = f"http://{internal_host}:{port}"
    tap_port, discovery_port, hub_port, proxy_api_port = (free_port() for _ in range(4))

    tap_problem = _tap_unavailable()
    services = [
        ServiceSpec(
            name="tap",
            upstream=f"http://127.0.0.1:{tap_port}",
            description="IVOA TAP 1.1 (ADQL 2.1) on the catalog: sync, async (UWS), uploads, TAP_SCHEMA.",
            oauth_scopes=SERVICE_SCOPES["tap"],
            health_path="availability",
        ),
        ServiceSpec(
            name="discovery",
            upstream=f"http://127.0.0.1:{discovery_port}",
            description="Where every service of this platform lives (anonymous JSON).",
            health_path="health",
        ),
    ]
    if tap_problem:
        services = [s for s in services if s.name != "tap"]
    spec = PlatformSpec(
        repo=str(repo),
        public_url=public_url,
        internal_url=internal_url,
        bind_host=host,
        port=port,
        hub_port=hub_port,
        proxy_api_port=proxy_api_port,
        state_dir=str(state),
        python=sys.executable,
        proxy_command=find_proxy(),
        services=services,
        settings=settings.model_dump(),
        version=pachon.__version__,
        spawner=spawner,
        user_python=user_python,
        lab_settings_dir=lab_settings,
    )
    spec_path = state / "platform.json"
    spec.save(spec_path)
    secrets = load_secrets(state)
    tap_token = secrets.token("tap")
    save_secrets(state, secrets)
    config_path = state / "jupyterhub_config.py"
    config_path.write_text(
        "# Written by `pachon up`; the configuration itself is pachon.hub.config.configure.\n"
        "from pachon.hub.config import configure\n\n"
        f"configure(c, {str(spec_path)!r})  # noqa: F821 - `c` is JupyterHub's config object\n"
    )

    pachon_env = {"PACHON_REPO": str(repo)}
    tap = Component(
        name="tap",
        command=_tap_command(url, tap_port),
        health_url=f"http://127.0.0.1:{tap_port}/services/tap/availability",
        public_url=f"{public_url}/services/tap",
        env={
            **pachon_env,
            **_service_env("tap", tap_token, hub_port),
            "PACHON_TAP__PUBLIC_BASE_URL": f"{public_url}/services/tap",
        },
        umask=0o077,  # job records and results of every user: never readable by other Unix accounts
    )
    discovery = Component(
        name="discovery",
        command=[
            sys.executable,
            "-m",
            "pachon.hub.discovery",
            "--spec",
            str(spec_path),
            "--port",
            str(discovery_port),
        ],
        health_url=f"http://127.0.0.1:{discovery_port}/services/discovery/health",
        public_url=f"{public_url}/services/discovery/",
        env=pachon_env,
        start_timeout_s=30,
    )
    hub = Component(
        name="hub",
        command=[sys.executable, "-m", "jupyterhub", "-f", str(config_path)],
        health_url=f"http://127.0.0.1:{hub_port}/hub/health",
        public_url=f"{public_url}/hub/",
        env={**pachon_env, "PYTHONUNBUFFERED": "1"},
        start_timeout_s=60,
        cwd=str(state),
    )
    notes: list[str] = [spawner_note] if spawner_note else []
    kafka_port, registry_port = free_port(), free_port()
    alerts = Component(
        name="alerts",
        command=[
            sys.executable,
            "-m",
            "pachon.cli",
            "alerts",
            "broker",
            "--repo",
            str(repo),
            "--port",
            str(kafka_port),
            "--registry-port",
            str(registry_port),
        ],
        health_url=f"http://127.0.0.1:{registry_port}/subjects",
        public_url=f"kafka://127.0.0.1:{kafka_port} (schema registry http://127.0.0.1:{registry_port})",
        env=pachon_env,
        start_timeout_s=60,
    )
    checks = {"proxy": (f"{public_url}/", f"{internal_url}/hub/health")}
    components = [alerts, tap, discovery, hub]
    if tap_problem:
        components.remove(tap)
        notes.append(f"TAP is not started: {tap_problem}")
    return PlatformPlan(components=components, catalog_url=url, notes=notes, spec=spec, checks=checks)


def protect_private_state(repo: Path) -> None:
    """Make what holds users' data or the platform's secrets owner-only before anything starts.

    With the system spawner, notebook servers run as other Unix accounts on this machine: they
    may read the repo (the Butler's files, ``state/kafka.json``) but not the hub's secrets and
    database (``state/hub``), the logs, the TAP jobs database (``state/pachon.sqlite3``) or job
    results. Files created later inherit this from the TAP service's umask (077).
    """
    state = repo / "state"
    state.mkdir(parents=True, exist_ok=True)
    for name in ("hub", "logs", "tap-results"):
        (state / name).mkdir(exist_ok=True)
        os.chmod(state / name, 0o700)
    for path in state.glob("pachon.sqlite3*"):
        os.chmod(path, 0o600)


def decide_spawner(settings: HubSettings, state: Path) -> tuple[str, str, str, str | None]:
    """(``system``/``simple``, the servers' interpreter or "", JupyterLab settings folder, note or None).

    As root (``auto`` or ``system``), servers run as each user's Unix account in the user
    environment of :func:`pachon.hub.userenv.ensure_user_python`; when none can be prepared,
    ``auto`` falls back to single-user mode and says why, and an explicit ``system`` is refused.
    """
    from pachon.core.settings import SettingsError
    from pachon.hub.config import resolve_spawner
    from pachon.hub.userenv import UserPythonError, ensure_user_python, write_lab_settings

    root = os.geteuid() == 0
    why = ""
    if settings.spawner == "system" and not root:
        raise SettingsError(
            "invalid setting hub.spawner = 'system': starting servers as other users needs root"
        )
    if settings.spawner != "simple" and root:
        env_root = Path(settings.user_env_root) if settings.user_env_root else None
        try:
            user = ensure_user_python(env_root, explicit_base=settings.user_python)
        except UserPythonError as exc:
            if settings.spawner == "system":
                raise SettingsError(f"invalid setting hub.spawner = 'system': {exc}") from None
            why = f"running as root, but {exc}"
        else:
            if resolve_spawner(settings, python=str(user.python)) == "system":
                homes = settings.home_root or "/home/pachon"
                note = (
                    f"per-user accounts: an approved user gets a Unix account with a private home under {homes}; "
                    f"servers run {user.python} (built from {user.base}, sees this installation's packages)"
                )
                return "system", str(user.python), str(user.lab_settings_dir), note
    lab_settings = state / "lab-settings"
    write_lab_settings(lab_settings)
    if not why:
        why = "PACHON_HUB__SPAWNER=simple" if settings.spawner == "simple" else (
            "run as root for a Unix account per user with a private home"
        )  # fmt: skip
    note = (
        "SINGLE-USER MODE: notebook servers run as this Unix account with no isolation between users "
        f"(SimpleLocalProcessSpawner); {why}."
    )
    return "simple", "", str(lab_settings), note


def _tap_unavailable() -> str | None:
    """Why the TAP service cannot start in this installation (None when it can)."""
    try:
        import pachon.services.tap.main  # noqa: F401
    except ImportError as exc:
        return f"the TAP service cannot be imported ({exc}); reinstall Pachón"
    return None


def _service_env(name: str, token: str, hub_port: int) -> dict[str, str]:
    """What an external JupyterHub service needs to check logins (read by pachon.core.auth)."""
    return {
        "PACHON_SERVICE_AUTH": "hub",
        "JUPYTERHUB_SERVICE_NAME": name,
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub_port}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/{name}/",
        "JUPYTERHUB_CLIENT_ID": f"service-{name}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"/services/{name}/oauth_callback",
    }


def _tap_command(catalog_url: str, port: int) -> list[str]:
    """The TAP service behind the hub: :mod:`pachon.hub.tap_runner` wraps it in hub login."""
    return [sys.executable, "-m", "pachon.hub.tap_runner", "--catalog", catalog_url, "--port", str(port)]
