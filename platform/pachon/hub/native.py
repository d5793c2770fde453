"""NativeAuthenticator adapted to JupyterHub 6 (sign-up, admin approval, bcrypt hashes).

jupyterhub-nativeauthenticator 1.3.0 (its latest release) predates JupyterHub 6: its login
handler times the login with ``self.statsd`` (removed from the hub's handlers) and its
``_render`` does not accept the ``sync`` argument the hub now passes when rendering an error
page, so every login answered HTTP 500. :class:`PachonNativeAuthenticator` swaps in a login
handler fixing both and changes nothing else.
"""

from __future__ import annotations

from typing import Any

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as _NativeLoginHandler
from tornado.escape import url_escape
from tornado.httputil import url_concat

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


class PachonNativeAuthenticator(NativeAuthenticator):  # type: ignore[misc]
    """NativeAuthenticator with :class:`PachonLoginHandler` at ``/login``."""

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        handlers = super().get_handlers(app)
        return [(path, PachonLoginHandler if path == r"/login" else handler) for path, handler in handlers]
