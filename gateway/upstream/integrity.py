"""The gateway owns the interviewer's configuration: nothing the candidate's client sends
changes it.

Two defences, one per way the candidate's events can reach the upstream:

- ``ClientEventPolicy``: in relay mode every client event crosses the gateway's data-channel
  bridge, so it passes an allowlist first. The default admits what a candidate's client
  legitimately sends over WebRTC (committing or clearing its own input audio, cancelling or
  cutting short the interviewer's reply) and nothing that configures the session or speaks
  for it (``session.update``, ``conversation.item.create``, ``response.create``, ...).
- In proxy mode the browser's data channel reaches the upstream directly, so the gateway
  cannot filter. Where the contract lets the server that creates a call restrict what the
  browser's data channel may send (GPT-Live's ``client.data_channel.allowed_client_events``,
  ``UpstreamClient.restricting_frontend``), the gateway hands it the same allowlist, and the
  upstream enforces it.
- ``SessionGuard``: the second line (the only one on the Realtime contract, which has no such
  setting): the gateway watches the server's ``session.updated`` events instead
  (sideband, and the relay's leg as a second line) and, when a field the gateway configured
  has changed, sends the gateway's values again and reports it. Which fields are guarded is
  the upstream contract's (``UpstreamClient.guarded_fields``): Realtime's instructions,
  transcription and tools; GPT-Live's ``delegation`` and ``triggers``, the only ones its
  ``session.update`` can change (instructions, model and voice are fixed at start).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

#: Client event types a candidate's client may send upstream unless configured otherwise.
DEFAULT_CLIENT_EVENTS: tuple[str, ...] = (
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "response.cancel",
    "output_audio_buffer.clear",
)


class ClientEventPolicy:
    """Which client events pass; ``prefix.*`` admits a whole family."""

    def __init__(self, allowed: Iterable[str] = DEFAULT_CLIENT_EVENTS) -> None:
        allowed = tuple(allowed)
        self._exact = frozenset(a for a in allowed if not a.endswith(".*"))
        self._prefixes = tuple(a[:-1] for a in allowed if a.endswith(".*"))

    def refusal(self, message: str | bytes) -> str | None:
        """None if ``message`` may pass, else what it was (its type, or ``unreadable``)."""
        try:
            event = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            return "unreadable"
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str):
            return "unreadable"
        return None if self.admits(kind) else kind[:100]

    def admits(self, kind: str) -> bool:
        return kind in self._exact or kind.startswith(self._prefixes)

    def admitted(self, known: Iterable[str]) -> list[str]:
        """Which of a contract's client event types pass, for an upstream that enforces the
        list itself (it takes names, not ``prefix.*`` families)."""
        return [kind for kind in known if self.admits(kind)]


def _covers(configured: Any, reported: Any) -> bool:
    """Whether ``reported`` still holds everything ``configured`` set (extra keys are fine:
    the upstream fills in defaults)."""
    if isinstance(configured, Mapping):
        return isinstance(reported, Mapping) and all(
            _covers(value, reported.get(key)) for key, value in configured.items()
        )
    return bool(configured == reported)


def _get(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


class SessionGuard:
    """Watches server events for a ``session.updated`` that undoes the gateway's configuration.

    ``send`` delivers a client event upstream on the call's own trusted path; ``report`` is
    told which fields were changed, once per tampering (restoring causes a ``session.updated``
    of its own, which then matches).
    """

    def __init__(
        self,
        configured: Mapping[str, Any],
        guarded_fields: Sequence[tuple[str, ...]],
        *,
        send: Callable[[str], None],
        report: Callable[[list[str]], None],
    ) -> None:
        self._configured = configured
        self._send = send
        self._report = report
        self._guarded = [p for p in guarded_fields if _get(configured, p) is not None]

    def observe(self, message: str | bytes) -> None:
        # Cheap test first: nearly every event is something else.
        marker = b"session.updated" if isinstance(message, bytes) else "session.updated"
        if marker not in message:  # type: ignore[operator]
            return
        try:
            event = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(event, dict) or event.get("type") != "session.updated":
            return
        reported = event.get("session")
        if not isinstance(reported, Mapping):
            return
        changed = [
            ".".join(path)
            for path in self._guarded
            if not _covers(_get(self._configured, path), _get(reported, path))
        ]
        if changed:
            self._send(json.dumps({"type": "session.update", "session": self.restoring()}))
            self._report(changed)

    def restoring(self) -> dict[str, Any]:
        """A ``session.update`` body that sets every guarded field back."""
        # Realtime sessions name their type; GPT-Live's have none.
        session: dict[str, Any] = (
            {"type": self._configured["type"]} if "type" in self._configured else {}
        )
        for path in self._guarded:
            target = session
            for key in path[:-1]:
                target = target.setdefault(key, {})
            target[path[-1]] = _get(self._configured, path)
        return session
