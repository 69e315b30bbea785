"""The transcript as the admin API hands it out: JSON entries, plain text, or WebVTT.

Every format is made of turns (``gateway.sessions.turns.read_turns``): a Realtime row is a turn,
GPT-Live's fragments are joined into theirs, so an interview reads the same on either contract.

A turn's text is what an upstream (or, for ``source = client``, a browser) said it was, so no
format lets it add structure: JSON escapes it, and the text and WebVTT formats put it on one
line without control characters (``one_line``), so a newline in it cannot start a line that
reads as another speaker's. Lines the browser forwarded carry their mark in every format:
``source`` in JSON, ``CLIENT_MARK`` after the speaker in the text and the WebVTT voice.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from gateway.sessions.turns import Turn

FORMATS = ("json", "text", "vtt")
#: The speaker names of the text format, for the WebVTT voices.
SPEAKERS = {"interviewer": "Interviewer", "candidate": "Candidate"}
#: After the speaker's name, on a line the browser forwarded (the least trusted source).
CLIENT_MARK = " [client]"

#: What could change a line's structure or how it reads: C0 and C1 controls (newlines, tabs,
#: escape sequences), DEL, the Unicode line and paragraph separators, and the bidirectional
#: embeddings, overrides and isolates (which can make text display in another order).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` on one line: each control character (``_CONTROL``) a space, every run of
    whitespace one space, none at either end."""
    return " ".join(_CONTROL.sub(" ", text).split())


def speaker(turn: Turn) -> str:
    """Who said it, as the text and WebVTT formats name them (a client's line marked)."""
    return SPEAKERS[turn.role] + (CLIENT_MARK if turn.source == "client" else "")


def as_json(interview_id: UUID, rows: list[Turn]) -> dict[str, Any]:
    """The JSON body: one entry per turn, without the raw upstream events (not part of the
    contract). A joined turn's ``seq``, ``source``, ``item_id`` and ``received_at`` are its
    first fragment's, its audio span from its first fragment's start to its last's end."""
    return {
        "interview_id": str(interview_id),
        "entries": [
            {
                "seq": r.seq,
                "role": r.role,
                "text": r.text,
                "source": r.source,
                "item_id": r.item_id,
                "received_at": r.received_at.isoformat(),
                "audio_start_ms": r.audio_start_ms,
                "audio_end_ms": r.audio_end_ms,
            }
            for r in rows
        ],
    }


def as_text(rows: list[Turn]) -> str:
    """One ``Speaker: text`` line per turn (``speaker``, ``one_line``); every line, the last
    one included, ends in a newline (an empty transcript is empty)."""
    return "".join(f"{speaker(r)}: {one_line(r.text)}\n" for r in rows)


def spans(rows: list[Turn], origin: datetime | None = None) -> list[tuple[float, float]]:
    """Each turn's (begin, end) in seconds: its audio span on the session timeline when every
    turn has one (GPT-Live), else from when it was received (relative to ``origin``, by
    default the first turn's arrival) to when the next one was, which is what the gateway
    knows of a Realtime turn without its audio."""
    timed = [
        (r.audio_start_ms / 1000, r.audio_end_ms / 1000)
        for r in rows
        if r.audio_start_ms is not None and r.audio_end_ms is not None
    ]
    if len(timed) == len(rows):
        return timed
    first = rows[0].received_at if origin is None else origin
    offsets = [(r.received_at - first).total_seconds() for r in rows]
    result = []
    for index, row in enumerate(rows):
        words = max(1, len(row.text.split()))
        begin = offsets[index]
        result.append(
            (begin, offsets[index + 1] if index + 1 < len(rows) else begin + max(1.0, words / 2.5))
        )
    return result


def as_vtt(rows: list[Turn]) -> str:
    """WebVTT, one cue per turn (``spans`` says when), at least half a second each."""
    out = ["WEBVTT", ""]
    if not rows:
        return "\n".join(out)
    for row, (begin, end) in zip(rows, spans(rows), strict=True):
        end = max(end, begin + 0.5)
        out += [
            str(row.seq),
            f"{_timestamp(begin)} --> {_timestamp(end)}",
            f"<v {speaker(row)}>{_cue_text(row.text)}",
            "",
        ]
    return "\n".join(out)


def _timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _cue_text(text: str) -> str:
    """Cue text is markup: escape it, and keep it on one line so it cannot end the cue."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return one_line(escaped)
