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
from collections.abc import Callable
from uuid import UUID

from gateway.sessions.events import TranscriptEvent
from gateway.sessions.turns import LiveTurns
from storage.transcripts import Role, Source, TranscriptEntry

#: Live transcript lines waiting for the browser; beyond this, deltas are dropped (finals are
#: stored regardless, so nothing durable depends on this queue).
LIVE_LINES = 512

#: Final lines a session keeps to carry the interview over to a new upstream call.
CONVERSATION_LINES = 400


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
