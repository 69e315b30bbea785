"""The interview script: the default one, and clear errors for a bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import sim_upstream
from gateway.sim.script import Script, ScriptError, ScriptTurn


def test_the_default_script_is_a_short_interview() -> None:
    script = Script.default()
    assert 1 <= len(script.turns) <= 5
    assert all(turn.question.split() and turn.answer.split() for turn in script.turns)
    assert script.closing.split()


def test_a_script_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    data = {"questions": [{"question": "Why us?", "answer": "Good problems."}], "closing": "Bye."}
    path.write_text(json.dumps(data))
    assert Script.load(path) == Script((ScriptTurn("Why us?", "Good problems."),), "Bye.")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "JSON object"),
        ({"closing": "Bye."}, "'questions' must be a non-empty list"),
        ({"questions": [], "closing": "Bye."}, "'questions' must be a non-empty list"),
        ({"questions": ["Why?"], "closing": "Bye."}, "question 1 must be an object"),
        (
            {"questions": [{"question": " ", "answer": "a"}], "closing": "x"},
            "question 1: 'question'",
        ),
        ({"questions": [{"question": "q"}], "closing": "x"}, "question 1: 'answer'"),
        ({"questions": [{"question": "q", "answer": "a"}]}, "'closing'"),
    ],
)
def test_a_bad_script_says_what_is_wrong(tmp_path: Path, data: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ScriptError, match=message) as caught:
        Script.load(path)
    assert str(path) in str(caught.value)


def test_an_unreadable_script_is_a_script_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ScriptError, match="cannot read script"):
        Script.load(tmp_path / "broken.json")
    with pytest.raises(ScriptError, match="cannot read script"):
        Script.load(tmp_path / "missing.json")


def test_the_command_refuses_a_bad_script_or_a_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert sim_upstream.main(["--script", str(tmp_path / "missing.json")]) == 2
    assert "cannot read script" in capsys.readouterr().err
    monkeypatch.delenv("SIM_TEST_KEY", raising=False)
    assert sim_upstream.main(["--api-key-env", "SIM_TEST_KEY"]) == 2
    assert "SIM_TEST_KEY is not set" in capsys.readouterr().err
