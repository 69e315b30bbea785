"""Turns from transcript lines: how a GPT-Live interview reads like a Realtime one.

A Realtime transcript is stored a turn per row (each ``.completed`` / ``.done`` final is one
whole turn). GPT-Live sends only fragments (``session.*_transcript.delta``, each with
``start_ms``/``end_ms`` on the session timeline, no turn boundary, no done event), and each is
stored as it came, once by ``event_id``. Every reader (the admin API's JSON, text and WebVTT,
``simulate``'s report), the live lines to the browser, and the conversation a new call is given
see *turns*, by one rule:

- fragments are read in timeline order (``start_ms``, then ``end_ms``, then the order they were
  stored): a delta that came late, or twice over two paths (one row), lands where it was said;
- a fragment continues the turn before it when that turn is of fragments, of the same speaker,
  and the pause between them (its ``start_ms`` minus the turn's ``end_ms``) is under
  ``TURN_PAUSE_MS``; a change of speaker or a longer pause starts a new turn. A fragment the
  browser forwarded (``source = client``) never joins a trusted turn, nor a trusted one a
  client's: a turn's ``source`` is that of every fragment in it;
- a turn's text is its fragments' deltas joined as they are (deltas carry their own spaces),
  trimmed; it starts at its first fragment and ends at its last.

Rows that are not fragments (Realtime's) are turns of their own and keep their reading order;
the fragments of a transcript take the places that fragments hold in it, in timeline order.
Live lines follow arrival order instead (they cannot wait for a late delta): a partial line
per fragment, and the turn's final line once the next fragment starts a new turn or a pause
of ``TURN_PAUSE_MS`` passes without one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.sessions.events import FRAGMENT_EVENT_TYPES, TranscriptEvent
from storage.transcripts import Role, Source, TranscriptRow

#: A pause of at least this long (ms on the session timeline) between two fragments of one
#: speaker ends a turn: long enough for a breath inside a sentence, shorter than the gap before
#: a reply.
TURN_PAUSE_MS = 2000


def continues(role: Role, end_ms: int, next_role: Role, next_start_ms: int) -> bool:
    """Whether a fragment of ``next_role`` starting at ``next_start_ms`` continues a fragment
    turn of ``role`` that ended at ``end_ms`` (the module's rule)."""
    return next_role == role and next_start_ms - end_ms < TURN_PAUSE_MS


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn read back: a Realtime row, or GPT-Live fragments joined. ``seq``, ``source``,
    ``item_id`` and ``received_at`` are its first row's; ``event_ids`` every row's."""

    seq: int
    role: Role
    text: str
    source: Source
    item_id: str | None
    received_at: datetime
    audio_start_ms: int | None
    audio_end_ms: int | None
    event_ids: tuple[str, ...]


def _is_fragment(row: TranscriptRow) -> bool:
    return (
        row.event_type in FRAGMENT_EVENT_TYPES
        and row.audio_start_ms is not None
        and row.audio_end_ms is not None
    )


def _timeline(rows: Sequence[TranscriptRow]) -> list[TranscriptRow]:
    """``rows`` with the fragments put in timeline order, in the places fragments hold."""
    ordered = list(rows)
    slots = [index for index, row in enumerate(ordered) if _is_fragment(row)]
    by_time = sorted(
        (ordered[i] for i in slots),
        key=lambda r: (r.audio_start_ms, r.audio_end_ms, r.seq),
    )
    for index, row in zip(slots, by_time, strict=True):
        ordered[index] = row
    return ordered


def _turn(rows: list[TranscriptRow]) -> Turn:
    first, last = rows[0], rows[-1]
    return Turn(
        seq=first.seq,
        role=first.role,
        text="".join(r.text for r in rows).strip(),
        source=first.source,
        item_id=first.item_id,
        received_at=first.received_at,
        audio_start_ms=first.audio_start_ms,
        audio_end_ms=last.audio_end_ms,
        event_ids=tuple(r.event_id for r in rows),
    )


def read_turns(rows: Sequence[TranscriptRow]) -> list[Turn]:
    """A stored transcript (``read_transcript``'s rows) as turns, by the module's rule."""
    groups: list[list[TranscriptRow]] = []
    for row in _timeline(rows):
        current = groups[-1] if groups else None
        if (
            current is not None
            and _is_fragment(row)
            and _is_fragment(current[-1])
            and (row.source == "client") == (current[-1].source == "client")
            and continues(
                current[-1].role,
                current[-1].audio_end_ms or 0,
                row.role,
                row.audio_start_ms or 0,
            )
        ):
            current.append(row)
        else:
            groups.append([row])
    return [_turn(group) for group in groups]


class LiveTurns:
    """Assembles fragments into turns as they arrive, for the live lines and the conversation.

    A fragment becomes a partial line of its turn (``item_id``: the turn's id, its first
    fragment's ``event_id``), so a client joins them as it joins Realtime deltas. The turn's
    final line follows when a fragment starts a new turn, or when ``TURN_PAUSE_MS`` pass
    without one (the last turn of an interview has no successor). Lines go to ``emit``.
    """

    def __init__(self, emit: Callable[[TranscriptEvent], None]) -> None:
        self._emit = emit
        self._fragments: list[TranscriptEvent] = []
        self._pause: asyncio.TimerHandle | None = None

    def add(self, fragment: TranscriptEvent) -> None:
        """Emit the live lines ``fragment`` makes (a duplicate of one in the open turn: none)."""
        if any(f.event_id == fragment.event_id for f in self._fragments):
            return
        last = self._fragments[-1] if self._fragments else None
        if last is not None and not continues(
            last.role, last.audio_end_ms or 0, fragment.role, fragment.audio_start_ms or 0
        ):
            self.finish()
        self._fragments.append(fragment)
        self._emit(
            TranscriptEvent(
                event_id=fragment.event_id,
                event_type=fragment.event_type,
                role=fragment.role,
                text=fragment.text,
                final=False,
                item_id=self._fragments[0].event_id,
                audio_start_ms=fragment.audio_start_ms,
                audio_end_ms=fragment.audio_end_ms,
            )
        )
        if self._pause is not None:
            self._pause.cancel()
        self._pause = asyncio.get_running_loop().call_later(TURN_PAUSE_MS / 1000, self.finish)

    def unfinished(self) -> list[tuple[Role, str]]:
        """The open turn, as a conversation line (none if nothing is open)."""
        text = "".join(f.text for f in self._fragments).strip()
        return [(self._fragments[0].role, text)] if text else []

    def finish(self) -> None:
        """Emit the open turn's final line, if a turn is open."""
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
        fragments, self._fragments = self._fragments, []
        if not fragments:
            return
        first = fragments[0]
        self._emit(
            TranscriptEvent(
                event_id=first.event_id,
                event_type=first.event_type,
                role=first.role,
                text="".join(f.text for f in fragments).strip(),
                final=True,
                item_id=first.event_id,
                audio_start_ms=first.audio_start_ms,
                audio_end_ms=fragments[-1].audio_end_ms,
            )
        )

    def close(self) -> None:
        """Stop the pause timer; what is open stays unfinished (the session is over)."""
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None
