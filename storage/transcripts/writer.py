"""The durable transcript writer.

:class:`TranscriptWriter` takes events from the gateway without ever blocking it, and commits
them to ``transcript_entries`` in batches, in the order it received them:

* **Idempotent.** A row is keyed by ``(session_id, event_id)`` and its trust class; the
  insert skips keys that exist, so the same event stored twice (a retry, a replayed journal,
  the relay and the sideband) is one row, and it never consumes a number of the session's
  reading order (``seq``). A copy the browser forwards (``source = client``) is kept apart,
  so it can never take a trusted line's place; readers hide it behind the trusted line.
* **Batched.** A batch is flushed when ``batch_size`` events are waiting or the oldest has
  waited ``flush_interval`` seconds, split by session over ``connections`` connections (one
  transaction each, written at once: the server works on them on all its cores), binary-COPYed
  into a staging table and inserted from there. Batches mix tenants; with row-level security
  FORCED, each tenant's rows are inserted after setting that tenant's ``app.tenant_id``.
* **Durable.** Memory holds at most ``max_pending`` events; the rest go to a local
  :class:`~storage.journal.Journal`. When a commit fails (the database went away), everything
  held in memory moves to the journal too, and the writer retries with backoff while new events
  keep going to the journal; it drains the journal, oldest first, when the database returns,
  and after a restart (``start``). ``close`` leaves in the journal what it could not commit.
  What lives only in memory is the last few milliseconds of a healthy database's events.
* **Honest about bad input.** A row the database refuses for its content (unknown session,
  malformed raw JSON) is set aside in ``rejected.jsonl`` beside the journal, with the reason;
  it never blocks the events behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from storage.database import Database
from storage.journal import Journal, JournalSync
from storage.transcripts.codec import JournalCodec, Pending
from storage.transcripts.entries import TranscriptEntry
from storage.transcripts.statements import (
    TransientWriteError,
    connect,
    first_line,
    write_entries,
)

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics and benchmarks; they only ever grow."""

    submitted: int = 0
    committed: int = 0  # rows inserted
    # events skipped because their (session_id, event_id) existed; after a batch failed on one
    # connection and committed on another, its retry counts the committed part here too
    duplicates: int = 0
    journaled: int = 0  # events written to the journal (spilled or taken back from memory)
    replayed: int = 0  # events from a previous process's journal, now resolved
    retries: int = 0  # failed batch attempts
    rejected: int = 0  # rows the database refused for their content
    batches: int = 0


class TranscriptWriter:
    """Commits transcript entries exactly once, in order, through outages and restarts."""

    def __init__(
        self,
        db: Database,
        journal_dir: Path,
        *,
        batch_size: int = 2000,
        flush_interval: float = 0.01,
        max_pending: int = 20_000,
        write_timeout: float = 10.0,
        max_backoff: float = 2.0,
        connections: int = 2,
        on_commit: Callable[[Sequence[float]], None] | None = None,
    ) -> None:
        """``on_commit`` receives, per committed batch, each event's enqueue-to-commit seconds
        (events of this writer only: an earlier process's times are not comparable).
        ``connections``: a batch is split by session over this many connections, written at
        once, so the server's work on one batch spreads over its cores."""
        if batch_size < 1 or max_pending < batch_size:
            raise ValueError("need 1 <= batch_size <= max_pending")
        if connections < 1:
            raise ValueError("need connections >= 1")
        self._db = db
        self._journal = Journal(journal_dir)
        self._rejected_path = journal_dir / "rejected.jsonl"
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._write_timeout = write_timeout
        self._max_backoff = max_backoff
        self._on_commit = on_commit
        self._codec = JournalCodec()
        self.stats = WriterStats()

        self._queue: deque[Pending] = deque()  # in memory, older than anything in the journal
        self._inflight: list[Pending] = []  # the batch being written, when taken from memory
        self._rejected_in_batch = 0
        self._resolved = 0  # every ordinal up to this one is committed, a duplicate or rejected
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()  # events arrived, a flush was asked for, or closing
        self._urgent = False  # flush() or close() waits: do not linger for a fuller batch
        self._closing = False
        self._conns: list[psycopg.AsyncConnection[Any] | None] = [None] * connections
        self._task: asyncio.Task[None] | None = None
        self._sync = JournalSync(self._journal, self._notify, name="journal-fsync")

    # -- the producer's side -------------------------------------------------------------

    async def start(self) -> None:
        """Opens the journal (a previous process's leftovers are written first) and runs."""
        left = await asyncio.to_thread(self._journal.open)
        if left:
            _log.info("transcript journal holds %d events from an earlier run; replaying", left)
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="transcript-writer")

    def submit(self, entry: TranscriptEntry) -> None:
        """Accepts one entry; never blocks and never fails because the database is down."""
        if self._closing:
            raise RuntimeError("the transcript writer is closed")
        self.stats.submitted += 1
        item = Pending(entry, self.stats.submitted, time.monotonic())
        if self._journal.empty and len(self._queue) < self._max_pending:
            self._queue.append(item)
        else:
            self._journal.append([self._codec.encode(item)])
            self.stats.journaled += 1
            self._sync.request()
        self._wake.set()

    async def flush(self) -> None:
        """Returns once everything submitted before the call is committed (or refused)."""
        target = self.stats.submitted
        self._urgent = True
        self._wake.set()
        async with self._changed:
            await self._changed.wait_for(lambda: self._resolved >= target)

    async def wait_durable(self) -> None:
        """Returns once nothing accepted lives only in memory: each event is committed or in
        the fsync'd journal. (With a healthy database that means: committed.)"""
        self._urgent = True
        self._wake.set()
        async with self._changed:
            await self._changed.wait_for(self._durable)

    async def wait_backlog(self, at_most: int) -> None:
        """Returns once at most ``at_most`` events wait: backpressure for bulk producers."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.backlog <= at_most)

    def _durable(self) -> bool:
        return not self._queue and not self._inflight and not self._sync.pending

    async def close(self, grace: float = 5.0) -> None:
        """Commits what it can within ``grace`` seconds; the rest stays in the journal."""
        if self._closing:
            return
        self._closing = True
        self._urgent = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except TimeoutError:
                self._task.cancel()
                # Bounded too: a database call that does not take cancellation promptly (a
                # connection half-way through an outage) must not hold the shutdown. What is
                # in flight is journaled below; if it commits after all, replay skips it.
                await asyncio.wait({self._task}, timeout=grace)
        leftovers = self._inflight + list(self._queue)
        if leftovers:
            self._journal.prepend([self._codec.encode(i) for i in leftovers])
            self.stats.journaled += len(leftovers)
            self._inflight, self._queue = [], deque()
        await self._sync.finished()
        self._journal.close()
        if len(self._journal):
            _log.warning("writer closed; %d events wait in the journal", len(self._journal))
        await self._drop_connections()
        await self._notify()

    @property
    def backlog(self) -> int:
        """Events accepted and not yet resolved (memory and journal)."""
        return len(self._queue) + len(self._inflight) + len(self._journal)

    # -- the journal's fsync, coalesced --------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the flusher ---------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._queue and self._journal.empty:
                if self._closing:
                    return
                self._urgent = False
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._linger()
            batch, from_memory = self._take_batch()
            if not batch:
                await self._notify()  # an unreadable journal line was set aside: backlog fell
                continue
            try:
                await asyncio.wait_for(self._write(batch), self._write_timeout)
            except (TransientWriteError, TimeoutError) as exc:
                failures += 1
                self.stats.retries += 1
                await self._drop_connections()
                if from_memory:
                    self._park_memory_in_journal()
                    # Memory is now empty and the journal fsync'd: that alone can make
                    # wait_durable() true, and nothing else may wake its waiter (the journal's
                    # own fsync may have finished long before, e.g. while the batch timed out).
                    await self._notify()
                delay = min(self._max_backoff, 0.05 * 2 ** min(failures, 10))
                _log.warning(
                    "transcript batch of %d not committed (%s); retry in %.2fs, %d waiting",
                    len(batch),
                    first_line(exc),
                    delay,
                    self.backlog,
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                continue
            failures = 0
            if not from_memory:
                self._journal.consume(len(batch))
            self._inflight = []
            self._resolve(batch)
            await self._notify()

    async def _linger(self) -> None:
        """Waits for a full batch, at most until the oldest event is flush_interval old."""
        while not self._urgent and self._journal.empty and 0 < len(self._queue) < self._batch_size:
            remaining = self._queue[0].enqueued + self._flush_interval - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _take_batch(self) -> tuple[list[Pending], bool]:
        if self._queue:
            n = min(self._batch_size, len(self._queue))
            self._inflight = [self._queue.popleft() for _ in range(n)]
            return self._inflight, True
        items: list[Pending] = []
        for line in self._journal.peek(self._batch_size):
            try:
                items.append(self._codec.decode(line))
            except (ValueError, KeyError, TypeError) as exc:
                if items:  # end the batch here; the line heads the next one
                    break
                self._reject_line(line, f"unreadable journal line ({exc})")
                self._journal.consume(1)
                return [], False
        return items, False

    def _park_memory_in_journal(self) -> None:
        """The database failed: put what memory holds, oldest first, ahead of the journal."""
        items = self._inflight + list(self._queue)
        self._journal.prepend([self._codec.encode(i) for i in items])
        self.stats.journaled += len(items)
        self._inflight, self._queue = [], deque()

    def _resolve(self, batch: list[Pending]) -> None:
        now = time.monotonic()
        latencies = [now - i.enqueued for i in batch if i.ordinal and not math.isnan(i.enqueued)]
        self.stats.replayed += sum(1 for i in batch if not i.ordinal)
        self._resolved = max(self._resolved, max((i.ordinal for i in batch), default=0))
        self.stats.batches += 1
        if self._on_commit is not None and latencies:
            self._on_commit(latencies)

    # -- the database --------------------------------------------------------------------

    async def _connection(self, lane: int) -> psycopg.AsyncConnection[Any]:
        conn = self._conns[lane]
        if conn is None or conn.closed:
            conn = await connect(self._db.app_conninfo)
            self._conns[lane] = conn
        return conn

    async def _drop_connections(self) -> None:
        for lane, conn in enumerate(self._conns):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            self._conns[lane] = None

    async def _write(self, batch: list[Pending]) -> None:
        """Writes the batch over the lanes, each session always in the same lane (its order
        kept). When a lane fails after another committed, the whole batch is retried: the
        committed part comes back as duplicates (skipped, and counted as such)."""
        lanes: list[list[TranscriptEntry]] = [[] for _ in self._conns]
        for entry in _unique(batch):
            lanes[entry.session_id.int % len(lanes)].append(entry)
        results = await asyncio.gather(
            *(self._write_lane(lane, rows) for lane, rows in enumerate(lanes) if rows),
            return_exceptions=True,
        )
        inserted = sum(r for r in results if isinstance(r, int))
        self.stats.committed += inserted
        for result in results:
            if isinstance(result, BaseException):
                self._rejected_in_batch = 0
                raise result
        self.stats.duplicates += len(batch) - inserted - self._rejected_in_batch
        self._rejected_in_batch = 0

    async def _write_lane(self, lane: int, entries: list[TranscriptEntry]) -> int:
        return await write_entries(await self._connection(lane), entries, self._refuse)

    def _refuse(self, entry: TranscriptEntry, exc: Exception) -> None:
        """A row the database refused for its content: set aside, counted, never retried."""
        self._rejected_in_batch += 1
        reason = first_line(exc)
        _log.error(
            "transcript event %s of session %s refused by the database (%s); kept in %s",
            entry.event_id,
            entry.session_id,
            reason,
            self._rejected_path,
        )
        line = self._codec.encode(Pending(entry, 0, math.nan))
        self._write_rejected(line, reason)

    def _reject_line(self, line: bytes, reason: str) -> None:
        _log.error("%s; kept in %s", reason, self._rejected_path)
        self._write_rejected(line, reason)

    def _write_rejected(self, line: bytes, reason: str) -> None:
        self.stats.rejected += 1
        record = json.dumps({"reason": reason, "line": line.decode("utf-8", "replace")})
        fd = os.open(self._rejected_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, record.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


def _unique(batch: list[Pending]) -> list[TranscriptEntry]:
    """The batch's entries without repeats of a (session_id, event_id) in one trust class
    (a client's copy is no repeat of a trusted line: both are kept), first one kept."""
    seen: set[tuple[UUID, str, bool]] = set()
    out: list[TranscriptEntry] = []
    for item in batch:
        key = (item.entry.session_id, item.entry.event_id, item.entry.trusted)
        if key not in seen:
            seen.add(key)
            out.append(item.entry)
    return out
