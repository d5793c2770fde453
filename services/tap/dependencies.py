"""FastAPI dependencies: the caller's identity and the request context.

``current_user`` is the single place the identity comes from. Today: ``--anonymous``
serves everybody as ``anonymous``; otherwise the identity is the one the hub's
:class:`~pachon.core.auth.HubAuthMiddleware` attached to the request (when the app is
wrapped in it), else the ``X-Forwarded-User`` header set by an authenticating proxy in
front of the service (gafaelfawr style). Jobs and history are owned by and filtered on
``User.name``, so hub login only has to wrap the app.
"""

from __future__ import annotations

from fastapi import Depends, Request

from pachon.core.auth import behind_hub, identity_of

from .exceptions import NotAuthenticatedError
from .factory import ProcessContext, RequestContext, public_base_url
from .models.user import ANONYMOUS, User

__all__ = ["context_dependency", "current_user", "process_context"]


def process_context(request: Request) -> ProcessContext:
    context: ProcessContext = request.app.state.tap
    return context


def current_user(request: Request, process: ProcessContext = Depends(process_context)) -> User:
    """The user a request acts as (see the module docstring)."""
    if process.config.anonymous:
        return ANONYMOUS
    identity = identity_of(request)
    if identity is not None:
        return User(name=identity.name)
    if behind_hub():  # PACHON_SERVICE_AUTH=hub: only the hub names users; no token means anonymous
        return ANONYMOUS
    name = request.headers.get("x-forwarded-user", "").strip()
    if not name:
        raise NotAuthenticatedError(
            "this TAP service needs a logged-in user: reach it through the platform's hub, or start it "
            "with --anonymous for local use"
        )
    return User(name=name)


def context_dependency(
    request: Request,
    user: User = Depends(current_user),
    process: ProcessContext = Depends(process_context),
) -> RequestContext:
    return RequestContext(
        request=request, user=user, base_url=public_base_url(request, process.config), process=process
    )
