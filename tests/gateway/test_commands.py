"""The commands a user types: `serve` and `simulate`, run as the user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from uuid import UUID

import pytest

from gateway import cli
from gateway.cli.helptext import plain
from storage import interviews
from storage.database import open_database


def command_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "GATEWAY_DATA_DIR": str(data_dir)}


async def test_serve_prints_a_working_invitation_and_ends_cleanly_on_ctrl_c(
    fresh_database_url: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", "0",
        env={**command_env(fresh_database_url, tmp_path), "GATEWAY_ICE_ADDRESSES": "127.0.0.1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    lines = [(await asyncio.wait_for(process.stdout.readline(), 60)).decode() for _ in range(3)]
    assert lines[0].startswith("interview-gateway listening on http://127.0.0.1:")
    room = lines[1].removeprefix("interview room: ").strip()
    assert "/interview/" in room and "#token=" in room
    interview_id = room.split("/interview/")[1].split("#")[0]
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 60) == 0
    # the invitation names a real interview row, still waiting for its candidate
    db = await open_database(fresh_database_url, data_dir=tmp_path, migrate=False)
    try:
        tenant = (tmp_path / "default-tenant").read_text().strip()
        record = await interviews.get_session(db, UUID(tenant), UUID(interview_id))
        assert record is not None and record.status == "created"
    finally:
        await db.close()


async def test_simulate_runs_whole_interviews_and_reports_json(
    fresh_database_url: str, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "simulate", "--interviews", "2", "--mode", "auto",
        "--words-per-second", "10", "--json",
        env=command_env(fresh_database_url, tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 180)
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert process.returncode == 0, report
    assert (report["interviews"], report["completed"]) == (2, 2)
    assert report["modes"] == {"relay": 2, "proxy": 0}
    assert report["transcripts_persisted"] == report["transcripts_expected"] == 14
    assert (report["lost"], report["duplicates"], report["errors"]) == (0, 0, [])
    assert 0 < report["setup_ms"]["p50"] <= report["setup_ms"]["max"]


async def test_simulate_fails_loudly_when_interviews_fail(
    fresh_database_url: str, tmp_path: Path
) -> None:
    # relay only, and no relay capacity: every interview is refused
    env = {**command_env(fresh_database_url, tmp_path), "GATEWAY_MAX_RELAY_SESSIONS": "0"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "simulate", "--interviews", "1", "--mode", "relay",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, _ = await asyncio.wait_for(process.communicate(), 180)
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert process.returncode == 1
    assert report["completed"] == 0 and "at_capacity" in report["errors"][0]


# --- help texts, the README's Commands table, and unknown names


#: every command whose help and README row this file checks (serve's are checked with serve)
COMMANDS = (
    ("migrate",),
    ("invite",),
    ("sim-upstream",),
    ("simulate",),
    ("bench", "transcripts"),
    ("bench", "relay"),
)
README = Path(__file__).resolve().parents[2] / "README.md"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def help_output(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_is_the_commands_docstring_in_plain_text(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_output(command, capsys)
    assert f"interview-gateway {' '.join(command)}: " in text  # the docstring's first line
    assert "`" not in text, text  # neither ``literals`` nor :role:`targets`


def test_the_list_of_commands_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert cli.main(["bench", "--help"]) == 0
    text = capsys.readouterr().out
    assert "sim-upstream" in text and "relay" in text
    assert "`" not in text, text


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_the_readme_lists_every_flag_of_the_command(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = set(FLAG.findall(help_output(command, capsys))) - {"--help"}
    row_start = f"| `interview-gateway {' '.join(command)}"
    rows = [
        line
        for line in README.read_text().splitlines()
        if line.startswith(row_start) and line[len(row_start)] in " `"
    ]
    assert rows, f"no README row for {command}"
    documented = {flag for row in rows for flag in FLAG.findall(row.split("` |")[0])}
    assert flags <= documented, f"missing from the README: {sorted(flags - documented)}"


def test_an_unknown_benchmark_is_named_as_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "foo"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "unknown benchmark 'foo'" in err and "transcripts" in err


def test_plain_drops_rest_markup_and_keeps_the_words() -> None:
    doc = "Runs ``serve``: see :class:`~gateway.sim.script.Script`, :mod:`.sideband` and\n- a list"
    assert plain(doc) == "Runs serve: see Script, sideband and\n- a list"
