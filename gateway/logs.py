"""Logging set-up: human lines on a terminal, one JSON object per line everywhere else.

Session code passes ``extra={"interview_id": ..., "tenant_id": ...}``; those fields become keys
of the JSON object, so one interview's lines can be found in a log store. Credential headers
that libraries log are blanked (:func:`redact_credential_logs`), whatever the level.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

#: LogRecord attributes that are not ``extra`` fields
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


#: Loggers of libraries that print request headers at DEBUG (the upstream key among them).
HEADER_LOGGERS = ("websockets.client",)
_CREDENTIAL_HEADER = re.compile(r"(?i)^([<>] )?(authorization|api-key|openai-api-key)\s*:")


class RedactCredentials(logging.Filter):
    """Blanks the value of credential headers in a record: ``websockets`` logs every request
    header of its handshake at DEBUG, the upstream's ``Authorization: Bearer sk-...`` too."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        match = _CREDENTIAL_HEADER.match(message)
        if match:
            record.msg, record.args = f"{match.group(0)} [redacted]", ()
        return True


def redact_credential_logs() -> None:
    """Attach :class:`RedactCredentials` to the header-logging loggers (once, however often
    called). A logger's filter sees every record it creates, before any handler does, so this
    holds for handlers added later too (a test's log capture among them)."""
    for name in HEADER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())


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
    """Log to stderr; JSON lines unless stderr is a terminal (or as told); credentials blanked.
    Called once at process start (``serve`` does, before it builds the app)."""
    redact_credential_logs()
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
