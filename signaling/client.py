"""A Python signaling client: what a browser does, for headless candidates and tests.

One reader task receives every server message: it answers keepalive pings, hands ``welcome``
and ``answer`` (or the error that replaces them) to whoever awaits them, and queues the rest
(transcript, state, error, pong, bye) for ``receive()`` / ``async for``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

#: Errors that answer an offer instead of an answer message.
_OFFER_ERRORS = frozenset(
    {"offer_already_made", "bad_sdp", "no_audio", "bad_message", "upstream_failed"}
)


class SignalingClientError(Exception):
    """The server said no (``code`` is its error code), or the socket closed (``closed``)."""

    def __init__(self, code: str, message: str, close_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.close_code = close_code


class SignalingClient:
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
        self._answer_pings = answer_pings
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiting: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self._ended = asyncio.Event()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code if self._ws is not None else None

    async def connect(self, url: str, token: str | None) -> dict[str, Any]:
        """Open the socket, send hello, and return the welcome message."""
        return await self.open_and_request(url, {"type": "hello", "token": token}, "welcome")

    async def open(self, url: str) -> None:
        """Open the socket without saying anything (to test what the server does then)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(url, max_msg_size=0, autoping=True)
        self._reader = asyncio.create_task(self._read())

    async def open_and_request(
        self, url: str, hello: dict[str, Any], expect: str
    ) -> dict[str, Any]:
        await self.open(url)
        return await self._request(hello, expect)

    async def offer(self, sdp: str, *, reconnect: bool = False) -> dict[str, Any]:
        """Send the offer and return the answer message (``sdp`` and ``mode``)."""
        message: dict[str, Any] = {"type": "offer", "sdp": sdp}
        if reconnect:
            message["reconnect"] = True
        return await self._request(message, "answer")

    async def candidate(
        self,
        candidate: str | None,
        *,
        sdp_mid: str | None = None,
        sdp_mline_index: int | None = None,
    ) -> None:
        await self.send(
            {
                "type": "candidate",
                "candidate": candidate,
                "sdpMid": sdp_mid,
                "sdpMLineIndex": sdp_mline_index,
            }
        )

    async def end_of_candidates(self) -> None:
        await self.send({"type": "end-of-candidates"})

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send({"type": "event", "event": event})

    async def ping(self, id_: str | int | None = None) -> None:
        await self.send({"type": "ping", "id": id_})

    async def bye(self, reason: str | None = None) -> None:
        """Say goodbye and wait for the server to close."""
        await self.send({"type": "bye", "reason": reason})
        await self.wait_closed()

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_raw(json.dumps(message))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send any frame as it is: tests use it for malformed input."""
        ws = self._require_ws()
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
            await asyncio.gather(self._reader, return_exceptions=True)
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

    async def _request(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting = (expect, future)
        try:
            await self.send(message)
            return await asyncio.wait_for(asyncio.shield(future), self._timeout)
        finally:
            self._waiting = None

    async def _read(self) -> None:
        ws = self._require_ws()
        try:
            async for frame in ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    await self._route(json.loads(frame.data))
        finally:
            self._ended.set()
            self._queue.put_nowait(None)
            if self._waiting is not None and not self._waiting[1].done():
                self._waiting[1].set_exception(
                    SignalingClientError("closed", "the socket closed", ws.close_code)
                )

    async def _route(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ping" and self._answer_pings:
            await self.send({"type": "pong", "id": message.get("id")})
            return
        if self._waiting is not None and not self._waiting[1].done():
            expect, future = self._waiting
            if kind == expect:
                future.set_result(message)
                return
            if kind == "error" and (
                message.get("fatal") or expect == "welcome" or message.get("code") in _OFFER_ERRORS
            ):
                future.set_exception(
                    SignalingClientError(str(message.get("code")), str(message.get("message")))
                )
        self._queue.put_nowait(message)
