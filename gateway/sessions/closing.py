"""The interviewer's closing line ends the interview.

Nothing else would: the candidate had to notice the end and press End, or wait for the time
limit. The deployment names the words that close an interview (``GATEWAY_END_PHRASE``; with
the simulated upstream, its script's closing line); once the interviewer's final transcript
line contains them, the session ends ``ended``/``interview_complete`` ``GATEWAY_END_LINGER``
seconds later, so the line plays out first (a candidate who says bye meanwhile ends it as
``bye``). Matching ignores case, punctuation and spacing: transcripts differ from a script in
those.
"""

from __future__ import annotations

import re

#: The end reason of an interview its closing line ended.
INTERVIEW_COMPLETE = "interview_complete"

_NOT_WORD = re.compile(r"[\W_]+")


def _words(text: str) -> str:
    return " ".join(_NOT_WORD.sub(" ", text.casefold()).split())


class ClosingLine:
    """The words that close an interview; an empty phrase closes none."""

    def __init__(self, phrase: str) -> None:
        self._phrase = _words(phrase)

    def __bool__(self) -> bool:
        return bool(self._phrase)

    def said_in(self, text: str) -> bool:
        """Whether ``text`` (an interviewer's line) says the closing words."""
        return bool(self._phrase) and f" {self._phrase} " in f" {_words(text)} "
