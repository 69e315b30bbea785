"""Where a running ``serve`` listens, kept in its data directory for the other commands.

``serve --port 9000`` (or port 0, any free one) is not in the settings that ``invite`` reads,
so ``invite`` used to print links to the default port. ``serve`` records its base URL here once
it listens and removes it when it stops; ``invite`` uses it when no ``GATEWAY_PUBLIC_URL`` says
otherwise.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

FILE_NAME = "serve-url"


def record(data_dir: Path, base_url: str) -> None:
    (data_dir / FILE_NAME).write_text(base_url + "\n")


def forget(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / FILE_NAME).unlink()


def recorded(data_dir: Path) -> str | None:
    """The base URL a ``serve`` on this data directory listens on, if one does."""
    try:
        return (data_dir / FILE_NAME).read_text().strip() or None
    except OSError:
        return None
