"""Connections that never finish their request: how long they may take, how many one address
may hold.

Without bounds, a client that opens sockets and sends its headers a byte at a time (or never)
holds them for as long as it likes: 500 such sockets were held for 91 s. Three bounds:

* **headers**: aiohttp closes a connection whose request has not arrived whole
  ``GATEWAY_HTTP_HEADER_TIMEOUT`` seconds after it opened (or after its previous response: the
  keep-alive timeout is that bound, ``handler_args`` sets it in ``create_app``). A request
  being handled, a WebSocket among them, is not affected;
* **body**: the admin API reads a request's body within ``GATEWAY_HTTP_BODY_TIMEOUT`` seconds
  or answers ``408`` (``gateway.http.security``);
* **per address**: one peer address may hold ``GATEWAY_HTTP_PENDING_PER_IP`` connections whose
  first request has not arrived yet; one more is closed at once. Trusted proxies
  (``GATEWAY_TRUSTED_PROXIES``) are exempt: every client behind them shares their address.

The last needs the server's view of connections, so it lives in the runner:
:class:`GatewayRunner` is ``web.AppRunner`` with :class:`PendingRequests` watching its server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.http.urls import PublicUrls

log = logging.getLogger(__name__)


class PendingRequests:
    """Counts, per peer address, the connections whose first request has not arrived, and
    closes those beyond ``per_ip`` as they open (``per_ip`` 0: no cap)."""

    def __init__(self, per_ip: int, exempt: Callable[[str | None], bool]) -> None:
        self.per_ip = per_ip
        self._exempt = exempt
        self._pending: dict[str, set[RequestHandler]] = {}
        self._address: dict[RequestHandler, str] = {}  # of each pending connection
        #: connections closed at once, for the log and tests
        self.refused = 0

    def pending(self, address: str) -> int:
        return len(self._pending.get(address, ()))

    def install(self, server: web.Server) -> None:
        """Watch ``server``: its connections opening and closing, its requests arriving."""
        made, lost, make_request = (
            server.connection_made,
            server.connection_lost,
            server.request_factory,
        )

        def connection_made(handler: RequestHandler, transport: Any) -> None:
            made(handler, transport)
            self._opened(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._done(handler)
            lost(handler, exc)

        def request_factory(*args: Any, **kwargs: Any) -> web.BaseRequest:
            request = make_request(*args, **kwargs)
            self._done(request.protocol)  # its headers have arrived
            return request

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign,assignment]
        server.request_factory = request_factory

    def _opened(self, handler: RequestHandler, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        if self.per_ip <= 0 or address is None or self._exempt(address):
            return
        pending = self._pending.setdefault(address, set())
        if len(pending) >= self.per_ip:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning(
                    "%s holds %d connections without a request; closing more (%d so far)",
                    address,
                    len(pending),
                    self.refused,
                )
            transport.close()
            return
        pending.add(handler)
        self._address[handler] = address

    def _done(self, handler: RequestHandler) -> None:
        address = self._address.pop(handler, None)
        if address is None:
            return
        pending = self._pending.get(address)
        if pending is not None:
            pending.discard(handler)
            if not pending:
                del self._pending[address]


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose server closes a peer's connections beyond its cap of those
    without a request (``PendingRequests``)."""

    def __init__(self, app: web.Application, *, per_ip: int, urls: PublicUrls, **kwargs: Any):
        super().__init__(app, **kwargs)
        self.pending = PendingRequests(per_ip, urls.trusts)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        self.pending.install(server)
        return server
