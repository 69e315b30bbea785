"""The session rows' state changes, on the same durable path as the transcripts.

What happens to a session (its status, mode, upstream call, connected time, selected pair, its
end with the time and reason, its claim given up, an integrity event) is a
:class:`StateChange`. :class:`StateWriter` takes changes from every session of the process
without ever blocking them, and applies them to Postgres one at a time, in the order received:

* **In order, exactly once in effect.** Each change is applied after every change received
  before it (an update still waiting behind another of the same row joins it), and is
  released only once applied. Applying a change again (after a crash, a
  replayed journal) leaves the row as it was: an update sets the same values and never touches
  an ended row, an end stands once (``end_session``: the first end wins) and carries its own
  time, a claim is gone once. (An integrity event's count is the one exception: it is added, so
  a process killed between a commit and its release adds that event twice.)
* **Durable.** While the database answers, changes wait in memory for milliseconds. When a
  change cannot be applied within ``write_timeout`` (the database went away), everything held
  in memory moves to a local :class:`~storage.journal.Journal` (fsync'd), every later change is
  appended there (``write(2)`` at once: it survives the process; fsync'd soon after, for the
  machine), and the writer retries with backoff until the database is back, then drains the
  journal oldest first. After a restart, ``start`` applies what an earlier process left there
  before anything else (the start-up reconciler must see the claims it released).
* **Never in the way.** ``submit`` never waits; :meth:`durable` (applied, or in the fsync'd
  journal) is what a session's end waits for, and ``close`` is bounded: what it cannot apply
  stays in the journal for the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from psycopg import errors

from storage import gateways, interviews
from storage.database import Database
from storage.integrity import record_integrity_event
from storage.journal import Journal, JournalSync

_log = logging.getLogger(__name__)

ChangeKind = Literal["update", "end", "release", "note"]

#: The database refused the change for what it says: retrying cannot help.
_PERMANENT = (errors.DataError, errors.IntegrityError, ValueError, TypeError, KeyError)
_TIME = "$time"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One change to one interview's records. ``values`` by kind: ``update``: the row's
    fields; ``end``: ``status``, ``reason``, ``at``; ``release``: ``gateway_id``; ``note``:
    ``kind``, ``detail``, ``count``."""

    tenant_id: UUID
    interview_id: UUID
    kind: ChangeKind
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def update(cls, tenant_id: UUID, interview_id: UUID, **fields: Any) -> StateChange:
        return cls(tenant_id, interview_id, "update", fields)

    @classmethod
    def end(cls, tenant_id: UUID, interview_id: UUID, status: str, reason: str) -> StateChange:
        """The end, timed now (not when it reaches the database)."""
        values = {"status": status, "reason": reason, "at": datetime.now(UTC)}
        return cls(tenant_id, interview_id, "end", values)

    @classmethod
    def release(cls, tenant_id: UUID, interview_id: UUID, gateway_id: UUID) -> StateChange:
        return cls(tenant_id, interview_id, "release", {"gateway_id": str(gateway_id)})

    @classmethod
    def note(
        cls, tenant_id: UUID, interview_id: UUID, kind: str, detail: str, count: int
    ) -> StateChange:
        values = {"kind": kind, "detail": detail, "count": count}
        return cls(tenant_id, interview_id, "note", values)

    def encode(self) -> bytes:
        return json.dumps(
            {"t": str(self.tenant_id), "i": str(self.interview_id), "k": self.kind,
             "v": {name: _encode(value) for name, value in self.values.items()}},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    @classmethod
    def decode(cls, line: bytes) -> StateChange:
        data = json.loads(line)
        if data["k"] not in ("update", "end", "release", "note"):
            raise ValueError(f"unknown state change {data['k']!r}")
        values = {name: _decode(value) for name, value in data["v"].items()}
        return cls(UUID(data["t"]), UUID(data["i"]), data["k"], values)

    async def apply(self, db: Database) -> None:
        v = self.values
        if self.kind == "update":
            await interviews.update_session(db, self.tenant_id, self.interview_id, **v)
        elif self.kind == "end":
            await interviews.end_session(
                db, self.tenant_id, self.interview_id,
                status=v["status"], reason=v["reason"], at=v["at"],
            )  # fmt: skip
        elif self.kind == "release":
            await gateways.release(db, UUID(v["gateway_id"]), self.interview_id)
        else:
            await record_integrity_event(
                db, self.tenant_id, self.interview_id, v["kind"], v["detail"], count=v["count"]
            )


def _encode(value: Any) -> Any:
    return {_TIME: value.isoformat()} if isinstance(value, datetime) else value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_TIME}:
        return datetime.fromisoformat(value[_TIME])
    return value


class StateWriter:
    """Applies every session's state changes in order, through outages and restarts."""

    def __init__(
        self,
        db: Database,
        journal_dir: Path,
        *,
        write_timeout: float = 2.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._db = db
        self._journal = Journal(journal_dir)
        self._write_timeout = write_timeout
        self._max_backoff = max_backoff
        #: in memory, older than anything in the journal; with their ordinals
        self._queue: deque[tuple[int, StateChange]] = deque()
        self._submitted = 0
        self._applied = 0  # every change from memory up to this ordinal is applied
        self._journaled = 0  # every change up to this ordinal is applied or in the journal
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()
        self._closing = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._sync = JournalSync(self._journal, self._notify, name="state-journal-fsync")
        #: interviews whose end this process accepted and has not applied yet
        self._ends: dict[UUID, int] = {}
        #: changes applied, journaled, and refused for good, for metrics and tests
        self.applied = 0
        self.journaled = 0
        self.refused = 0

    async def start(self, replay_wait: float = 10.0) -> None:
        """Open the journal and run; an earlier process's changes are applied first, and
        waited for (``replay_wait`` seconds at most: the rest follows in the background)."""
        left = await asyncio.to_thread(self._journal.open)
        self._task = asyncio.create_task(self._run(), name="session-state-writer")
        if left:
            _log.info("session state journal holds %d changes from an earlier run", left)
            self._wake.set()
            try:
                async with asyncio.timeout(replay_wait), self._changed:
                    await self._changed.wait_for(lambda: self._journal.empty)
            except TimeoutError:
                _log.warning("%d state changes are still to replay", len(self._journal))

    def submit(self, change: StateChange) -> int:
        """Accept one change (never waits); returns its ordinal, for :meth:`durable`."""
        if self._closing:
            raise RuntimeError("the session state writer is closed")
        self._submitted += 1
        if change.kind == "end":
            self._ends[change.interview_id] = self._ends.get(change.interview_id, 0) + 1
        if self._journal.empty:
            self._queue.append((self._submitted, self._merged(change)))
        else:  # the database is away (or a replay is under way): after what is waiting
            self._journal.append([change.encode()])
            self._journaled = self._submitted
            self.journaled += 1
            self._sync.request()
        self._wake.set()
        return self._submitted

    def end_pending(self, interview_id: UUID) -> bool:
        """This interview's end is accepted but not in its row yet: the row still looks live,
        and must not be taken for it (a join would start a session that the end then ends)."""
        return interview_id in self._ends

    def _merged(self, change: StateChange) -> StateChange:
        """An update that follows another update of the same row, still waiting (not being
        applied), joins it: one round trip, the same row in the end."""
        if change.kind != "update" or len(self._queue) < 2:
            return change
        _, last = self._queue[-1]
        if last.kind != "update" or last.interview_id != change.interview_id:
            return change
        self._queue.pop()
        return StateChange(
            change.tenant_id, change.interview_id, "update", {**last.values, **change.values}
        )

    async def durable(self, ordinal: int) -> None:
        """Return once change ``ordinal`` is applied or safe in the fsync'd journal."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._is_durable(ordinal))

    async def settled(self) -> None:
        """Return once nothing accepted is left to apply: every row says what its sessions
        last did (not merely the journal), for a reader that must see it, such as a test or
        an operator's check after a drain."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._queue and self._journal.empty)

    def _is_durable(self, ordinal: int) -> bool:
        if ordinal <= self._applied:
            return True
        return ordinal <= self._journaled and not self._sync.pending

    @property
    def backlog(self) -> int:
        """Changes accepted and not yet applied."""
        return len(self._queue) + len(self._journal)

    async def close(self, grace: float = 3.0) -> None:
        """Apply what can be within ``grace`` (nothing waits while the database is away);
        the rest stays in the journal for the next process."""
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=grace)
        self._park_memory()
        await self._sync.finished()
        self._journal.close()
        if len(self._journal):
            _log.warning("%d session state changes wait in the journal", len(self._journal))
        await self._notify()

    # -- the applier ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            if self._closing and self._failing:
                return  # the database is away: the journal keeps the rest for the next start
            if not self._queue and self._journal.empty:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            from_memory = bool(self._queue)
            change = self._queue[0][1] if from_memory else self._from_journal()
            if change is None:  # an unreadable line, set aside
                continue
            try:
                await asyncio.wait_for(change.apply(self._db), self._write_timeout)
            except _PERMANENT as exc:  # released like an applied one: it never blocks the rest
                self.refused += 1
                _log.error("state change refused for good (%s): %s", exc, change.encode())
            except Exception as exc:  # the database is away: journal, wait, again
                failures += 1
                if not self._failing:
                    _log.warning(
                        "could not record session state (%s); journaling",
                        str(exc) or type(exc).__name__,
                    )
                self._failing = True
                self._park_memory()
                await self._notify()
                if self._closing:
                    return
                delay = min(self._max_backoff, 0.1 * 2 ** min(failures, 10))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay * random.uniform(0.5, 1.0))
                continue
            else:
                self.applied += 1
            if self._failing:
                _log.info("session state recorded again after %d failed attempts", failures)
            failures, self._failing = 0, False
            if change.kind == "end" and change.interview_id in self._ends:
                self._ends[change.interview_id] -= 1
                if not self._ends[change.interview_id]:
                    del self._ends[change.interview_id]
            if from_memory:
                self._applied = self._queue.popleft()[0]
            else:
                self._journal.consume(1)
            await self._notify()

    def _from_journal(self) -> StateChange | None:
        lines = self._journal.peek(1)
        if not lines:  # only a torn line was left
            return None
        line = lines[0]
        try:
            return StateChange.decode(line)
        except (ValueError, KeyError, TypeError) as exc:
            self.refused += 1
            _log.error("unreadable state journal line set aside (%s): %r", exc, line)
            self._journal.consume(1)
            return None

    def _park_memory(self) -> None:
        """Put what memory holds, oldest first, ahead of the journal (fsync'd)."""
        if not self._queue:
            return
        self._journal.prepend([change.encode() for _, change in self._queue])
        self.journaled += len(self._queue)
        self._journaled = max(self._journaled, self._queue[-1][0])
        self._queue.clear()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
