"""Run the TAP service as a JupyterHub service: hub login around the app, at ``/services/tap``.

``pachon up`` starts ``python -m pachon.hub.tap_runner --catalog URL --port P`` on loopback with
the ``JUPYTERHUB_*`` variables of the ``tap`` service. The TAP app serves ``/tap/...``; the
hub's proxy forwards ``/services/tap/...`` unchanged, so :class:`PrefixRewrite` maps one onto
the other (the public URLs in responses come from ``PACHON_TAP__PUBLIC_BASE_URL``), and
:class:`~pachon.core.auth.HubAuthMiddleware` requires ``custom:tap:read`` everywhere except
``availability``, ``capabilities`` and ``health``. The app's ``current_user`` dependency reads
the identity the middleware attaches, so jobs and history belong to the hub user.
"""

from __future__ import annotations

import argparse
from collections.abc import MutableMapping
from typing import Any

from pachon.core.auth import ASGIApp, HubAuthMiddleware, Receive, Send

__all__ = ["PrefixRewrite", "build_app", "main"]

PUBLIC_PATHS = ("availability", "capabilities", "health", "")
"""Anonymous under /services/tap/: VOSI availability and capabilities (the standards require it),
the health check, and the service's landing page (a list of endpoints)."""


class PrefixRewrite:
    """Serve an app written for ``app_prefix`` (``/tap``) at ``public_prefix`` (``/services/tap``)."""

    def __init__(self, app: ASGIApp, *, public_prefix: str, app_prefix: str) -> None:
        self.app = app
        self.public_prefix = public_prefix.rstrip("/")
        self.app_prefix = app_prefix.rstrip("/")

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope.get("path", "")
            if path == self.public_prefix or path.startswith(self.public_prefix + "/"):
                scope = dict(scope)
                scope["path"] = self.app_prefix + path[len(self.public_prefix) :]
                scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)


def build_app(catalog_url: str | None = None) -> ASGIApp:
    """The TAP app for ``catalog_url`` wrapped in prefix mapping and hub login (env-configured)."""
    from pachon.services.tap.config import TapConfig
    from pachon.services.tap.main import create_app

    config = TapConfig.from_settings(catalog_url=catalog_url, anonymous=False)
    app = create_app(config)
    rewritten = PrefixRewrite(app, public_prefix="/services/tap", app_prefix="/tap")
    return HubAuthMiddleware(rewritten, required_scope="custom:tap:read", public_paths=PUBLIC_PATHS)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the TAP service behind the hub (used by `pachon up`).")
    parser.add_argument("--catalog", default=None, help="catalog URL; default from the settings")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        build_app(args.catalog), host=args.host, port=args.port, log_level="info", proxy_headers=False
    )


if __name__ == "__main__":
    main()
