"""The README's list of end reasons is the code's fixed set (``gateway/sessions/reasons.py``),
both ways: an operator reading it can match every ``end_reason`` a row or a metric shows."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.sessions.reasons import END_REASONS
from signaling.errors import ERRORS

README = Path(__file__).resolve().parents[2] / "README.md"


def documented() -> set[str]:
    """The reasons named in the README's two paragraphs on how sessions end."""
    text = README.read_text()
    start = text.index("A session always ends in a recorded state")
    end = text.index("\n## ", start)
    named = set(re.findall(r"`([a-z_<> ]+)`", text[start:end]))
    if "signaling_<error code>" in named:
        named.discard("signaling_<error code>")
        named |= {f"signaling_{code}" for code in ERRORS}
    return named


def test_every_reason_the_code_can_record_is_documented() -> None:
    assert sorted(END_REASONS - documented()) == []


def test_every_reason_the_readme_names_can_be_recorded() -> None:
    # The paragraphs also name statuses and GPT-Live's own close reasons, which map onto ours.
    not_reasons = {"ended", "failed", "session.closed", "close_requested", "expired", "content",
                   "remote_hangup", "connection_lost"}  # fmt: skip
    assert documented() - not_reasons - END_REASONS == set()
