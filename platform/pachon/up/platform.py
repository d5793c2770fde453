"""What ``pachon up`` runs today, and how it prepares the repo's catalog first.

Components (each a supervised child process, bound to loopback unless ``--host`` says
otherwise):

* ``tap``: the TAP service on the repo's catalog (``duckdb:///<repo>/catalog/``), at
  ``http://HOST:PORT/tap``. Until the JupyterHub issue lands, TAP is the front door on
  ``--port`` and runs in anonymous mode (it says so in its banner); the hub then takes
  the port and TAP moves behind it at ``/services/tap``.

Before starting, the catalog gets the empty DP1 and ObsCore schemas (so TAP_SCHEMA shows
what a release will hold) and, when the repo holds simulator truth, the schema ``sim``
with the truth stars and galaxies, so there is something real to query before the first
data release is processed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pachon.core.logging import get_logger
from pachon.up.supervisor import Component, PortInUseError, port_is_free

__all__ = ["PlatformPlan", "plan_platform", "prepare_catalog"]

log = get_logger(__name__)

TRUTH_TABLES = {"truth_stars": "sim.truth_stars", "truth_galaxies": "sim.truth_galaxies"}


@dataclass
class PlatformPlan:
    """The components to start and what to tell the user."""

    components: list[Component]
    catalog_url: str
    notes: list[str]


def catalog_url_for(repo: Path, explicit: str | None) -> str:
    return explicit or f"duckdb:///{(repo / 'catalog').resolve()}/"


def prepare_catalog(repo: Path, catalog_url: str) -> list[str]:
    """Create the standard schemas and publish simulator truth (idempotent); return what changed."""
    from pachon.core.catalog import open_catalog

    changed: list[str] = []
    (repo / "catalog").mkdir(parents=True, exist_ok=True)
    catalog = open_catalog(catalog_url, read_only=False)
    try:
        present = {schema.name.lower() for schema in catalog.schemas()}
        for kind, name in (("dp1", "dp1"), ("obscore", "ivoa")):
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


def plan_platform(repo: Path, *, host: str, port: int, catalog_url: str | None = None) -> PlatformPlan:
    """Decide the components and their addresses; a taken port is a clear error."""
    if not port_is_free(host, port):
        raise PortInUseError(
            f"port {port} on {host} is already in use (another `pachon up`? check `pachon status --repo {repo}`); "
            f"stop that process or choose another port with --port"
        )
    url = catalog_url_for(repo, catalog_url)
    base = f"http://{host}:{port}"
    tap = Component(
        name="tap",
        command=[
            sys.executable,
            "-m",
            "pachon.cli",
            "serve",
            "tap",
            "--catalog",
            url,
            "--host",
            host,
            "--port",
            str(port),
            "--anonymous",
        ],
        health_url=f"http://127.0.0.1:{port}/tap/availability"
        if host in ("0.0.0.0", "127.0.0.1")
        else f"{base}/tap/availability",
        public_url=f"{base}/tap",
        env={"PACHON_REPO": str(repo)},
    )
    notes = [
        "TAP runs in anonymous mode until JupyterHub single sign-on lands (issue 6).",
    ]
    return PlatformPlan(components=[tap], catalog_url=url, notes=notes)
