"""Pachón's custom JupyterHub scopes and the roles that hand them out.

Why custom scopes: JupyterHub's built-in scopes govern the hub itself; what a user may do in
*our* services (query TAP, read alerts, write user tables) needs scopes of its own, defined in
the hub (``JupyterHub.custom_scopes``, JupyterHub ≥ 5) so that tokens and OAuth logins carry
them, and checked by each service (:mod:`pachon.core.auth`). Every user gets all of them by
default through the ``user`` role; a token can be narrowed to a subset.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CUSTOM_SCOPES", "SERVICE_SCOPES", "USER_SCOPES", "roles"]

CUSTOM_SCOPES: dict[str, dict[str, str]] = {
    "custom:tap:read": {"description": "Query the TAP service and read your own TAP jobs and history."},
    "custom:userdb:write": {"description": "Create, fill and drop your own user tables (TAP uploads, MyDB)."},
    "custom:images:read": {"description": "Search images and make cutouts (SIA, SODA, DataLink)."},
    "custom:alerts:read": {"description": "Read the alert stream, your filters and watch lists."},
    "custom:files:write": {"description": "Read and write your own files through the files service."},
    "custom:portal:use": {"description": "Use the web portal."},
}
"""Scope name → description (JupyterHub requires a description for each custom scope)."""

SERVICE_SCOPES: dict[str, list[str]] = {
    "tap": ["custom:tap:read", "custom:userdb:write"],
    "images": ["custom:images:read"],
    "alerts": ["custom:alerts:read"],
    "files": ["custom:files:write"],
    "portal": ["custom:portal:use", "custom:tap:read", "custom:images:read"],
}
"""Which custom scopes a browser login (OAuth) to a service may carry."""

USER_SCOPES: list[str] = ["self", "access:services", *CUSTOM_SCOPES]
"""What every user holds: themselves, access to every service, and every custom scope."""


def roles(*, admin_service: str, culler_service: str | None) -> list[dict[str, Any]]:
    """The ``JupyterHub.load_roles`` list: users get the custom scopes; our helper services their rights.

    ``culler_service`` None means culling is off (no service, so no role naming it).
    """
    found = [
        {
            "name": "user",
            "description": "Every Pachón user: own server, own tokens, every Pachón service.",
            "scopes": USER_SCOPES,
        },
        {
            "name": "pachon-admin-cli",
            "description": "`pachon user`/`pachon token` acting for the operator on this machine.",
            "scopes": [
                "admin:users",
                "tokens",
                "list:users",
                "read:users",
                "read:servers",
                "admin:servers",
                "list:services",
                "read:services",
            ],
            "services": [admin_service],
        },
    ]
    if culler_service:
        found.append(
            {
                "name": "idle-culler",
                "description": "Stops idle single-user servers.",
                "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
                "services": [culler_service],
            }
        )
    return found
