"""A local append-only journal of opaque lines, kept in numbered segment files.

The transcript writer parks here what it cannot hold in memory or cannot commit yet, and reads
it back in order. Lines are appended with one ``write(2)`` each, so they survive the death of
the process the moment :meth:`Journal.append` returns; :meth:`Journal.sync` adds ``fsync`` for
the death of the machine. Reading never removes anything: lines are released with
:meth:`Journal.consume` only after the caller has made them durable elsewhere, and a segment
file disappears when its last line has been consumed. After a crash, every unconsumed line is
read again; whoever consumes them must be idempotent.

Segments are numbered so that :meth:`Journal.prepend` can put lines *before* everything else,
which is where lines taken back from memory belong (they are older than the journal's).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from io import BufferedReader
from pathlib import Path

_log = logging.getLogger(__name__)

#: Segment numbers start here, leaving room below for prepended segments.
_FIRST_SEGMENT = 1_000_000_000
_SUFFIX = ".journal"


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segments: deque[int] = deque()  # every segment on disk, oldest first
        self._write_no: int | None = None  # the segment open for appending, always the newest
        self._write_fd: int | None = None
        self._dirty = False  # appended since the last fsync
        self._new_segment = False  # created since the last fsync of the directory
        self._read_no: int | None = None  # the head segment being read
        self._read_file: BufferedReader | None = None
        self._peeked: deque[bytes] = deque()  # read from the head, not yet consumed
        self._lines = 0  # unconsumed lines, as far as this process knows (see ``open``)

    def open(self) -> int:
        """Finds the segments left on disk; returns how many lines they hold."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found = self.directory.glob(f"*{_SUFFIX}")
        numbers = sorted(int(p.stem) for p in found if p.stem.isdigit())
        self._segments = deque(numbers)
        self._lines = sum(self._path(n).read_bytes().count(b"\n") for n in numbers)
        return self._lines

    @property
    def unsynced(self) -> bool:
        """Lines were appended since the last :meth:`sync`."""
        return self._dirty

    @property
    def empty(self) -> bool:
        return self._lines == 0

    def __len__(self) -> int:
        return self._lines

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}{_SUFFIX}"

    def append(self, lines: list[bytes]) -> None:
        """Adds lines after everything else; they survive the process once this returns."""
        if self._write_fd is None:
            self._write_no = (self._segments[-1] + 1) if self._segments else _FIRST_SEGMENT
            self._write_fd = os.open(
                self._path(self._write_no), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            self._segments.append(self._write_no)
            self._new_segment = True
        os.write(self._write_fd, b"".join(line + b"\n" for line in lines))
        self._lines += len(lines)
        self._dirty = True

    def prepend(self, lines: list[bytes]) -> None:
        """Puts lines before everything else, fsync'd before returning (a rare, failure path)."""
        if not lines:
            return
        number = (self._segments[0] if self._segments else _FIRST_SEGMENT) - 1
        fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        self._segments.appendleft(number)
        self._lines += len(lines)
        # whatever was peeked from the old head now comes after the new lines: read again
        self._close_reader()
        self._fsync_directory()

    async def sync(self) -> None:
        """fsyncs what was appended (in a thread, so the event loop keeps running)."""
        if not self._dirty or self._write_fd is None:
            return
        self._dirty = False
        fd = os.dup(self._write_fd)  # the segment may be sealed (closed) while the thread runs
        try:
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        if self._new_segment:
            self._new_segment = False
            await asyncio.to_thread(self._fsync_directory)

    def peek(self, limit: int) -> list[bytes]:
        """Up to ``limit`` of the oldest unconsumed lines, without consuming them."""
        while len(self._peeked) < limit and self._segments:
            if self._read_file is None:
                self._open_head()
            assert self._read_file is not None
            raw = self._read_file.readline()
            if raw.endswith(b"\n"):
                self._peeked.append(raw[:-1])
                continue
            if raw:  # a torn last line: the process died inside write(2)
                _log.warning("journal segment %s ends with a torn line; dropped", self._read_no)
            if self._peeked:
                break  # consume what we have before moving past this segment
            self._retire_head()
        if not self._segments:
            self._lines = 0  # a torn line was all that was left
        return list(self._peeked)[:limit]

    def consume(self, count: int) -> None:
        """Releases the ``count`` oldest lines (returned by :meth:`peek`) for good."""
        for _ in range(count):
            self._peeked.popleft()
        self._lines -= count
        if not self._peeked and self._read_file is not None and not self._read_file.peek(1):
            self._retire_head()  # fully consumed: do not make the next process read it again

    def _open_head(self) -> None:
        head = self._segments[0]
        if head == self._write_no:  # seal it: new appends go to a fresh segment
            self._close_writer()
        self._read_no = head
        self._read_file = open(self._path(head), "rb")  # kept open across calls

    def _retire_head(self) -> None:
        assert self._read_no is not None
        self._close_reader()
        number = self._segments.popleft()
        self._path(number).unlink(missing_ok=True)

    def _close_reader(self) -> None:
        if self._read_file is not None:
            self._read_file.close()
        self._read_file = None
        self._read_no = None
        self._peeked.clear()

    def _close_writer(self) -> None:
        if self._write_fd is not None:
            if self._dirty:
                os.fsync(self._write_fd)
                self._dirty = False
            os.close(self._write_fd)
        self._write_fd = None
        self._write_no = None

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """fsyncs and closes; unconsumed lines stay on disk for the next process."""
        self._close_writer()
        self._close_reader()


class JournalSync:
    """At most one ``fsync`` of a journal in flight, however often its writer asks for one.

    Appending is cheap and an ``fsync`` is not, so a writer appends, calls :meth:`request`,
    and goes on; one task syncs until nothing appended is unsynced, then calls ``synced`` (the
    writer wakes whoever waits for durability). The transcript writer and the session state
    writer both keep their journals this way.
    """

    def __init__(self, journal: Journal, synced: Callable[[], Awaitable[None]], name: str) -> None:
        self._journal = journal
        self._synced = synced
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        """Whether something appended may not be on disk yet."""
        return self._journal.unsynced or self._task is not None

    def request(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sync(), name=self._name)

    async def finished(self) -> None:
        """Waits for the sync in flight, if any."""
        if self._task is not None:
            await self._task

    async def _sync(self) -> None:
        try:
            while self._journal.unsynced:
                await self._journal.sync()
        finally:
            self._task = None
            await self._synced()
