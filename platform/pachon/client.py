"""Clients for notebooks and scripts: an authenticated TAP service and the repo's Butler.

Inside a notebook started by the hub everything is automatic: the server's environment holds
the platform URL (``PACHON_PLATFORM_URL``), the discovery URL and the server's own API token
(``JUPYTERHUB_API_TOKEN``, which carries Pachón's ``custom:*`` scopes). Outside the platform pass
``url=`` and ``token=`` (a token from the hub's token page)::

    import pachon.client
    tap = pachon.client.tap()                     # pyvo.dal.TAPService, authenticated
    tap.search("SELECT TOP 5 * FROM TAP_SCHEMA.tables").to_table()
    butler = pachon.client.butler()               # lsst.daf.butler.Butler on the repo, read-only
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["ClientConfigError", "butler", "discovery", "service_url", "tap", "token"]


class ClientConfigError(RuntimeError):
    """The client cannot tell where the platform is or who you are; the message says what to set."""


def token(explicit: str | None = None) -> str:
    """The API token to send: ``explicit``, else ``PACHON_TOKEN``, ``ACCESS_TOKEN`` or ``JUPYTERHUB_API_TOKEN``."""
    for value in (explicit, os.environ.get("PACHON_TOKEN"), os.environ.get("ACCESS_TOKEN"),
                  os.environ.get("JUPYTERHUB_API_TOKEN")):  # fmt: skip
        if value:
            return value
    raise ClientConfigError(
        "no token: inside the platform's notebooks this is automatic; elsewhere create one on the hub's "
        "token page (/hub/token) and pass token=... or set PACHON_TOKEN"
    )


def discovery(url: str | None = None, *, timeout: float = 10.0) -> dict[str, Any]:
    """The platform's discovery document (anonymous): every service's URL and IVOA standard ids."""
    import httpx

    target = url or os.environ.get("PACHON_DISCOVERY_URL")
    if not target:
        base = os.environ.get("PACHON_PLATFORM_URL")
        if not base:
            raise ClientConfigError(
                "unknown platform: pass url='http://HOST:PORT/services/discovery/' or set PACHON_DISCOVERY_URL"
            )
        target = base.rstrip("/") + "/services/discovery/"
    response = httpx.get(target, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return dict(response.json())


def service_url(name: str, *, url: str | None = None) -> str:
    """Base URL of a service: ``PACHON_<NAME>_URL`` when set (notebooks), else from discovery."""
    direct = os.environ.get(f"PACHON_{name.upper()}_URL")
    if direct and url is None:
        return direct.rstrip("/")
    services = discovery(url)["services"]
    if name not in services:
        raise ClientConfigError(
            f"the platform has no service {name!r}; it offers: {', '.join(sorted(services))}"
        )
    return str(services[name]["url"]).rstrip("/")


def tap(*, url: str | None = None, token: str | None = None) -> Any:
    """An authenticated :class:`pyvo.dal.TAPService` for the platform's TAP service.

    ``url`` is the TAP base URL (``http://HOST:PORT/services/tap``) or None to find it.
    The token goes only to the TAP service's URLs, as ``Authorization: Bearer``.
    """
    import pyvo
    import requests

    base = url.rstrip("/") if url else service_url("tap")
    secret = globals()["token"](token)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {secret}"
    auth = pyvo.auth.AuthSession()
    auth.credentials.set("pachon-token", session)
    for suffix in ("", "/sync", "/async", "/tables", "/capabilities", "/availability", "/examples"):
        auth.add_security_method_for_url(base + suffix, "pachon-token")
    # Job URLs (/async/<id>/...) are below the base; pyvo matches them by prefix.
    auth.add_security_method_for_url(base + "/", "pachon-token")
    return pyvo.dal.TAPService(base, session=auth)


def butler(repo: str | None = None, *, collections: str | list[str] = "Pachon/defaults") -> Any:
    """The data repository's Butler, read-only, with the notebooks' default collections.

    ``repo`` defaults to ``PACHON_REPO`` (set by the hub for every notebook server).
    """
    from lsst.daf.butler import Butler

    path = repo or os.environ.get("PACHON_REPO")
    if not path:
        raise ClientConfigError("unknown repo: pass repo='path/to/repo' or set PACHON_REPO")
    try:
        return Butler.from_config(path, collections=collections, writeable=False)
    except Exception as exc:  # a missing default chain is not fatal: fall back to no default collections
        if "collection" not in str(exc).lower():
            raise
        return Butler.from_config(path, writeable=False)
