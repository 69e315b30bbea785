"""The one interface every way of connecting a candidate to the AI interviewer implements.

A session holds one ``Call`` whatever its mode: the relay (``gateway.media.relay``: the gateway
is a WebRTC peer on both legs) and the proxy (``gateway.upstream.proxy``: only the SDP passes
through) are two implementations, and a new upstream contract is one more. The session never
asks which one it holds, beyond ``mode`` for the record.

What happens on the call reaches the session through the ``CallListener`` it passes in, as
events, not state to poll: the candidate's peer went away or came back, the upstream failed, a
server event arrived. A call reports only what happened *to* it: closing it, or replacing a
browser leg on reconnect, never reports a loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, Protocol
from uuid import UUID

from signaling.sdp import IceCandidate
from storage.transcripts import Role, Source

CallMode = Literal["relay", "proxy"]


class CallError(Exception):
    """A call could not do what was asked; subclasses say whose fault it was."""


class BadOffer(CallError):
    """The browser's offer (or candidate) was refused: the browser's error, the call lives on."""


class CallUnavailable(CallError):
    """The call could not be set up for a reason that is not the offer's fault (the upstream
    leg did not connect in time, the upstream refused). Auto mode may try another kind."""

    def __init__(self, message: str, *, reason: str = "upstream_failed") -> None:
        super().__init__(message)
        #: the end reason a session records if it gives up because of this
        self.reason = reason


class CallListener(Protocol):
    """What a call tells its session. Every method is called from the event loop, must not
    block, and must not raise."""

    def server_event(self, message: str | bytes, source: Source) -> None:
        """One upstream server event (data channel or sideband), for transcripts."""

    def peer_connected(self, selected_pair: str | None) -> None:
        """The candidate's media path is up (ICE and DTLS done), for the record."""

    def peer_lost(self, reason: str) -> None:
        """The candidate's media went away (``peer_failed``, ``peer_closed``, ``peer_silent``):
        the session may wait for a reconnect."""

    def peer_back(self) -> None:
        """Media arrives again from the candidate after a loss, on the same or a new leg."""

    def upstream_failed(self, reason: str) -> None:
        """The AI side is gone (``upstream_failed``, ``upstream_closed``, ``upstream_silent``,
        ``upstream_sideband_closed``): the conversation cannot go on."""

    def integrity_event(self, kind: str, detail: str) -> None:
        """The candidate's client tried to steer the interviewer and the call stopped it
        (``client_event_refused``: an event the policy dropped; ``session_tampered``: a
        configuration change the call undid); ``detail`` says what, briefly."""

    def conversation(self) -> Sequence[tuple[Role, str]]:
        """The interview so far, final lines in order, for a call that must start a new
        upstream conversation and carry the old one over (a proxy's reconnect)."""


class Call(Protocol):
    """One interview's connection to the AI interviewer, in one mode."""

    @property
    def mode(self) -> CallMode: ...

    @property
    def call_id(self) -> str | None:
        """The upstream's id of the current call (a proxy's changes on reconnect)."""

    async def start(self, offer_sdp: str, *, carry_over: Sequence[tuple[Role, str]] = ()) -> str:
        """Answer the browser's first offer, the new upstream call given ``carry_over`` (the
        interview so far of an earlier process, if any). Raises ``BadOffer`` or
        ``CallUnavailable``."""

    async def reconnect(self, offer_sdp: str) -> str:
        """Answer a reconnected browser's new offer; the relay keeps the AI conversation."""

    async def add_candidate(self, candidate: IceCandidate | None) -> None:
        """A trickled browser candidate (``None``: end of candidates)."""

    def candidate_away(self) -> None:
        """The candidate is gone for now (the session's grace runs): the interviewer should
        not go on asking questions to nobody. Called once per absence."""

    def candidate_back(self) -> None:
        """The candidate is back from an absence: the interviewer asks its last question
        again. Called once per absence, after ``candidate_away``."""

    async def close(self) -> None:
        """Hang up, once; reports nothing to the listener."""


class CallFactory(Protocol):
    """Builds the calls a session asks for; the composition root decides the implementations,
    so the sessions room never imports the media stack."""

    def create(
        self,
        mode: CallMode,
        listener: CallListener,
        upstream_session: dict | None,
        *,
        tenant_id: UUID,
        interview_id: UUID,
        browser_ice_servers: Sequence[dict[str, Any]] = (),
        recording: str | None = None,
    ) -> Call:
        """A call for the interview ``interview_id`` of ``tenant_id`` (a recording, if the
        deployment records it, is filed under both: ``recording`` is what the interview asked,
        ``audio``, ``off`` or None for the deployment's choice); a relay's browser leg uses
        ``browser_ice_servers`` (the session's)."""
        ...

    def ended(
        self,
        tenant_id: UUID,
        interview_id: UUID,
        session_ids: Sequence[str],
        recording: str | None = None,
    ) -> asyncio.Task[None] | None:
        """The interview's calls are closed (``session_ids``: every upstream session it had,
        in order); what follows it in the background, if anything (the upstream's recording
        fetched: ``recording.content``). Never waits."""
        ...

    @property
    def upstream_kind(self) -> str:
        """What the call's upstream is (``openai``, ``sim``), for the session row."""


class Unsupervised:
    """A ``CallListener`` for a call that no session supervises (the relay benchmark): it
    ignores everything, so the call runs until closed."""

    def server_event(self, message: str | bytes, source: Source) -> None:
        pass

    def peer_connected(self, selected_pair: str | None) -> None:
        pass

    def peer_lost(self, reason: str) -> None:
        pass

    def peer_back(self) -> None:
        pass

    def upstream_failed(self, reason: str) -> None:
        pass

    def integrity_event(self, kind: str, detail: str) -> None:
        pass

    def conversation(self) -> Sequence[tuple[Role, str]]:
        return ()
