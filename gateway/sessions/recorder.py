"""The session row's state changes, in order, off the signaling path, and never lost.

A session records what happens to it (``connecting``, the mode, the upstream call, connected,
the selected candidate pair), integrity events, and, once, how it ended. Signaling must never
wait for the database, so each change goes to the process's
:class:`~storage.session_state.StateWriter`, which applies them in order and, while the
database is away, journals them to disk and replays them when it is back (or at the next
start). ``update_session`` never touches
an ended row, so a late state change cannot undo an end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

from storage.session_state import StateChange, StateWriter

log = logging.getLogger(__name__)

#: Backoff between attempts while the database is away: from the first to at most the second.
RETRY_FIRST = 0.2
RETRY_MOST = 5.0

EndStatus = Literal["ended", "failed"]


class SessionRecorder:
    """One session's records. ``record`` and ``note`` never block; ``finish`` records the end."""

    def __init__(
        self, state: StateWriter, tenant_id: UUID, interview_id: UUID, *, gateway_id: UUID
    ) -> None:
        self._state = state
        self._gateway_id = gateway_id
        self._tenant_id = tenant_id
        self._interview_id = interview_id
        self._finishing = False
        #: integrity events noted, by kind: how many, and how many are recorded
        self._noted: dict[str, int] = {}
        self._noted_written: dict[str, int] = {}

    def record(self, **fields: Any) -> None:
        """Set these fields on the row, after everything recorded before (ignored once ending)."""
        if not self._finishing:
            self._state.submit(StateChange.update(self._tenant_id, self._interview_id, **fields))

    def note(self, kind: str, detail: str) -> None:
        """An integrity event: the first of each kind is recorded at once (with its detail),
        the rest are counted and their number recorded at the end (a flood costs no writes)."""
        if self._finishing:
            return  # the call is closed: nothing more can happen to it
        self._noted[kind] = self._noted.get(kind, 0) + 1
        if self._noted[kind] == 1:
            self._noted_written[kind] = 1
            self._submit_note(kind, detail, 1)

    def _submit_note(self, kind: str, detail: str, count: int) -> None:
        change = StateChange.note(self._tenant_id, self._interview_id, kind, detail, count)
        self._state.submit(change)

    async def finish(self, status: EndStatus, reason: str) -> None:
        """Record the end (timed now) and give up the claim; returns once both are applied or
        safe in the journal. Cancelling this only stops the waiting: the end is recorded."""
        if self._finishing:
            return
        self._finishing = True
        for kind, count in self._noted.items():
            if count > self._noted_written[kind]:
                self._submit_note(kind, "", count - self._noted_written[kind])
                self._noted_written[kind] = count
        self._state.submit(StateChange.end(self._tenant_id, self._interview_id, status, reason))
        last = self._state.submit(
            StateChange.release(self._tenant_id, self._interview_id, self._gateway_id)
        )
        await self._state.durable(last)


async def retry_until_done(
    what: str, attempt: Callable[[], Awaitable[Any]], log_extra: dict[str, str]
) -> None:
    """Run ``attempt`` until it succeeds, with backoff: a database that is away is waited
    for, never a reason to drop a write (the recording's segment rows; the session's own
    state takes the journaled path above)."""
    delay = RETRY_FIRST
    failures = 0
    while True:
        try:
            await attempt()
        except Exception as exc:  # the database is away: wait and try again
            failures += 1
            if failures == 1:
                log.warning("could not record %s (%s); retrying", what, exc, extra=log_extra)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)
        else:
            if failures:
                log.info("recorded %s after %d failed attempts", what, failures, extra=log_extra)
            return
