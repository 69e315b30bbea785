"""How much one interview takes from the browser's forwarded events (``event`` messages).

A browser may forward the Realtime events it sees; they are stored as the least trusted lines
(``source = client``). Nothing else bounds them: one socket stored 1,500 events of 40 KB in
7 s. So each interview has an allowance, for its whole life (a reconnect does not renew it):
``max_events`` forwarded events, and ``max_bytes`` of JSON among those that would be stored.
An event beyond either is refused whole (nothing of it stored); the session tells the browser.
"""

from __future__ import annotations

from typing import Literal

#: Which allowance refused an event: the number of events, or the bytes stored.
Exceeded = Literal["events", "bytes"]


class ClientEventQuota:
    """One interview's allowance of forwarded events. Sans I/O: ``charge`` says yes or no."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.events = 0
        self.bytes = 0

    def charge(self, stored_bytes: int) -> Exceeded | None:
        """Take one event that would store ``stored_bytes`` (0: not stored), or say which
        allowance it would exceed (then nothing is taken)."""
        if self.events + 1 > self.max_events:
            return "events"
        if self.bytes + stored_bytes > self.max_bytes:
            return "bytes"
        self.events += 1
        self.bytes += stored_bytes
        return None
