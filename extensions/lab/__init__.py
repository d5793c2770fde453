"""Pachón's JupyterLab extension: the Python (jupyter-server) half and the prebuilt frontend's location.

The frontend (``src/``, TypeScript) shows the *Data* panel, the *Tutorials* menu and the version
in the status bar. It talks only to this server extension, under ``/pachon/`` of the user's own
Jupyter server, which calls the platform's services with the server's own hub token (it carries
``custom:tap:read``), so the browser never needs a token of its own:

* ``GET  /pachon/info``          version, platform and TAP URLs, user;
* ``GET  /pachon/tap/schema``    TAP_SCHEMA as schemas → tables → columns (units, descriptions);
* ``POST /pachon/tap/query``     run ADQL (sync), answer a preview ``{columns, rows, truncated}``;
* ``GET  /pachon/tap/history``   the user's query history from the TAP service;
* ``POST /pachon/tutorials``     copy the tutorial notebooks into ``~/tutorials`` (never overwriting).

The hub enables it on every single-user server (``--ServerApp.jpserver_extensions``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "_jupyter_labextension_paths",
    "_jupyter_server_extension_points",
    "_load_jupyter_server_extension",
]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "@pachon/lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "pachon.extensions.lab"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    from pachon.extensions.lab.handlers import setup_handlers

    setup_handlers(server_app.web_app)
    server_app.log.info("Pachón server extension loaded at /pachon/")
