"""The gateway's address as browsers see it: the base of join links and signaling URLs.

``GATEWAY_PUBLIC_URL``, when set, always wins. Otherwise the base is the request's own scheme
and ``Host``, which behind a TLS-terminating proxy is ``http://`` although the browser is on
``https://``. Proxies say what the browser used in ``X-Forwarded-Proto`` / ``X-Forwarded-Host``
or ``Forwarded`` (RFC 7239), but anyone can send those headers, so they count only when the TCP
peer is in ``GATEWAY_TRUSTED_PROXIES``; from anyone else they are ignored. Of several values
the last one counts: it is the one the nearest proxy, the trusted one, added.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from gateway.config import ConfigError, Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: A host name, IPv4 address or bracketed IPv6 address, with an optional port: nothing that
#: could carry a path, a user or a second URL into the links built on it.
_HOST = re.compile(r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_SCHEMES = ("http", "https")


def trusted_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``GATEWAY_TRUSTED_PROXIES``' addresses and CIDR networks; a bare address is a /32
    (or /128). A value that is neither is a :class:`ConfigError` at start."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(
                f"GATEWAY_TRUSTED_PROXIES must list IP addresses or CIDR networks, got {value!r}"
            ) from None
    return tuple(networks)


def websocket_url(http_url: str) -> str:
    """The same address for a WebSocket: ``ws://`` for ``http://``, ``wss://`` for ``https://``."""
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if http_url.startswith(http):
            return ws + http_url[len(http) :]
    return http_url


class PublicUrls:
    """Works out the base URL a request's browser can reach the gateway at."""

    def __init__(self, public_url: str, trusted_proxies: Iterable[str]) -> None:
        self.public_url = public_url.rstrip("/")
        self.trusted = trusted_networks(trusted_proxies)

    @classmethod
    def from_settings(cls, settings: Settings) -> PublicUrls:
        return cls(settings.public_url, settings.trusted_proxies)

    def __repr__(self) -> str:
        return f"PublicUrls({self.public_url!r}, trusted={[str(n) for n in self.trusted]})"

    def trusts(self, peer: str | None) -> bool:
        """Whether ``peer`` (the TCP peer's address) is one of the trusted proxies."""
        if peer is None or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def base_url(self, request: web.Request) -> str:
        """``scheme://host`` for links handed to whoever made ``request``."""
        if self.public_url:
            return self.public_url
        return f"{self.scheme(request)}://{self.host(request)}"

    def scheme(self, request: web.Request) -> str:
        """``http`` or ``https``, as the browser used it."""
        forwarded = self._forwarded(request, hdrs.X_FORWARDED_PROTO, "proto")
        if forwarded is not None and forwarded.lower() in _SCHEMES:
            return forwarded.lower()
        return request.scheme

    def host(self, request: web.Request) -> str:
        """The host (and port) the browser addressed."""
        forwarded = self._forwarded(request, hdrs.X_FORWARDED_HOST, "host")
        if forwarded is not None and _HOST.fullmatch(forwarded):
            return forwarded
        return request.host

    def _forwarded(self, request: web.Request, header: str, parameter: str) -> str | None:
        """The trusted proxy's word on ``parameter``: the last value of ``header``, else of
        ``parameter`` in the last element of ``Forwarded``; None from an untrusted peer."""
        if not self.trusts(request.remote):
            return None
        values = [v.strip() for v in ",".join(request.headers.getall(header, ())).split(",")]
        if values[-1]:
            return values[-1]
        if request.forwarded:
            return request.forwarded[-1].get(parameter)
        return None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased, as browsers send it in ``Origin``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
