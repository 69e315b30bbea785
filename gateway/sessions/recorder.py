"""The session row's state changes, written in order, off the signaling path, and not lost.

A session records what happens to it (``connecting``, the mode, the upstream call, connected,
the selected candidate pair) and, once, how it ended. Signaling must never wait for the
database, so changes queue here and one task applies them, merging what queued up into one
update. When the database is away, nothing is dropped: the merged change is retried with
backoff (later changes merge into it, so the row still gets the latest value of each field),
and the end is retried until it lands. ``update_session`` never touches an ended row, so a
late state change cannot undo an end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

from storage import gateways, interviews
from storage.database import Database
from storage.integrity import record_integrity_event

log = logging.getLogger(__name__)

#: Backoff between attempts while the database is away: from the first to at most the second.
RETRY_FIRST = 0.2
RETRY_MOST = 5.0

EndStatus = Literal["ended", "failed"]


class SessionRecorder:
    """One session row's writer. ``record`` never blocks; ``finish`` records the end."""

    def __init__(
        self,
        db: Database,
        tenant_id: UUID,
        interview_id: UUID,
        log_extra: dict[str, str],
        *,
        gateway_id: UUID,
    ) -> None:
        self._db = db
        self._gateway_id = gateway_id
        self._tenant_id = tenant_id
        self._interview_id = interview_id
        self._log_extra = log_extra
        self._pending: dict[str, Any] = {}
        self._changed = asyncio.Event()
        self._finishing = False
        #: integrity events noted, by kind: how many, and how many are written
        self._noted: dict[str, int] = {}
        self._noted_written: dict[str, int] = {}
        self._notes: set[asyncio.Task[None]] = set()
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(self._task_done)

    def record(self, **fields: Any) -> None:
        """Set these fields on the row, after everything recorded before (ignored once ending)."""
        if self._finishing:
            return
        self._pending.update(fields)
        self._changed.set()

    def note(self, kind: str, detail: str) -> None:
        """An integrity event: the first of each kind is written at once (with its detail),
        the rest are counted and their number written at the end (a flood costs no writes)."""
        self._noted[kind] = self._noted.get(kind, 0) + 1
        if self._noted[kind] == 1:
            self._noted_written[kind] = 1
            self._spawn_note(kind, detail, 1)

    def _spawn_note(self, kind: str, detail: str, count: int) -> None:
        async def write() -> None:
            await record_integrity_event(
                self._db, self._tenant_id, self._interview_id, kind, detail, count=count
            )

        task = asyncio.ensure_future(self._retrying(f"integrity event {kind}", write))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def finish(self, status: EndStatus, reason: str) -> None:
        """Write what is still pending, then the end; retried until the database takes them.

        The caller decides how long to wait (the session does not hold its slot meanwhile);
        cancelling this gives up, leaving the row to the start-up reconciliation.
        """
        self._finishing = True
        self._task.cancel()
        for kind, count in self._noted.items():
            if count > self._noted_written[kind]:
                self._spawn_note(kind, "", count - self._noted_written[kind])
                self._noted_written[kind] = count
        pending, self._pending = self._pending, {}
        if pending:
            await self._retrying(
                "state", lambda: interviews.update_session(
                    self._db, self._tenant_id, self._interview_id, **pending
                )
            )  # fmt: skip
        await self._retrying(
            "end", lambda: interviews.end_session(
                self._db, self._tenant_id, self._interview_id, status=status, reason=reason
            )
        )  # fmt: skip
        await self._retrying(
            "claim", lambda: gateways.release(self._db, self._gateway_id, self._interview_id)
        )
        if self._notes:
            await asyncio.gather(*self._notes)

    async def _run(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            fields = dict(self._pending)

            async def write(fields: dict[str, Any] = fields) -> None:
                await interviews.update_session(
                    self._db, self._tenant_id, self._interview_id, **fields
                )

            await self._retrying("state", write)
            # Only what did not change meanwhile is done; a newer value stays pending.
            for name, value in fields.items():
                if name in self._pending and self._pending[name] is value:
                    del self._pending[name]

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[Any]]) -> None:
        await retry_until_done(f"the session's {what}", attempt, self._log_extra)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("session recorder failed", exc_info=task.exception(), extra=self._log_extra)


async def retry_until_done(
    what: str, attempt: Callable[[], Awaitable[Any]], log_extra: dict[str, str]
) -> None:
    """Run ``attempt`` until it succeeds, with backoff: a database that is away is waited
    for, never a reason to drop a write (the recording's segment rows use it too)."""
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
