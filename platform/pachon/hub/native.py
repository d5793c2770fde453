"""NativeAuthenticator adapted to JupyterHub 6 (sign-up, admin approval, bcrypt hashes).

jupyterhub-nativeauthenticator 1.3.0 (its latest release) predates JupyterHub 6: its login
handler times the login with ``self.statsd`` (removed from the hub's handlers) and its
``_render`` does not accept the ``sync`` argument the hub now passes when rendering an error
page, so every login answered HTTP 500. :class:`PachonNativeAuthenticator` swaps in a login
handler fixing both.

Passwords are checked with bcrypt in a worker thread (:meth:`PachonNativeAuthenticator.authenticate`):
NativeAuthenticator hashes on the hub's event loop, and at bcrypt's cost (a quarter of a CPU
second) twenty users logging in at once froze the hub for seconds, so token checks of the
services timed out and spawns waited (measured by ``benchmarks/platform/bench_platform.py``).

It also calls :attr:`PachonNativeAuthenticator.approval_hook` when an admin approves a sign-up
(``/hub/authorize/<name>``): the system spawner uses it to create the user's Unix account at
approval, so an approved user exists on the machine before their first server starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as _NativeLoginHandler
from nativeauthenticator.handlers import ToggleAuthorizationHandler as _NativeToggleHandler
from nativeauthenticator.handlers import admin_users_scope
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Any as AnyTrait

__all__ = ["PachonNativeAuthenticator"]


class _NoTimer:
    """Stands in for the statsd client JupyterHub 6 no longer gives handlers."""

    def timer(self, _name: str) -> _NoTimer:
        return self

    def start(self) -> _NoTimer:
        return self

    def stop(self, send: bool = True) -> None:
        return None

    def incr(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class PachonLoginHandler(_NativeLoginHandler):  # type: ignore[misc]
    """NativeAuthenticator's login page, compatible with JupyterHub 6."""

    statsd = _NoTimer()

    def _render(
        self, login_error: str | None = None, username: str | None = None, sync: bool = False, **_: Any
    ) -> Any:
        return self.render_template(
            "native-login.html",
            sync=sync,
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(
                self.authenticator.login_url(self.hub.base_url), {"next": self.get_argument("next", "")}
            ),
        )


class PachonToggleAuthorizationHandler(_NativeToggleHandler):  # type: ignore[misc]
    """``/hub/authorize/<name>``: toggle approval, then run the approval hook for a newly approved user.

    A failing hook (say ``useradd`` refused the name) is answered with HTTP 500 naming the cause;
    the approval itself stays recorded, and the spawner's own hook retries at the first spawn.
    """

    @admin_users_scope  # type: ignore[untyped-decorator]
    async def get(self, slug: str) -> None:
        if UserInfo.find(self.db, slug) is None:
            raise web.HTTPError(404, f"no sign-up named {slug!r}")
        info = UserInfo.change_authorization(self.db, slug)
        hook = self.authenticator.approval_hook
        if info.is_authorized and hook is not None:
            try:
                await asyncio.to_thread(hook, slug)
            except Exception as exc:
                self.log.error("approval hook failed for %s: %s", slug, exc)
                raise web.HTTPError(
                    500, f"{slug} is approved, but preparing the account failed: {exc}"
                ) from exc
        self.redirect(self.hub.base_url + "authorize#" + slug)


class PachonNativeAuthenticator(NativeAuthenticator):  # type: ignore[misc]
    """NativeAuthenticator with :class:`PachonLoginHandler` and :class:`PachonToggleAuthorizationHandler`."""

    approval_hook = AnyTrait(
        None,
        allow_none=True,
        help="Called with the user name (in a worker thread) when an admin approves a sign-up.",
    ).tag(config=True)

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> str | None:
        """NativeAuthenticator's checks in its order, with the bcrypt comparison off the event loop."""
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user:
            return None
        if self.allowed_failed_logins and self.is_blocked(username):
            return None
        stored = user.password
        password_ok = await asyncio.to_thread(bcrypt.checkpw, data["password"].encode(), stored)
        validations = [user.is_authorized, password_ok]
        if user.has_2fa:
            validations.append(user.is_valid_token(data.get("2fa")))
        if all(validations):
            self.successful_login(username)
            return str(username)
        self.add_login_attempt(username)
        return None

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        replace = {r"/login": PachonLoginHandler, r"/authorize/([^/]*)": PachonToggleAuthorizationHandler}
        return [(path, replace.get(path, handler)) for path, handler in super().get_handlers(app)]
