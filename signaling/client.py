"""A Python signaling client: what a browser does, for headless candidates and tests.

A thin asyncio shell around ``ClientProtocol``, which holds every rule. One reader task feeds
the server's frames in; every task drains the protocol's actions under one lock, so frames
leave in the order the protocol produced them. A request (``connect``, ``offer``) awaits the
protocol's ``Replied`` or ``Refused``; every other message is queued for ``receive()`` /
``async for``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from signaling import messages
from signaling.client_protocol import (
    ClientProtocol,
    Deliver,
    Refused,
    Replied,
    SignalingClientError,
)
from signaling.protocol import CloseConnection, SendMessage

__all__ = ["SignalingClient", "SignalingClientError"]

log = logging.getLogger(__name__)

#: What aiohttp raises when a frame cannot be written because the socket is going away.
_SOCKET_ERRORS = (aiohttp.ClientError, ConnectionError)


class SignalingClient:
    """One signaling socket, driven the way a browser drives it; one request at a time."""

    def __init__(
        self,
        http: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 10.0,
        answer_pings: bool = True,
    ) -> None:
        self._http = http
        self._owns_http = http is None
        self._timeout = timeout
        self._protocol = ClientProtocol(answer_pings=answer_pings)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reply: asyncio.Future[dict[str, Any]] | None = None
        self._ended = asyncio.Event()

    @property
    def close_code(self) -> int | None:
        return self._protocol.close_code

    async def connect(
        self,
        url: str,
        token: str | None,
        *,
        role: str | None = None,
        reconnect_secret: str | None = None,
    ) -> dict[str, Any]:
        """Open the socket, send hello (asking to join as ``role``, when given), and return
        the welcome message. Rejoining a live session takes the ``reconnect_secret`` an
        earlier welcome of it carried."""
        await self.open(url)
        return await self._request(lambda: self._protocol.hello(token, role, reconnect_secret))

    async def open(self, url: str) -> None:
        """Open the socket without saying anything (to test what the server does then)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=0, autoping=True)
        self._reader = asyncio.create_task(self._read(self._ws))

    async def offer(self, sdp: str, *, reconnect: bool = False) -> dict[str, Any]:
        """Send the offer and return the answer message (``sdp`` and ``mode``)."""
        return await self._request(lambda: self._protocol.offer(sdp, reconnect=reconnect))

    async def candidate(
        self,
        candidate: str | None,
        *,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = None,
    ) -> None:
        self._protocol.candidate(candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index)
        await self._flush()

    async def end_of_candidates(self) -> None:
        self._protocol.end_of_candidates()
        await self._flush()

    async def send_event(self, event: dict[str, Any]) -> None:
        self._protocol.event(event)
        await self._flush()

    async def ping(self, id_: str | int | None = None) -> None:
        self._protocol.ping(id_)
        await self._flush()

    async def bye(self, reason: str | None = None) -> None:
        """Say goodbye and wait for the server to close."""
        self._protocol.bye(reason)
        await self._flush()
        await self.wait_closed()

    async def send(self, message: dict[str, Any]) -> None:
        """Send any message as it is, outside the request bookkeeping."""
        self._protocol.send(message)
        await self._flush()

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame as it is, past the protocol: tests use it for malformed input."""
        ws = self._require_ws()
        async with self._lock:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

    async def receive(self) -> dict[str, Any]:
        """The next queued server message, within the client's timeout;
        ``SignalingClientError('closed')`` once the socket is closed."""
        async with asyncio.timeout(self._timeout):
            return await self._next()

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Every queued server message until the socket closes (no timeout)."""
        while True:
            try:
                yield await self._next()
            except SignalingClientError:
                return

    async def _next(self) -> dict[str, Any]:
        message = await self._queue.get()
        if message is None:
            self._queue.put_nowait(None)  # keep telling later callers
            raise SignalingClientError("closed", "the socket is closed", self.close_code)
        return message

    async def wait_closed(self) -> int | None:
        """Wait (within the client's timeout) until the server closed; return its close code."""
        async with asyncio.timeout(self._timeout):
            await self._ended.wait()
        return self.close_code

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        if self._owns_http and self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> SignalingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _require_ws(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise RuntimeError("connect() first")
        return self._ws

    async def _request(self, send: Callable[[], None]) -> dict[str, Any]:
        """Make the request ``send`` puts into the protocol and await its reply."""
        self._require_ws()
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reply = reply
        try:
            send()
            await self._flush()
            return await asyncio.wait_for(reply, self._timeout)
        except TimeoutError:
            self._protocol.abandon_request()
            raise
        finally:
            self._reply = None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for frame in ws:
                if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._protocol.receive_frame(frame.data)
                    await self._flush()
        except _SOCKET_ERRORS as exc:
            log.info("signaling client: could not answer the server, socket going away: %r", exc)
        finally:
            self._protocol.connection_lost(ws.close_code)
            try:
                await self._flush()
            except _SOCKET_ERRORS as exc:
                log.info("signaling client: a message was not sent before the close: %r", exc)
            finally:
                self._queue.put_nowait(None)
                self._ended.set()

    async def _flush(self) -> None:
        """Carry out the protocol's pending actions, in order. Once a frame cannot be written,
        later frames are not tried (they would arrive out of order) and the failure is raised
        to whoever flushed; replies and messages are handed on all the same."""
        ws = self._require_ws()
        failure: BaseException | None = None
        async with self._lock:
            for action in self._protocol.actions():
                if isinstance(action, SendMessage | CloseConnection):
                    if failure is None:
                        try:
                            await self._write(ws, action)
                        except _SOCKET_ERRORS as exc:
                            failure = exc
                elif isinstance(action, Deliver):
                    self._queue.put_nowait(action.message)
                elif self._reply is not None and not self._reply.done():
                    if isinstance(action, Replied):
                        self._reply.set_result(action.message)
                    elif isinstance(action, Refused):
                        self._reply.set_exception(action.error)
        if failure is not None:
            raise failure

    @staticmethod
    async def _write(
        ws: aiohttp.ClientWebSocketResponse, action: SendMessage | CloseConnection
    ) -> None:
        if isinstance(action, SendMessage):
            await ws.send_str(messages.encode(action.message))
        else:
            await ws.close(code=action.code, message=action.reason.encode())
