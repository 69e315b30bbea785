"""Proxy mode: only the SDP passes through the gateway; media flows browser <-> upstream.

The gateway forwards the browser's offer with the server-held key (which therefore never
reaches the browser), returns the upstream's answer, and joins the call's sideband WebSocket,
which carries the same server events as the data channel: that is how transcripts reach the
gateway without the media passing through it.

Each upstream call is its own conversation, so a reconnect hangs up the old call, starts a new
one with the new offer, and carries the interview over in the contract's way
(``UpstreamClient.carry_over``: Realtime message items over the new call's sideband before the
browser connects, GPT-Live startup ``input``), so the interviewer goes on where it was instead
of starting again. The proxy works the same over either contract. The upstream ends a call when
the browser's peer connection goes (a reload, a lost network), so a sideband that closes by
itself reports the candidate's media lost, not the interview over: the candidate may come back
within the grace period, on a new call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from gateway.upstream.call import BadOffer, CallListener, CallMode, CallUnavailable
from gateway.upstream.integrity import ClientEventPolicy, SessionGuard
from gateway.upstream.openai import UpstreamClient, UpstreamError, merge_session
from signaling.sdp import IceCandidate
from storage.transcripts import Role

log = logging.getLogger(__name__)


class ProxyCall:
    """One proxied upstream call (replaced on reconnect) and its sideband listener."""

    mode: CallMode = "proxy"

    def __init__(
        self,
        upstream: UpstreamClient,
        listener: CallListener,
        *,
        session: dict[str, Any] | None = None,
        client_events: ClientEventPolicy | None = None,
    ) -> None:
        self._upstream = upstream
        self._listener = listener
        self._session = session
        #: what the upstream is asked to refuse on the browser's data channel, where it can
        self._restriction = upstream.restricting_frontend(client_events or ClientEventPolicy())
        self.call_id: str | None = None
        self._sideband: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    async def start(self, offer_sdp: str, *, carry_over: Sequence[tuple[Role, str]] = ()) -> str:
        """Forward the offer, join the sideband, restore ``carry_over`` on the new call, and
        return the upstream's answer.

        The upstream judging the offer bad (400) is the browser's error; anything else means
        the upstream cannot be reached.
        """
        carried = self._upstream.carry_over(carry_over)
        try:
            call = await self._upstream.create_call(
                offer_sdp, merge_session(self._session, carried.session, self._restriction)
            )
        except UpstreamError as exc:
            if exc.status == 400:  # the browser hears only that; the upstream's text is logged
                log.info("the upstream refused the offer: %s", exc)
                raise BadOffer("the AI interviewer's service refused the offer") from None
            raise CallUnavailable(str(exc), reason=f"upstream_{exc.code}") from None
        self.call_id = call.call_id
        try:
            sideband = await self._upstream.open_sideband(call.call_id)
        except UpstreamError as exc:
            await self.close()
            raise CallUnavailable(str(exc), reason=f"upstream_{exc.code}") from None
        for event in carried.sideband_events:
            await sideband.send(event)
        self._sideband = asyncio.create_task(self._listen(sideband, self._guard_for(sideband)))
        return call.answer_sdp

    async def reconnect(self, offer_sdp: str) -> str:
        """A new call for the reconnected browser, carrying the interview so far over."""
        await self.close()
        answer = await self.start(offer_sdp, carry_over=self._listener.conversation())
        self._listener.peer_back()
        return answer

    def candidate_away(self) -> None:
        """Nothing to pause: the upstream hears the browser's own peer connection, and when
        that goes the upstream ends the call (a reconnect is a new call, carried over)."""

    def candidate_back(self) -> None:
        """Nothing to repeat: a reconnect's new call carries the conversation over."""

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        """Nothing to do: the upstream takes no trickle; its checks learn peer-reflexive ones."""

    def _guard_for(self, sideband: ClientConnection) -> SessionGuard:
        """The browser talks to the upstream directly: undo, over the sideband, any change to
        the gateway's configuration that it makes there."""

        def send(text: str) -> None:
            task = asyncio.ensure_future(sideband.send(text))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

        return SessionGuard(
            self._upstream.effective_session(self._session),
            self._upstream.guarded_fields,
            send=send,
            report=lambda fields: self._listener.integrity_event(
                "session_tampered", ",".join(fields)
            ),
        )

    async def _listen(self, sideband: ClientConnection, guard: SessionGuard) -> None:
        reason = "sideband closed"
        try:
            async for message in sideband:
                guard.observe(message)
                self._listener.server_event(message, "sideband")
        except websockets.ConnectionClosedError as exc:
            reason = f"sideband lost: {exc.code}"
        finally:
            await sideband.close()
        # Reached only when the sideband ended by itself: close() cancels this task first.
        log.warning("%s; the upstream call is gone", reason)
        self._listener.peer_lost("upstream_sideband_closed")

    async def close(self) -> None:
        """Leave the sideband and hang up the call; reports nothing to the listener."""
        listener, self._sideband = self._sideband, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if self.call_id is not None:
            call_id, self.call_id = self.call_id, None
            await self._upstream.hangup(call_id)
