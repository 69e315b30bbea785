"""The transcript as the admin API hands it out: JSON entries, plain text, or WebVTT.

Plain text is ``storage.transcripts.transcript_text``'s format (one ``Speaker: text`` line per
entry), so the stored transcript reads the same everywhere; this module only ends the last line.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from storage.transcripts import TranscriptRow

FORMATS = ("json", "text", "vtt")
#: The speaker names of the text format, for the WebVTT voices.
SPEAKERS = {"interviewer": "Interviewer", "candidate": "Candidate"}


def as_json(interview_id: UUID, rows: list[TranscriptRow]) -> dict[str, Any]:
    """The JSON body: the entries without the raw upstream event (not part of the contract)."""
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


def as_text(transcript_text: str) -> str:
    """A text file: every line, the last one included, ends in a newline."""
    return transcript_text + "\n" if transcript_text else ""


def as_vtt(rows: list[TranscriptRow]) -> str:
    """WebVTT, one cue per line. A cue runs from when its line was received (relative to the
    first) to when the next one was: what the gateway knows without the audio itself."""
    out = ["WEBVTT", ""]
    if not rows:
        return "\n".join(out)
    start = rows[0].received_at
    offsets = [(r.received_at - start).total_seconds() for r in rows]
    for index, row in enumerate(rows):
        begin = offsets[index]
        words = max(1, len(row.text.split()))
        end = offsets[index + 1] if index + 1 < len(rows) else begin + max(1.0, words / 2.5)
        end = max(end, begin + 0.5)
        out += [
            str(row.seq),
            f"{_timestamp(begin)} --> {_timestamp(end)}",
            f"<v {SPEAKERS[row.role]}>{_cue_text(row.text)}",
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
    return " ".join(escaped.replace("-->", "--&gt;").split())
