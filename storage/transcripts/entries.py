"""What a transcript is made of: the entry the gateway hands over, and the row read back.

``Role`` and ``Source`` are declared here once; the gateway's event interpreter and sessions
name a speaker and a transport with these same types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

Role = Literal["candidate", "interviewer"]
Source = Literal["relay", "sideband", "client"]
ROLES: frozenset[str] = frozenset({"candidate", "interviewer"})
SOURCES: frozenset[str] = frozenset({"relay", "sideband", "client"})


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One transcript event, as the gateway hands it over. ``raw`` is the event's JSON text."""

    tenant_id: UUID
    session_id: UUID
    event_id: str
    role: Role
    text: str
    source: Source
    event_type: str
    item_id: str | None = None
    audio_start_ms: int | None = None
    audio_end_ms: int | None = None
    raw: str | None = None
    received_at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be 'candidate' or 'interviewer', got {self.role!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be relay, sideband or client, got {self.source!r}")
        if not self.event_id:
            raise ValueError("event_id must not be empty")

    @property
    def trusted(self) -> bool:
        """Whether the line came from the gateway's own paths (relay, sideband), not a client."""
        return self.source != "client"


@dataclass(frozen=True, slots=True)
class TranscriptRow:
    """A stored transcript entry, in the session's reading order (``seq``)."""

    seq: int
    event_id: str
    item_id: str | None
    role: Role
    text: str
    source: Source
    event_type: str
    received_at: datetime
    audio_start_ms: int | None
    audio_end_ms: int | None
    raw: Any
