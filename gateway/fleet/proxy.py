"""The front's half of a candidate's signaling on the ``local`` backend: the browser's WebSocket,
forwarded frame by frame to its worker's.

Forwarding, not a redirect: a browser's WebSocket does not follow an HTTP redirect, and the
worker listens on loopback, which the browser could not reach anyway. So the browser keeps one
public URL, the front passes frames through without reading them (the worker's signaling server
checks every one), and only media goes to the worker directly. Fly routes the same request with
``fly-replay`` instead, and no front stays in the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from signaling import messages
from signaling.errors import SignalingError

log = logging.getLogger(__name__)

#: close codes a worker sends on purpose; anything else (a reset, no close frame) is a lost one
_ABNORMAL = {None, WSCloseCode.ABNORMAL_CLOSURE, WSCloseCode.INTERNAL_ERROR}


class WorkerUnreachable(Exception):
    """The worker's signaling socket could not be opened."""


async def forward(
    browser: web.WebSocketResponse,
    http: aiohttp.ClientSession,
    url: str,
    first: str,
    *,
    max_message_size: int,
) -> None:
    """Opens the worker's socket, sends it the browser's ``first`` frame (the hello the front
    has read), then forwards both ways until one side closes; the other side is closed with the
    same code. A worker that vanishes (no close frame) costs the browser a ``worker_lost``
    error, so the candidate learns what happened rather than seeing a bare 1006."""
    try:
        worker = await http.ws_connect(url, max_msg_size=max_message_size, autoping=True)
    except (aiohttp.ClientError, OSError) as exc:
        raise WorkerUnreachable(str(exc)) from exc
    async with worker:
        await worker.send_str(first)
        to_worker = asyncio.create_task(pass_frames(browser, worker))
        to_browser = asyncio.create_task(pass_frames(worker, browser))
        await asyncio.wait({to_worker, to_browser}, return_when=asyncio.FIRST_COMPLETED)
        for task in (to_worker, to_browser):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not browser.closed:
            if worker.close_code in _ABNORMAL:
                log.warning(
                    "worker socket %s ended abnormally (%s, %s)",
                    url,
                    worker.close_code,
                    worker.exception(),
                )
                await send_error(
                    browser, SignalingError("worker_lost", "the interview's worker stopped")
                )
            else:
                await browser.close(code=worker.close_code or WSCloseCode.OK)
        if not worker.closed:
            await worker.close(code=browser.close_code or WSCloseCode.GOING_AWAY)


async def send_error(browser: web.WebSocketResponse, error: SignalingError) -> None:
    """An ``error`` message in the protocol's own shape, then the close it calls for."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        await browser.send_str(messages.encode(messages.error(error)))
        await browser.close(code=error.close_code)


async def pass_frames(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    target: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Every text and binary frame of ``source`` to ``target``, until ``source`` ends (the same
    loop serves both directions: the browser's socket and the worker's have one interface; the
    Fly proxy stand-in, ``gateway.sim.fly_proxy``, passes frames with it too)."""
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await target.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await target.send_bytes(msg.data)
