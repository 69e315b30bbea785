"""One interview's transcript as it happens: every line stored once, live lines for the browser,
and the conversation so far for a call that must carry it over.

The session hands each interpreted upstream event here. Finals (a Realtime turn, a GPT-Live
fragment) go to the durable writer, which stores each ``event_id`` once whatever path it came
by. Live lines are queued for the browser, bounded (deltas beyond the bound are dropped: nothing
durable depends on the queue); GPT-Live's fragments reach it as turns (``turns.LiveTurns``).
Events the browser forwards are stored (marked ``client``) but never shown or carried over:
they are the least trusted source.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from gateway.sessions.events import TranscriptEvent
from gateway.sessions.turns import LiveTurns, read_turns
from storage.transcripts import Role, Source, TranscriptEntry, TranscriptRow

#: Live transcript lines waiting for the browser; beyond this, deltas are dropped (finals are
#: stored regardless, so nothing durable depends on this queue).
LIVE_LINES = 512

#: Final lines a session keeps to carry the interview over to a new upstream call.
CONVERSATION_LINES = 400


def stored_lines(rows: Sequence[TranscriptRow]) -> list[tuple[TranscriptEvent, datetime]]:
    """A stored transcript (``read_transcript``'s rows) as the final lines a browser is shown,
    each with when it was first received: turns by ``turns.read_turns``, with the ids a live
    final line of the same turn has (a client drops those it has by them); the browser's own
    copies (``source = client``) are never shown. At most the last ``CONVERSATION_LINES``."""
    lines = [
        (
            TranscriptEvent(
                event_id=turn.event_ids[0],
                event_type="stored",
                role=turn.role,
                text=turn.text,
                final=True,
                item_id=turn.item_id or turn.event_ids[0],
                audio_start_ms=turn.audio_start_ms,
                audio_end_ms=turn.audio_end_ms,
            ),
            turn.received_at,
        )
        for turn in read_turns(rows)
        if turn.source != "client" and turn.text
    ]
    return lines[-CONVERSATION_LINES:]


class SessionTranscript:
    def __init__(
        self, submit: Callable[[TranscriptEntry], None], tenant_id: UUID, interview_id: UUID
    ) -> None:
        self._submit = submit
        self._tenant_id, self._interview_id = tenant_id, interview_id
        #: lines for the browser, in order
        self.live: asyncio.Queue[TranscriptEvent] = asyncio.Queue(LIVE_LINES)
        self._conversation: deque[tuple[Role, str]] = deque(maxlen=CONVERSATION_LINES)
        self._turns = LiveTurns(self._live_line)

    def take(self, line: TranscriptEvent, source: Source, raw: str) -> None:
        """One transcript line from ``source``; ``raw`` is the event's JSON text."""
        if line.final:
            self._submit(line.entry(self._tenant_id, self._interview_id, source, raw))
        if source == "client":
            return
        if line.fragment:
            self._turns.add(line)
        else:
            self._live_line(line)

    def restore(self, conversation: Sequence[tuple[Role, str]]) -> None:
        """Start from an earlier process's interview (read back from the database), so a
        call that carries the conversation over carries that too."""
        self._conversation.extend(conversation)

    def conversation(self) -> list[tuple[Role, str]]:
        """The interview so far, final lines in order (an open GPT-Live turn included)."""
        return [*self._conversation, *self._turns.unfinished()]

    def close(self) -> None:
        self._turns.close()

    def _live_line(self, line: TranscriptEvent) -> None:
        if line.final:
            self._conversation.append((line.role, line.text))
        with contextlib.suppress(asyncio.QueueFull):
            self.live.put_nowait(line)
