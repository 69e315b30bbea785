"""A stand-in for Fly's proxy, so the ``fly-replay`` routing path runs end to end off Fly.

This is not Fly. It follows Fly's documented ``fly-replay`` contract (``superfly/docs``,
``networking/dynamic-request-routing``, summed up in ``shared/reference/fly-machines.md``) as
far as the front uses it: an aiohttp reverse proxy on loopback in front of one app's instance
(the front). A request goes to the front; when the front's answer carries ``fly-replay``, the
answer is dropped and the same request (method, path, headers, body; a WebSocket upgrade is
replayed as an upgrade, and its frames then pass both ways) is sent to the Machine its
``instance=`` names, with ``fly-replay-src: instance=<sender>;region=<region>;t=<µs>;state=<state>``
added as Fly adds it. Any other answer is passed through (status, headers, body; for an upgrade
the front accepted, its frames and close code).

A Machine id is found with ``instances`` (for the Machines API stand-in,
:meth:`gateway.sim.machines.MachinesApi.address`); ``app=`` must name ``app`` when given.

Not emulated: ``region=``, ``prefer_instance=``, ``elsewhere=``, replay caching, load balancing
over several instances, TLS, Fly's own request headers (``Fly-Client-IP``, ``X-Forwarded-*``),
its 1 MB replay limit beyond refusing larger bodies, a replayed answer that asks for another
replay (it is passed through as it is), and what Fly answers for a Machine it cannot reach
(here: 502 with ``{"error": ...}``, counted in :attr:`FlyProxy.unroutable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, hdrs, web
from multidict import CIMultiDict

from gateway.fleet.proxy import pass_frames
from gateway.fleet.replay import REPLAY, REPLAY_SRC, parse_fields

#: Fly replays request bodies up to this size
MAX_REPLAY_BODY = 1024 * 1024
#: headers of one hop (RFC 9110 §7.6.1) and of the WebSocket handshake, which aiohttp's client
#: makes afresh for each hop
_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.CONTENT_LENGTH,
        hdrs.SEC_WEBSOCKET_KEY,
        hdrs.SEC_WEBSOCKET_VERSION,
        hdrs.SEC_WEBSOCKET_EXTENSIONS,
        hdrs.SEC_WEBSOCKET_ACCEPT,
        hdrs.SEC_WEBSOCKET_PROTOCOL,
    )
)


@dataclass
class Replay:
    """One replay the proxy made: to which Machine, with which ``fly-replay-src``."""

    instance: str
    replay_src: str


@dataclass
class FlyProxy:
    """The proxy's routing state and its aiohttp application (:meth:`app`)."""

    #: the front's base URL (``http://127.0.0.1:PORT``): every request goes there first
    origin: str
    #: the app whose Machines ``instances`` finds
    app_name: str
    #: a Machine id's base URL, or None when it has none (not started, unknown)
    instances: Callable[[str], str | None]
    #: the front's own Machine id and region, as ``fly-replay-src`` names the sender
    origin_instance: str = "front-machine"
    region: str = "ams"
    #: every replay made, in order (a test reads what the front asked for)
    replays: list[Replay] = field(default_factory=list)
    unroutable: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REPLAY_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._http = aiohttp.ClientSession(auto_decompress=False)

    async def _close(self, _: web.Application) -> None:
        await self._http.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        body = b"" if upgrade else await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers.pop(REPLAY_SRC, None)  # Fly sets it; a client cannot
        relay = self._upgrade if upgrade else self._request
        answer = await relay(request, self.origin, headers, body)
        if isinstance(answer, str):  # the front asked for a replay
            fields = parse_fields(answer)
            instance = fields.get("instance", "")
            target = self.instances(instance) if instance else None
            if target is None or fields.get("app", self.app_name) != self.app_name:
                self.unroutable += 1
                return web.json_response({"error": f"no route to {answer!r}"}, status=502)
            src = f"instance={self.origin_instance};region={self.region};t={_micros()}"
            if "state" in fields:
                src += f";state={fields['state']}"
            self.replays.append(Replay(instance, src))
            answer = await relay(request, target, {**headers, REPLAY_SRC: src}, body)
        if isinstance(answer, str):  # a replayed answer is not replayed again here
            return web.Response(status=204, headers={REPLAY: answer})
        return answer

    async def _request(
        self, request: web.Request, base: str, headers: dict[str, str], body: bytes
    ) -> web.StreamResponse | str:
        """A plain request to ``base``: its answer, or its ``fly-replay`` value."""
        async with self._http.request(
            request.method,
            base + request.rel_url.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as answer:
            if REPLAY in answer.headers:
                return answer.headers[REPLAY]
            kept = CIMultiDict((k, v) for k, v in answer.headers.items() if k.lower() not in _HOP)
            return web.Response(status=answer.status, headers=kept, body=await answer.read())

    async def _upgrade(
        self, request: web.Request, base: str, headers: dict[str, str], _: bytes
    ) -> web.StreamResponse | str:
        """A WebSocket upgrade to ``base``: once it is accepted there, the browser's is
        accepted here and frames pass both ways until either side closes, the other closed
        with its code; a refusal's status (or ``fly-replay`` value) otherwise."""
        url = base.replace("http", "ws", 1) + request.rel_url.path_qs
        offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        try:
            upstream = await self._http.ws_connect(url, headers=headers, protocols=protocols)
        except aiohttp.WSServerHandshakeError as refused:
            if refused.headers is not None and REPLAY in refused.headers:
                return refused.headers[REPLAY]
            return web.Response(status=refused.status, text=refused.message)
        except (aiohttp.ClientError, OSError) as exc:
            self.unroutable += 1
            return web.json_response({"error": f"unreachable: {exc}"}, status=502)
        browser = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
        await browser.prepare(request)
        await _until_either(pass_frames(browser, upstream), pass_frames(upstream, browser))
        if not browser.closed:
            await browser.close(code=upstream.close_code or WSCloseCode.ABNORMAL_CLOSURE)
        if not upstream.closed:
            await upstream.close(code=browser.close_code or WSCloseCode.GOING_AWAY)
        return browser


async def _until_either(*loops: Coroutine[Any, Any, None]) -> None:
    """Runs the coroutines until the first ends; the rest are cancelled."""
    tasks = [asyncio.ensure_future(loop) for loop in loops]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _micros() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Served:
    proxy: FlyProxy
    url: str


@contextlib.asynccontextmanager
async def serve(
    *, origin: str, app_name: str, instances: Callable[[str], str | None]
) -> AsyncIterator[Served]:
    """The stand-in on ``127.0.0.1`` (a port of the system's choosing) in front of ``origin``."""
    proxy = FlyProxy(origin, app_name, instances)
    runner = web.AppRunner(proxy.app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield Served(proxy, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()
