"""Proxy mode: only the SDP passes through the gateway; media flows browser <-> upstream.

The gateway forwards the browser's offer with the server-held key (which therefore never
reaches the browser), returns the upstream's answer, and joins the call's sideband WebSocket,
which carries the same server events as the data channel: that is how transcripts reach the
gateway without the media passing through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from gateway.upstream.openai import RealtimeUpstream, UpstreamError


class ProxyCall:
    """One proxied upstream call and its sideband listener."""

    def __init__(
        self,
        upstream: RealtimeUpstream,
        *,
        on_server_event: Callable[[str | bytes], None],
        on_sideband_closed: Callable[[str], None],
        session: dict[str, Any] | None = None,
    ) -> None:
        self._upstream = upstream
        self._on_server_event = on_server_event
        self._on_sideband_closed = on_sideband_closed
        self._session = session
        self.call_id: str | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, offer_sdp: str) -> str:
        """Forward the offer, join the sideband, and return the upstream's answer."""
        call = await self._upstream.create_call(offer_sdp, self._session)
        self.call_id = call.call_id
        try:
            sideband = await self._upstream.open_sideband(call.call_id)
        except UpstreamError:
            await self.close()
            raise
        self._listener = asyncio.create_task(self._listen(sideband))
        return call.answer_sdp

    async def _listen(self, sideband: ClientConnection) -> None:
        reason = "sideband closed"
        try:
            async for message in sideband:
                self._on_server_event(message)
        except websockets.ConnectionClosedError as exc:
            reason = f"sideband lost: {exc.code}"
        finally:
            await sideband.close()
            if not self._closing:
                self._on_sideband_closed(reason)

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self.call_id is not None:
            call_id, self.call_id = self.call_id, None
            await self._upstream.hangup(call_id)
