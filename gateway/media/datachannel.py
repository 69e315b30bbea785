"""The relay's data-channel bridge: messages for a channel that may not be open yet.

The browser's ``oai-events`` channel and the upstream's open at different moments, and a
reconnected browser brings a new channel; each direction of the bridge holds what arrives
before its target is open, boundedly (an unbounded buffer is how a stuck peer eats a
gateway's memory), and delivers it, in order, once the channel opens.
"""

from __future__ import annotations

from collections import deque

from aiortc import RTCDataChannel

#: Messages held for a data channel that is not open yet; beyond this the oldest are dropped
#: (and counted).
PENDING_MESSAGES = 256


class ChannelBridge:
    """One direction of the bridge: messages to a channel that may not be open yet."""

    def __init__(self) -> None:
        self.channel: RTCDataChannel | None = None
        self._pending: deque[str | bytes] = deque(maxlen=PENDING_MESSAGES)
        self.dropped = 0

    def attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("open")
        def _flush() -> None:
            while self._pending and channel.readyState == "open":
                channel.send(self._pending.popleft())

        if channel.readyState == "open":
            _flush()

    def send(self, message: str | bytes) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
            return
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(message)
