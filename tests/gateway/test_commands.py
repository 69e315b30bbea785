"""The commands a user types: `serve` and `simulate`, run as the user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID

import psutil
import pytest

from gateway import cli
from gateway.cli.helptext import plain
from storage import interviews
from storage.database import open_database

#: Slow (processes started as a user starts them, some run whole interviews): left out by
#: `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow


def command_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "GATEWAY_DATA_DIR": str(data_dir)}


@asynccontextmanager
async def killed_at_exit(process: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Whatever the test asserts, the command it started does not outlive it."""
    try:
        yield
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def start_serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--port", "0",
        env={**env, "GATEWAY_ICE_ADDRESSES": "127.0.0.1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


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
    async with killed_at_exit(process):
        lines = [(await asyncio.wait_for(process.stdout.readline(), 60)).decode() for _ in range(3)]
        assert lines[0].startswith("interview-gateway listening on http://127.0.0.1:")
        room = lines[1].removeprefix("interview room: ").strip()
        assert "/interview/" in room and "#token=" in room
        interview_id = room.split("/interview/")[1].split("#")[0]
        # invite, run beside it on the same data directory, links to the port serve took
        base_url = lines[0].split(" listening on ")[1].split()[0]
        tenant = (tmp_path / "default-tenant").read_text().strip()
        invited = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "invite", "--tenant", tenant,
            env=command_env(fresh_database_url, tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        link, _ = await asyncio.wait_for(invited.communicate(), 60)
        assert link.decode().startswith(f"{base_url}/interview/"), (link, base_url)
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    assert not (tmp_path / "serve-url").exists()  # a stopped serve leaves no address behind
    # the invitation names a real interview row, still waiting for its candidate
    db = await open_database(fresh_database_url, data_dir=tmp_path, migrate=False)
    try:
        record = await interviews.get_session(db, UUID(tenant), UUID(interview_id))
        assert record is not None and record.status == "created"
    finally:
        await db.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_serve_stopped_while_it_connects_to_the_database_exits_at_once(
    signum: signal.Signals, tmp_path: Path
) -> None:
    # A "server" that accepts the connection and never answers: start-up is certainly still
    # under way, waiting on it, when the signal comes (psycopg would wait 5 s for it).
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the gateway hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    async with server:
        process = await start_serve(command_env(url, tmp_path))
        async with killed_at_exit(process):
            await asyncio.wait_for(accepted.wait(), 60)
            process.send_signal(signum)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert b"interview room" not in stdout
    assert stderr.decode().strip().splitlines()[-1] == (
        "interview-gateway: interrupted during start-up; stopping"
    )


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_serve_stopped_before_it_prints_the_room_stops_its_embedded_postgres(
    signum: signal.Signals, embedded_data_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = await start_serve({**env, "GATEWAY_DATA_DIR": str(embedded_data_dir)})
    assert process.stdout is not None
    async with killed_at_exit(process):
        line = await asyncio.wait_for(process.stdout.readline(), 120)
        assert line.startswith(b"interview-gateway listening on")  # the database is open
        pid_file = embedded_data_dir / "postgres" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0])
        assert running(postmaster)
        process.send_signal(signum)  # before the room URL: the invitation is being made
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert not running(postmaster)
    assert not pid_file.exists()


@pytest.mark.parametrize("upstream", ["sim", "sim-live"])
async def test_simulate_runs_whole_interviews_and_reports_json(
    fresh_database_url: str, tmp_path: Path, upstream: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "simulate", "--interviews", "2", "--mode", "auto",
        "--words-per-second", "10", "--upstream", upstream, "--json",
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
    ("bench", "fleet"),
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
