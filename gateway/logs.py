"""Logging set-up: human lines on a terminal, one JSON object per line everywhere else.

Session code passes ``extra={"interview_id": ..., "tenant_id": ...}``; those fields become keys
of the JSON object, so one interview's lines can be found in a log store.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

#: LogRecord attributes that are not ``extra`` fields
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    """Log to stderr; JSON lines unless stderr is a terminal (or as told)."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiortc and aioice narrate every packet at INFO/DEBUG; keep their warnings only.
    for noisy in ("aioice", "aiortc", "aiohttp.access", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
