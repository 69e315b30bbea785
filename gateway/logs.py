"""Logging set-up: human lines on a terminal, one JSON object per line everywhere else.

Session code passes ``extra={"interview_id": ..., "tenant_id": ...}``; those fields become keys
of the JSON object, so one interview's lines can be found in a log store. Credential headers
that libraries log, sent or received, are blanked (:func:`redact_credential_logs`), and so is
the upstream key's value itself, whole or in part, in every line of every logger, tracebacks
included (:func:`scrub_secret_logs`), whatever the level.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.redact import Scrubber

#: LogRecord attributes that are not ``extra`` fields
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


#: Loggers of libraries that print request and response headers at DEBUG (the upstream key
#: among them).
HEADER_LOGGERS = ("websockets.client",)
_CREDENTIAL_HEADER = re.compile(
    r"(?i)^([<>] )?(authorization|proxy-authorization|api-key|openai-api-key|x-api-key|cookie"
    r"|set-cookie)\s*:"
)


class RedactCredentials(logging.Filter):
    """Blanks the value of credential headers in a record: ``websockets`` logs every header
    of its handshake at DEBUG, sent (``>``: the upstream's ``Authorization: Bearer sk-...``)
    and received (``<``: a cookie, or a header that echoes the key back)."""

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


class ScrubbingRecordFactory:
    """Makes log records with every piece of a secret blanked (``gateway.redact``): in the
    message with its arguments, the traceback and the stack. A record factory, not a filter
    or a handler's formatter: it runs for every record of every logger before any handler
    (a log capture's too) sees it."""

    def __init__(self, make: Any, scrubber: Scrubber) -> None:
        self._make = make
        self.scrubber = scrubber
        self._formatter = logging.Formatter()

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self._make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format is the handler's to report
            return record
        scrubbed = self.scrubber.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.scrubber.scrub(self._formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.scrubber.scrub(record.stack_info)
        return record


def scrub_secret_logs(secrets: Iterable[str | None]) -> None:
    """Blank these secrets' values (whole or in part, in any shape) in every log record from
    now on, at every level (the factory is installed once; later calls add secrets)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, ScrubbingRecordFactory):
        factory = ScrubbingRecordFactory(factory, Scrubber())
        logging.setLogRecordFactory(factory)
    for secret in secrets:
        if secret:
            factory.scrubber.add(secret)


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
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(
    level: str = "INFO", *, json_lines: bool | None = None, secrets: Iterable[str | None] = ()
) -> None:
    """Log to stderr; JSON lines unless stderr is a terminal (or as told); credential headers
    and ``secrets`` (the upstream key) blanked. Called once at process start (``serve`` does,
    before it builds the app)."""
    redact_credential_logs()
    scrub_secret_logs(secrets)
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
