"""Where finished segments go: one small interface, one implementation per kind of storage.

A segment is written and fsync'd in the gateway's spool directory first (status ``stored``);
``SegmentStorage.put`` then moves it to where recordings are kept (status ``uploaded``) and
says where that is. The recorder never knows which storage it has.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol


class StorageError(Exception):
    """A segment could not be put into storage; the spooled file is still there."""


class SegmentStorage(Protocol):
    async def put(self, key: str, source: Path) -> str:
        """Take the spooled file ``source`` as ``key`` (``tenant/interview/name``); the URI
        where it is now. ``source`` may be gone afterwards. Raises ``StorageError``."""
        ...


class LocalStorage:
    """A directory on the gateway's own disk (the default: ``recordings`` in the data dir).

    ``put`` renames the spooled file into it (one file system: a rename, nothing copied) and
    fsyncs the directory, so the rename itself survives a crash.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    async def put(self, key: str, source: Path) -> str:
        return await asyncio.to_thread(self._put, key, source)

    def _put(self, key: str, source: Path) -> str:
        target = self.root / key
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            fsync_directory(target.parent)
        except OSError as exc:
            raise StorageError(f"cannot store {key} in {self.root}: {exc.strerror}") from exc
        return target.as_uri()


def fsync_directory(path: Path) -> None:
    """Make a directory's entries (a file created or renamed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
