"""The server's side of one signaling WebSocket, as a sans-I/O state machine.

Like ``websockets.server.ServerProtocol`` on ``websockets.protocol.Protocol``: the shared core
(``signaling.protocol``) drives the conversation; this module adds the server's rules. The I/O
layer (``server.py``) feeds in what happened (a frame arrived, a timer fired, the handler
answered) and drains ``actions()`` to learn what to do (send a message, close the socket, call
the handler). Every rule of the protocol is tested by feeding messages and reading actions.

Phases::

    AWAITING_HELLO --hello ok--> AUTHENTICATING --accept()--> READY --offer--> NEGOTIATING
         |                           |                                             |
         |                        refuse()                                   answer_ready()
         v                           v                                             v
       CLOSED <----- bye, fatal error, close(), connection_lost() ------------ ANSWERED
                                                        offer{reconnect:true} -> NEGOTIATING

Before a good ``hello`` every error is fatal: an unauthenticated client gets one answer.
After it, bad input gets an error and the conversation goes on (unless the code is fatal).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signaling import liveness, messages
from signaling.candidates import CandidatePolicy
from signaling.errors import CLOSE_GOING_AWAY, CLOSE_NORMAL, SignalingError
from signaling.messages import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Bye,
    Candidate,
    ClientEvent,
    ClientMessage,
    Hello,
    Offer,
    Ping,
    Pong,
)
from signaling.protocol import CloseConnection, Protocol, SendMessage
from signaling.sdp import (
    IceCandidate,
    OfferSummary,
    parse_offer,
    resolve_candidate,
    resolve_mline,
)
from signaling.tokens import OBSERVER_ROLES, TokenClaims, TokenVerifier

#: Non-fatal client errors tolerated on one socket before it is closed with too_many_errors.
DEFAULT_MAX_ERRORS = 32

MODES = frozenset({"relay", "proxy"})
TRANSCRIPT_ROLES = frozenset({"candidate", "interviewer"})


class Phase(enum.Enum):
    AWAITING_HELLO = "awaiting_hello"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    NEGOTIATING = "negotiating"
    ANSWERED = "answered"
    CLOSED = "closed"


_OPEN_PHASES = frozenset({Phase.READY, Phase.NEGOTIATING, Phase.ANSWERED})


@dataclass(frozen=True)
class Answer:
    """The handler's reply to an offer."""

    sdp: str
    mode: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")


# --- actions: what the I/O layer must do, in order (besides SendMessage, CloseConnection) -----


@dataclass(frozen=True)
class Authenticate:
    """The token is good: ask the gateway for a handler (it may still refuse). A client that
    rejoins a live session presents that session's ``reconnect_secret``."""

    claims: TokenClaims
    reconnect_secret: str | None = None


@dataclass(frozen=True)
class DeliverOffer:
    """``sdp`` is the offer as the gateway must use it: the candidate lines the address policy
    refused are taken out (``candidates_dropped`` of them)."""

    sdp: str
    reconnect: bool
    summary: OfferSummary
    candidates_dropped: int = 0


@dataclass(frozen=True)
class DeliverCandidate:
    """``candidate is None`` is end-of-candidates."""

    candidate: IceCandidate | None


@dataclass(frozen=True)
class DeliverClientEvent:
    event: dict[str, Any]


HandlerCall = Authenticate | DeliverOffer | DeliverCandidate | DeliverClientEvent
Action = SendMessage | CloseConnection | HandlerCall


class ServerProtocol(Protocol[HandlerCall, ClientMessage]):
    """The gateway's side of one socket's conversation."""

    def __init__(
        self,
        interview_id: str,
        verifier: TokenVerifier,
        *,
        ping_interval: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_errors: int = DEFAULT_MAX_ERRORS,
        candidate_policy: CandidatePolicy | None = None,
    ) -> None:
        super().__init__()
        self.interview_id = interview_id
        self.claims: TokenClaims | None = None
        self._phase = Phase.AWAITING_HELLO
        self._verifier = verifier
        self._ping_interval = ping_interval
        self._max_message_size = max_message_size
        self._max_errors = max_errors
        self._errors = 0
        self._offer: OfferSummary | None = None
        #: m-lines (by index) whose candidates the client ended; all of them once it ended all
        self._ended_mlines: set[int] = set()
        #: The address rule for remote candidates (default: none of DENIED_NETWORKS allowed),
        #: and how many of them the current offer brought so far.
        self._candidate_policy = candidate_policy or CandidatePolicy()
        self._remote_candidates = 0
        self._pings_sent = 0
        self._heard_since_ping = True

    @property
    def phase(self) -> Phase:
        return Phase.CLOSED if self.closed else self._phase

    # --- input from the client ----------------------------------------------------------------

    def receive_frame(self, frame: str | bytes) -> None:
        """One WebSocket data frame from the client: any frame, even a bad one, is a sign of
        life for the keepalive."""
        if not self.closed:
            self._heard_since_ping = True
        super().receive_frame(frame)

    def _parse(self, frame: str | bytes) -> ClientMessage:
        return messages.parse_client_message(frame, max_size=self._max_message_size)

    def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, Bye):
            self._close(CLOSE_NORMAL, "bye", bye=True)
        elif self.phase is Phase.AWAITING_HELLO:
            if not isinstance(message, Hello):
                raise SignalingError("hello_required", "the first message must be hello")
            self.claims = self._verifier.verify(message.token, self.interview_id)
            _check_role(message.role, self.claims.role)
            self._phase = Phase.AUTHENTICATING
            self._emit(Authenticate(self.claims, message.reconnect_secret))
        elif isinstance(message, Hello):
            raise SignalingError("bad_message", "hello was already received")
        elif isinstance(message, Ping):
            self._send(messages.pong(message.id))
        elif isinstance(message, Pong):
            pass  # receive_frame already noted that the client is alive
        elif isinstance(message, Offer):
            self._receive_offer(message)
        elif isinstance(message, Candidate):
            self._receive_candidate(message)
        elif isinstance(message, ClientEvent):
            self._emit(DeliverClientEvent(message.event))

    def _receive_offer(self, offer: Offer) -> None:
        awaiting_answer = self.phase is Phase.NEGOTIATING or (
            self.phase is Phase.AUTHENTICATING and self._offer is not None
        )
        if awaiting_answer or (self.phase is Phase.ANSWERED and not offer.reconnect):
            raise SignalingError(
                "offer_already_made",
                "this socket already has an offer; send reconnect: true to replace the connection",
            )
        summary = parse_offer(offer.sdp)
        screened = self._candidate_policy.screen_offer(offer.sdp)
        # An offer made while the gateway is still admitting the socket is queued behind it.
        if self.phase is not Phase.AUTHENTICATING:
            self._phase = Phase.NEGOTIATING
        self._offer = summary
        self._ended_mlines = set()
        self._remote_candidates = screened.kept
        self._emit(DeliverOffer(screened.sdp, offer.reconnect, summary, screened.dropped))

    def _receive_candidate(self, message: Candidate) -> None:
        """A trickled candidate, or an end-of-candidates: ``""`` naming an m-line ends that
        m-line's (Firefox sends one per m-line, then null), null ends all. The gateway hears
        end-of-candidates once, when every m-line has ended; a repeated end is harmless."""
        offer = self._offer
        if offer is None:
            raise SignalingError("offer_required", "send the offer before its candidates")
        every = {section.index for section in offer.sections}
        if message.candidate is None or message.candidate == "":
            if message.candidate is None:
                ended = every
            else:
                ended = {resolve_mline(offer, message.sdp_mid, message.sdp_mline_index).index}
            was_complete = self._ended_mlines >= every
            self._ended_mlines |= ended
            if not was_complete and self._ended_mlines >= every:
                self._emit(DeliverCandidate(None))
            return
        candidate = resolve_candidate(
            offer, message.candidate, message.sdp_mid, message.sdp_mline_index
        )
        if candidate.sdp_mline_index in self._ended_mlines:
            index = candidate.sdp_mline_index
            raise SignalingError("bad_candidate", f"m-line {index} already ended its candidates")
        refusal = self._candidate_policy.refusal_of(candidate.candidate)
        if refusal is not None:
            raise SignalingError("candidate_refused", f"{refusal}: the gateway will not check it")
        limit = self._candidate_policy.max_candidates
        if self._remote_candidates >= limit:
            raise SignalingError("candidate_refused", f"more than {limit} candidates for one offer")
        self._remote_candidates += 1
        self._emit(DeliverCandidate(candidate))

    def _bad_input(self, error: SignalingError) -> None:
        if self.phase is Phase.AWAITING_HELLO and not error.fatal:
            error = SignalingError(error.code, error.message, fatal=True)
        # A refused candidate is no misbehaviour: browsers trickle their private addresses too.
        if error.code != "candidate_refused":
            self._errors += 1
        if not error.fatal and self._errors > self._max_errors:
            error = SignalingError("too_many_errors", f"more than {self._max_errors} bad messages")
        self.report(error)

    # --- input from timers --------------------------------------------------------------------

    def hello_timed_out(self) -> None:
        """The hello deadline passed; harmless if hello already came."""
        if self.phase is Phase.AWAITING_HELLO:
            self.report(SignalingError("hello_timeout", "no hello in time"))

    def keepalive_due(self) -> None:
        """Called every ping interval: ping the client, or give up if it said nothing since
        the previous ping (any frame counts as a sign of life, not only pong)."""
        if self.phase not in _OPEN_PHASES:
            return
        if not self._heard_since_ping:
            self.report(SignalingError("ping_timeout", "no message for two ping intervals"))
            return
        self._heard_since_ping = False
        self._pings_sent += 1
        self._send(messages.ping(self._pings_sent))

    # --- input from the gateway (handler and channel) ------------------------------------------

    def accept(
        self,
        session_id: str | None = None,
        ice_servers: Sequence[dict[str, Any]] = (),
        reconnect_secret: str | None = None,
    ) -> None:
        """The gateway admitted the socket: welcome it (with the ICE servers the browser's
        peer connection is to use, and the secret that rejoins its session), and let queued
        offers go on."""
        if self.phase is not Phase.AUTHENTICATING or self.claims is None:
            return
        self._phase = Phase.NEGOTIATING if self._offer is not None else Phase.READY
        self._send(
            messages.welcome(
                interview_id=self.interview_id,
                role=self.claims.role,
                session_id=session_id,
                ping_interval=self._ping_interval,
                silence_timeout=liveness.client_silence(self._ping_interval),
                max_message_size=self._max_message_size,
                ice_servers=ice_servers,
                reconnect_secret=reconnect_secret,
            )
        )

    def refuse(self, error: SignalingError) -> None:
        """The gateway will not take this socket (interview over, at capacity, ...)."""
        self.report(SignalingError(error.code, error.message, fatal=True))

    def answer_ready(self, answer: Answer) -> None:
        if self.phase is Phase.NEGOTIATING:
            self._phase = Phase.ANSWERED
            self._send(messages.answer(answer.sdp, answer.mode))

    def offer_failed(self, error: SignalingError) -> None:
        """The handler could not answer; unless fatal, the client may offer again."""
        if self.phase is Phase.NEGOTIATING:
            self._phase = Phase.READY
            self._offer = None
        self.report(error)

    def send_transcript(
        self,
        *,
        role: str,
        text: str,
        final: bool,
        item_id: str | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        if role not in TRANSCRIPT_ROLES:
            raise ValueError(f"transcript role must be one of {sorted(TRANSCRIPT_ROLES)}")
        if self.phase in _OPEN_PHASES:
            when = at or datetime.now(UTC)
            self._send(
                messages.transcript(
                    role=role, text=text, final=final, item_id=item_id, event_id=event_id, at=when
                )
            )

    def send_state(self, state: str, detail: dict[str, Any] | None = None) -> None:
        if self.phase in _OPEN_PHASES:
            self._send(messages.state(state, detail))

    def report(self, error: SignalingError) -> None:
        """Tell the client about an error; a fatal one closes the session with its code."""
        if self.closed:
            return
        self._send(messages.error(error))
        if error.fatal:
            self._close(error.close_code, error.code)

    def close(self, reason: str = "bye") -> None:
        """The gateway ends the conversation: bye, then a normal close."""
        self._close(CLOSE_NORMAL, reason, bye=True)

    def shutdown(self) -> None:
        """The server is going away."""
        self._close(CLOSE_GOING_AWAY, "shutdown", bye=True)

    def connection_lost(self, reason: str = "disconnected") -> None:
        """The socket is gone; nothing can be sent any more."""
        self._lost(reason)


def _check_role(asked: str | None, role: str) -> None:
    """A ``hello`` that asks to join as something its token is not (a candidate's token used
    to observe, an observer's to take the interview) is refused before anything is admitted."""
    if asked is None:
        return
    allowed = {"candidate"} if asked == "candidate" else OBSERVER_ROLES
    if role not in allowed:
        raise SignalingError("role_not_allowed", f"a {role} token cannot join as {asked}")


#: The server protocol's first name, kept for the code and tests that import it.
SignalingSession = ServerProtocol
