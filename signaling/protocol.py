"""The sans-I/O core both ends of a signaling socket share.

As in ``websockets``, where ``Protocol`` carries what a client and a server connection have in
common and ``ClientProtocol`` / ``ServerProtocol`` add each side's rules: here the common part
is how a conversation is driven and how it ends. The I/O layer feeds in what happened
(``receive_frame``, timers, replies from the application) and drains ``actions()`` to learn
what to do, oldest first. Nothing awaits, sleeps or touches a socket, so either side's rules
are tested by feeding frames and reading actions.

The wire format (``messages``) and the error table (``errors``) are shared the same way; the
server's rules live in ``session.ServerProtocol``, the client's in
``client_protocol.ClientProtocol``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from signaling import messages
from signaling.errors import SignalingError


@dataclass(frozen=True)
class SendMessage:
    """Send this message to the other side, as one text frame (``messages.encode``)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class CloseConnection:
    """Close the socket with this WebSocket close code."""

    code: int
    reason: str


#: What one side's protocol asks of its application, besides sending and closing.
SideAction = TypeVar("SideAction")
#: What ``frame`` decodes into on this side: typed client messages, or plain server messages.
Message = TypeVar("Message")


class Protocol(ABC, Generic[SideAction, Message]):
    """One socket's conversation, either side. Not thread-safe; meant for one event loop."""

    def __init__(self) -> None:
        #: Why the conversation ended (``bye``, an error code, ``disconnected``, ...);
        #: None while it is open.
        self.close_reason: str | None = None
        self._actions: list[SendMessage | CloseConnection | SideAction] = []

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def actions(self) -> list[SendMessage | CloseConnection | SideAction]:
        """Everything to do since the last call, oldest first."""
        actions, self._actions = self._actions, []
        return actions

    def receive_frame(self, frame: str | bytes) -> None:
        """One WebSocket data frame from the other side; ignored once the conversation ended."""
        if self.closed:
            return
        try:
            self._handle(self._parse(frame))
        except SignalingError as exc:
            self._bad_input(exc)

    # --- what each side decides ----------------------------------------------------------------

    @abstractmethod
    def _parse(self, frame: str | bytes) -> Message:
        """Decode one frame with this side's half of the codec; raise ``SignalingError``."""

    @abstractmethod
    def _handle(self, message: Message) -> None:
        """Act on one well-formed message; raise ``SignalingError`` to refuse it."""

    @abstractmethod
    def _bad_input(self, error: SignalingError) -> None:
        """A frame could not be decoded, or its message was refused."""

    # --- helpers for both sides ----------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        self._actions.append(SendMessage(message))

    def _emit(self, action: SideAction) -> None:
        self._actions.append(action)

    def _close(self, code: int, reason: str, *, bye: bool = False) -> None:
        """End the conversation: optionally say ``bye`` first, then close with ``code``."""
        if self.closed:
            return
        if bye:
            self._send(messages.bye(reason))
        self.close_reason = reason
        self._actions.append(CloseConnection(code, reason))

    def _lost(self, reason: str) -> None:
        """The socket is gone: nothing can be sent any more."""
        if not self.closed:
            self.close_reason = reason
