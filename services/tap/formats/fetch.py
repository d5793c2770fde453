"""Fetching ``http(s)`` uploads with a guard against server-side request forgery (SSRF).

A TAP upload URL makes *our* server issue a request, so a hostile user could aim it at
the platform's own loopback services, the cloud metadata endpoint (169.254.169.254) or
the private network. Unless ``allow_private_hosts`` is set, we refuse any address that
is loopback, link-local, private, multicast, reserved, unspecified or otherwise not
globally routable, and we check it twice:

1. before every request (the first and each redirect, which we follow ourselves, at most
   :data:`MAX_REDIRECTS`), by resolving the host name, so the user gets a clear error;
2. at connection time, inside the HTTP transport: the socket is opened to the address we
   just checked, not to a fresh DNS answer, which closes the DNS-rebinding gap between
   check and use. TLS still verifies the certificate against the host name.

Environment proxies are ignored (``trust_env=False``): a proxy would make the checked
address meaningless. Size is enforced while streaming, not only from Content-Length.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from .errors import UploadError

__all__ = ["MAX_REDIRECTS", "check_address", "fetch_upload_url", "resolve_checked"]

MAX_REDIRECTS = 5
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_address(address: str | IPAddress) -> str | None:
    """Why ``address`` may not be fetched from (``None`` when it is a public address)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, label in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_unspecified", "the unspecified address"),
    ):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:
        return "not a globally routable address"
    return None


def resolve_checked(host: str, port: int, *, allow_private_hosts: bool) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing non-public ones unless allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UploadError(f"the upload URL's host {host!r} cannot be resolved ({exc.strerror})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private_hosts:
        for address in addresses:
            reason = check_address(address.split("%")[0])
            if reason is not None:
                raise UploadError(
                    f"the upload URL's host {host!r} resolves to {address}, {reason}; "
                    "this service only fetches uploads from public hosts (send the table inline "
                    "with UPLOAD=name,param:part instead)"
                )
    return addresses


class _GuardedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to addresses that pass :func:`check_address`."""

    def __init__(self, allow_private_hosts: bool) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow = allow_private_hosts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_checked(host, port, allow_private_hosts=self._allow)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}:{port}")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used for uploads")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, allow_private_hosts: bool) -> None:
        super().__init__(trust_env=False, retries=0)
        ssl_context = self._pool._ssl_context
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=4,
            network_backend=_GuardedBackend(allow_private_hosts),
        )


def _check_url(url: httpx.URL, allow_private_hosts: bool) -> None:
    if url.scheme not in ("http", "https"):
        raise UploadError(
            f"upload URL {str(url)!r}: only http and https URLs can be fetched "
            "(or send the table inline with UPLOAD=name,param:part)"
        )
    if not url.host:
        raise UploadError(f"upload URL {str(url)!r} has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    resolve_checked(url.host, port, allow_private_hosts=allow_private_hosts)


def fetch_upload_url(url: str, *, allow_private_hosts: bool, max_bytes: int, timeout: float = 30.0) -> bytes:
    """Download an upload from an ``http(s)`` URL, at most ``max_bytes`` within ``timeout`` seconds.

    Redirects are followed (at most :data:`MAX_REDIRECTS`) and each target is checked
    again. Raises :class:`~.errors.UploadError` with the reason (refused address, HTTP
    status, too large, too slow).
    """
    deadline = time.monotonic() + timeout
    try:
        current = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UploadError(f"upload URL {url!r} is not a valid URL: {exc}") from None
    with httpx.Client(
        transport=_GuardedTransport(allow_private_hosts),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": "pachon-tap-upload/1"},
    ) as client:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(current, allow_private_hosts)
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise UploadError(f"upload URL {str(current)!r} redirected without a Location")
                        current = httpx.URL(urljoin(str(current), location))
                        continue
                    if response.status_code != 200:
                        raise UploadError(
                            f"upload URL {str(current)!r} answered HTTP {response.status_code}; "
                            "check that the URL is public and right"
                        )
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise UploadError(
                            f"upload URL {str(current)!r} serves {int(declared):,} bytes, more than the "
                            f"limit of {max_bytes:,}"
                        )
                    parts: list[bytes] = []
                    size = 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise UploadError(
                                f"upload URL {str(current)!r} serves more than the limit of {max_bytes:,} bytes"
                            )
                        if time.monotonic() > deadline:
                            raise UploadError(f"upload URL {str(current)!r} took longer than {timeout:g} s")
                        parts.append(chunk)
                    return b"".join(parts)
            except httpx.TimeoutException:
                raise UploadError(f"upload URL {str(current)!r} took longer than {timeout:g} s") from None
            except httpx.HTTPError as exc:
                cause = exc.__context__ if isinstance(exc.__context__, UploadError) else None
                if cause is not None:
                    raise cause from None
                raise UploadError(f"upload URL {str(current)!r} cannot be fetched: {exc}") from None
    raise UploadError(f"upload URL {url!r} redirected more than {MAX_REDIRECTS} times")
