"""The client's side of one signaling WebSocket, as a sans-I/O state machine.

Like ``websockets.client.ClientProtocol`` beside ``ServerProtocol``: the same core
(``signaling.protocol``) and the same codec (``signaling.messages``) as the server's side, with
the client's rules on top. The asyncio ``SignalingClient`` feeds in the server's frames and
drains ``actions()``.

What the client decides: which reply a request waits for (``welcome`` after ``hello``,
``answer`` after ``offer``) and which error replaces that reply; that keepalive pings are
answered without bothering the application; and that everything else is the application's to
read, in order. It does not police its own sends: tests use it to break the rules on purpose,
and the server is the judge of those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signaling import messages
from signaling.errors import SignalingError
from signaling.protocol import CloseConnection, Protocol, SendMessage

#: Non-fatal errors the server sends instead of an answer (any fatal error ends a request too,
#: and before welcome every error does).
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


# --- actions, besides SendMessage and CloseConnection -----------------------------------------


@dataclass(frozen=True)
class Replied:
    """The reply the pending request waited for (``welcome`` or ``answer``)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class Refused:
    """The pending request ends without its reply: the server's error, or a closed socket."""

    error: SignalingClientError


@dataclass(frozen=True)
class Deliver:
    """A server message for the application, in the order the server sent it."""

    message: dict[str, Any]


ClientAction = Replied | Refused | Deliver
Action = SendMessage | CloseConnection | ClientAction


class ClientProtocol(Protocol[ClientAction, dict[str, Any]]):
    """The client's side of one socket's conversation; one request at a time."""

    def __init__(self, *, answer_pings: bool = True) -> None:
        super().__init__()
        #: The server's WebSocket close code, once the socket closed.
        self.close_code: int | None = None
        self._answer_pings = answer_pings
        #: The message type the pending request waits for; None when nothing waits.
        self._awaiting: str | None = None

    # --- what the application says -------------------------------------------------------------

    def hello(
        self, token: str | None, role: str | None = None, reconnect_secret: str | None = None
    ) -> None:
        """Authenticate (as ``role``, when given; rejoining a live session: with the secret its
        ``welcome`` gave); the request is over with ``Replied(welcome)`` or ``Refused``."""
        self._request(messages.hello(token, role, reconnect_secret), expect="welcome")

    def offer(self, sdp: str, *, reconnect: bool = False) -> None:
        """Offer; the request is over with ``Replied(answer)`` or ``Refused``."""
        self._request(messages.offer(sdp, reconnect=reconnect), expect="answer")

    def _request(self, message: dict[str, Any], *, expect: str) -> None:
        """Send ``message`` and wait for a reply of type ``expect`` (or an error instead)."""
        if self._awaiting is not None:
            raise RuntimeError(f"a request is still waiting for {self._awaiting!r}")
        self.send(message)
        self._awaiting = expect

    def abandon_request(self) -> None:
        """The application stopped waiting: a late reply goes to it like any other message."""
        self._awaiting = None

    def candidate(
        self, candidate: str | None, *, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        self.send(messages.candidate(candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index))

    def end_of_candidates(self) -> None:
        self.send(messages.end_of_candidates())

    def event(self, event: dict[str, Any]) -> None:
        self.send(messages.event(event))

    def ping(self, id_: str | int | None = None) -> None:
        self.send(messages.ping(id_))

    def bye(self, reason: str | None = None) -> None:
        """Say goodbye; the server answers with ``bye`` and closes."""
        self.send(messages.bye(reason))

    def send(self, message: dict[str, Any]) -> None:
        """Send any message, as it is; after the socket closed, ``SignalingClientError``."""
        if self.closed:
            raise SignalingClientError("closed", "the socket is closed", self.close_code)
        self._send(message)

    # --- what the server says ------------------------------------------------------------------

    def _parse(self, frame: str | bytes) -> dict[str, Any]:
        return messages.parse_server_message(frame)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "ping" and self._answer_pings:
            self._send(messages.pong(message.get("id")))
            return
        if kind == self._awaiting:
            self._awaiting = None
            self._emit(Replied(message))
            return
        if kind == "error" and self._awaiting is not None and self._ends_request(message):
            code, text = str(message.get("code")), str(message.get("message"))
            self._refuse(SignalingClientError(code, text))
        self._emit(Deliver(message))

    def _ends_request(self, error: dict[str, Any]) -> bool:
        return bool(
            error.get("fatal") or self._awaiting == "welcome" or error.get("code") in _OFFER_ERRORS
        )

    def _bad_input(self, error: SignalingError) -> None:
        """The server broke the framing rules: no later frame can be trusted, so close."""
        self._refuse(SignalingClientError(error.code, error.message))
        self._close(error.close_code, error.code)

    def connection_lost(self, close_code: int | None) -> None:
        """The socket closed (``close_code`` as the server sent it, if it did)."""
        self.close_code = close_code
        self._refuse(SignalingClientError("closed", "the socket closed", close_code))
        self._lost("disconnected")

    def _refuse(self, error: SignalingClientError) -> None:
        if self._awaiting is not None:
            self._awaiting = None
            self._emit(Refused(error))
