"""Service discovery: one anonymous JSON document listing every service's URL and IVOA standard ids.

Served at ``/services/discovery/`` (a JupyterHub service, like Rubin's Repertoire) so that
notebooks, the JupyterLab extension and outside clients find TAP and the rest without
hard-coded URLs. The shape borrows Repertoire's ``datasets → services → url`` nesting, so
``lsst.rsp.RSPDiscovery("dp1", discovery_url=".../services/discovery")`` (which fetches
``<url>/discovery``) also finds our TAP service.

Run by ``pachon up``: ``python -m pachon.hub.discovery --spec <repo>/state/hub/platform.json --port P``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from pachon.hub.spec import PlatformSpec, load_spec

__all__ = ["STANDARD_IDS", "build_discovery", "create_app", "main"]

STANDARD_IDS: dict[str, list[str]] = {
    "tap": [
        "ivo://ivoa.net/std/TAP",
        "ivo://ivoa.net/std/VOSI#availability",
        "ivo://ivoa.net/std/VOSI#capabilities",
        "ivo://ivoa.net/std/VOSI#tables-1",
        "ivo://ivoa.net/std/DALI#examples",
    ],
    "images": [
        "ivo://ivoa.net/std/SIA#query-2.0",
        "ivo://ivoa.net/std/SODA#sync-1.0",
        "ivo://ivoa.net/std/DataLink#links-1.1",
    ],
    "alerts": [],
    "files": [],
    "portal": [],
}
"""IVOA standard ids per known service name (a service may also declare its own in its spec)."""

DATASETS = ("dp1",)
"""Datasets (releases) every catalog service serves; Repertoire-style clients look services up per dataset."""


def build_discovery(spec: PlatformSpec) -> dict[str, Any]:
    """The discovery document for a platform spec (pure function: tested without a server)."""
    base = spec.public_url
    services: dict[str, Any] = {}
    for service in spec.services:
        url = f"{base}/services/{service.name}"
        services[service.name] = {
            "url": url,
            "description": service.description,
            "standard_ids": service.standard_ids or STANDARD_IDS.get(service.name, []),
            "health": f"{url}/{service.health_path}",
            "scopes": service.oauth_scopes,
        }
    catalog_services = {
        name: {"url": info["url"]} for name, info in services.items() if name in ("tap", "images")
    }
    return {
        "platform": {"name": "Pachón", "version": spec.version, "url": base},
        "applications": {
            "hub": f"{base}/hub/",
            "lab": f"{base}/hub/user-redirect/lab",
            "token": f"{base}/hub/token",
            "signup": f"{base}/hub/signup",
        },
        "services": services,
        "datasets": {name: {"services": catalog_services} for name in DATASETS},
    }


def create_app(spec_path: Path) -> FastAPI:
    """The discovery app; it re-reads the spec on each request (``pachon up`` may add services)."""
    app = FastAPI(title="Pachón service discovery", docs_url=None, redoc_url=None, openapi_url=None)

    def _document() -> JSONResponse:
        return JSONResponse(build_discovery(load_spec(spec_path)), headers={"Cache-Control": "max-age=10"})

    for prefix in ("/services/discovery", ""):
        app.add_api_route(f"{prefix}/", _document, methods=["GET"])
        app.add_api_route(f"{prefix}/discovery", _document, methods=["GET"])
        app.add_api_route(f"{prefix}/v1.json", _document, methods=["GET"])
        app.add_api_route(f"{prefix}/health", lambda: {"status": "ok"}, methods=["GET"])
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spec", type=Path, required=True, help="platform.json written by `pachon up`")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.spec), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
