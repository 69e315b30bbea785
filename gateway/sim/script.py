"""The simulated interviewer's script: questions, the answers it expects, and a closing line.

The simulator cannot understand speech; it "transcribes" a candidate's turn by reporting the
scripted answer to the question it asked. So a script pairs every question with that answer.
A file that cannot drive an interview is refused when it is loaded (:class:`ScriptError`, naming
the file and the entry), not halfway through a call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SCRIPT_PATH = Path(__file__).with_name("interview_script.json")


class ScriptError(ValueError):
    """A script file that cannot drive an interview."""


@dataclass(frozen=True, slots=True)
class ScriptTurn:
    question: str
    answer: str  # what the candidate is expected to say; reported as its transcription


@dataclass(frozen=True, slots=True)
class Script:
    """Questions with expected answers, and a closing line. JSON: ``{"questions": [{"question",
    "answer"}, ...], "closing": "..."}``."""

    turns: tuple[ScriptTurn, ...]
    closing: str

    @classmethod
    def from_dict(cls, data: Any) -> Script:
        if not isinstance(data, dict):
            raise ScriptError("a script is a JSON object with 'questions' and 'closing'")
        questions = data.get("questions")
        if not isinstance(questions, list) or not questions:
            raise ScriptError("'questions' must be a non-empty list")
        turns = []
        for number, entry in enumerate(questions, 1):
            if not isinstance(entry, dict):
                raise ScriptError(f"question {number} must be an object")
            question, answer = entry.get("question"), entry.get("answer")
            if not isinstance(question, str) or not question.split():
                raise ScriptError(f"question {number}: 'question' must be non-empty text")
            if not isinstance(answer, str) or not answer.split():
                raise ScriptError(f"question {number}: 'answer' must be non-empty text")
            turns.append(ScriptTurn(question, answer))
        closing = data.get("closing")
        if not isinstance(closing, str) or not closing.split():
            raise ScriptError("'closing' must be non-empty text")
        return cls(tuple(turns), closing)

    @classmethod
    def load(cls, path: str | Path) -> Script:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ScriptError(f"cannot read script {path}: {exc}") from None
        try:
            return cls.from_dict(data)
        except ScriptError as exc:
            raise ScriptError(f"{path}: {exc}") from None

    @classmethod
    def default(cls) -> Script:
        return cls.load(DEFAULT_SCRIPT_PATH)
