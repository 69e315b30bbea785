"""``interview-gateway simulate``: whole interviews with no browser, no network and no API key.

It starts a simulated upstream and a gateway, each in its own process (a relayed session costs
CPU in all three roles, and one Python process is capped near one core by the GIL), then runs
N headless candidates over the real signaling from this process. When they are done it stops the
gateway — shutdown flushes the transcript writer — and reads back from Postgres what was stored.

``--upstream`` chooses the contract the gateway speaks to the simulator: ``sim`` (the Realtime
calls API) or ``sim-live`` (GPT-Live); either way the gateway reaches the simulator's process
through its real client (``GATEWAY_UPSTREAM=openai`` / ``openai-live``). A transcript line is a
turn read back (``gateway.sessions.turns``), so GPT-Live's fragments count as the turns they
make up.

Exit status 1 if any interview failed, or the turns read back are not exactly the ones expected,
or an event was stored twice. With ``--gateway URL`` it targets a running gateway instead
(``DATABASE_URL`` and ``GATEWAY_JWT_SECRET`` must then be those of that gateway, and that
gateway's own configuration decides its upstream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import media
from gateway.cli.helptext import command_parser
from gateway.config import Settings
from gateway.sessions.invitations import Invitation, invite
from gateway.sessions.turns import read_turns
from gateway.sim.candidate import CandidateReport, HeadlessCandidate
from gateway.sim.script import Script
from storage import interviews, tenants, transcripts
from storage.database import Database, DatabaseUnavailable, open_database

READY_TIMEOUT = 60.0
#: every WebRTC packet of a simulation stays on loopback: candidates, gateway and upstream
LOOPBACK = ("127.0.0.1",)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = command_parser("interview-gateway simulate", __doc__)
    parser.add_argument(
        "--interviews", type=int, default=3, metavar="N", help="concurrent interviews (3)"
    )
    parser.add_argument(
        "--mode", choices=("relay", "proxy", "auto"), default="auto", help="session mode (auto)"
    )
    parser.add_argument(
        "--upstream",
        choices=("sim", "sim-live"),
        default="sim",
        help="the contract the simulator speaks: Realtime (sim) or GPT-Live (sim-live)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=90.0,
        metavar="S",
        help="time limit for each interview, seconds (90)",
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        metavar="S",
        help="spread the interviews' starts evenly over this many seconds (default: all at once)",
    )
    parser.add_argument(
        "--gateway", metavar="URL", help="URL of a running gateway (default: start one)"
    )
    parser.add_argument(
        "--script", type=Path, metavar="FILE", help="interview script JSON (default: built in)"
    )
    parser.add_argument(
        "--words-per-second", type=float, default=6.0, metavar="W", help="speaking speed (6)"
    )
    parser.add_argument("--json", action="store_true", help="last line: the report as JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.interviews < 1:
        print("simulate: --interviews must be at least 1", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(simulate(args))
    except (DatabaseUnavailable, ProcessFailed) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    print_report(report, as_json=args.json)
    ok = (
        report["completed"] == report["interviews"]
        and report["transcripts_persisted"] == report["transcripts_expected"]
        and report["duplicates"] == 0
    )
    return 0 if ok else 1


class ProcessFailed(RuntimeError):
    """A helper process (gateway, simulated upstream) did not start."""


@dataclass
class Child:
    """A started helper process and the URL it printed."""

    process: asyncio.subprocess.Process
    url: str
    #: keeps reading the child's output, so that a full pipe never blocks it
    reader: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_child(args: list[str], env: dict[str, str], marker: str) -> Child:
    """Run ``interview-gateway ARGS`` and wait for the line that says where it listens."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            while line := (await process.stdout.readline()).decode():
                if marker in line:
                    url = line.split(marker, 1)[1].split()[0]
                    return Child(process, url, asyncio.create_task(_discard(process.stdout)))
    except TimeoutError:
        pass
    await Child(process, "").stop()
    raise ProcessFailed(f"`interview-gateway {args[0]}` did not start (exit {process.returncode})")


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


@asynccontextmanager
async def own_gateway(
    args: argparse.Namespace, data_dir: Path, jwt_secret: str
) -> AsyncIterator[Child]:
    """A simulated upstream and a gateway in processes of their own, stopped on exit.

    Their configuration goes in their environment, built here from this process's own
    (``DATABASE_URL`` and the like pass through) and what this simulation chose.
    """
    key = "sk-sim-" + secrets.token_urlsafe(16)
    env = {**os.environ, "SIM_UPSTREAM_KEY": key}
    sim_args = ["sim-upstream", "--port", "0", "--api-key-env", "SIM_UPSTREAM_KEY"]
    sim_args += ["--words-per-second", str(args.words_per_second)]
    if args.script is not None:
        sim_args += ["--script", str(args.script)]
    sim = await start_child(sim_args, env, "listening on ")
    try:
        gateway_env = {
            **env,
            "GATEWAY_DATA_DIR": str(data_dir),
            "GATEWAY_JWT_SECRET": jwt_secret,
            "GATEWAY_UPSTREAM": "openai-live" if args.upstream == "sim-live" else "openai",
            "OPENAI_BASE_URL": sim.url,
            "OPENAI_API_KEY": key,
            "GATEWAY_ICE_ADDRESSES": ",".join(LOOPBACK),
            "GATEWAY_MAX_RELAY_SESSIONS": os.environ.get(
                "GATEWAY_MAX_RELAY_SESSIONS", str(max(args.interviews, 10))
            ),
        }
        gateway = await start_child(
            ["serve", "--port", "0", "--mode", args.mode, "--no-invite"],
            gateway_env,
            "listening on ",
        )
        try:
            yield gateway
        finally:
            await gateway.stop()
    finally:
        await sim.stop()


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    media.install()
    script = Script.load(args.script) if args.script else Script.default()
    settings = Settings.from_env()
    # our own gateway signs with a secret we choose (or the configured one); another must be told
    secret = os.environ.get("GATEWAY_JWT_SECRET")
    if args.gateway is None and not secret:
        secret = secrets.token_urlsafe(32)
    if not secret:
        raise ProcessFailed("--gateway needs GATEWAY_JWT_SECRET (the gateway's) to invite")
    with tempfile.TemporaryDirectory(prefix="interview-sim-") as tmp:
        data_dir = Path(tmp) if args.gateway is None else settings.data_dir
        db = await open_database(
            settings.database_url, data_dir=data_dir, app_password=settings.db_app_password
        )
        try:
            tenant_id = await tenants.create_tenant(db, "simulate")
            invitations = [
                await invite(db, secret, tenant_id, mode=args.mode) for _ in range(args.interviews)
            ]
            if args.gateway is None:
                async with own_gateway(args, data_dir, secret) as gateway:
                    reports = await run_candidates(gateway.url, invitations, script, args)
            else:
                reports = await run_candidates(args.gateway, invitations, script, args)
            return await build_report(db, invitations, reports, script)
        finally:
            await db.close()


async def run_candidates(
    base_url: str, invitations: list[Invitation], script: Script, args: argparse.Namespace
) -> list[CandidateReport]:
    answers = [turn.answer for turn in script.turns]
    candidates = [
        HeadlessCandidate(
            inv.signal_url(base_url),
            inv.token,
            interview_id=str(inv.interview_id),
            answers=answers,
            ice_addresses=LOOPBACK,
            words_per_second=args.words_per_second,
            seed=n,
        )
        for n, inv in enumerate(invitations)
    ]
    step = args.ramp / len(candidates)

    async def run(n: int, candidate: HeadlessCandidate) -> CandidateReport:
        await asyncio.sleep(n * step)  # arrival time, not synchronization
        return await candidate.run(time_limit=args.duration)

    return list(await asyncio.gather(*(run(n, c) for n, c in enumerate(candidates))))


async def build_report(
    db: Database, invitations: list[Invitation], reports: list[CandidateReport], script: Script
) -> dict[str, Any]:
    expected_per_interview = 2 * len(script.turns) + 1  # questions, answers, the closing line
    persisted = duplicates = completed = 0
    errors: list[str] = []
    for inv, report in zip(invitations, reports, strict=True):
        rows = await transcripts.read_transcript(db, inv.tenant_id, inv.interview_id)
        event_ids = [row.event_id for row in rows]
        persisted += len(read_turns(rows))
        duplicates += len(event_ids) - len(set(event_ids))
        record = await interviews.get_session(db, inv.tenant_id, inv.interview_id)
        problem = report.error
        if problem is None and (record is None or record.status != "ended"):
            problem = f"session recorded as {record and (record.status, record.end_reason)}"
        if problem is None:
            completed += 1
        else:
            errors.append(f"{inv.interview_id}: {problem}")
    expected = expected_per_interview * len(invitations)
    setup = sorted(r.setup_ms for r in reports if r.setup_ms is not None)
    modes = {m: sum(r.mode == m for r in reports) for m in ("relay", "proxy")}
    return {
        "interviews": len(reports),
        "completed": completed,
        "modes": modes,
        "transcripts_expected": expected,
        "transcripts_persisted": persisted,
        "lost": max(0, expected - persisted),
        "duplicates": duplicates,
        "setup_ms": _percentiles(setup),
        "errors": errors,
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(p95, 1),
        "max": round(values[-1], 1),
    }


def print_report(report: dict[str, Any], *, as_json: bool) -> None:
    setup = report["setup_ms"]
    print(f"interviews: {report['completed']}/{report['interviews']} completed")
    print(f"modes: relay {report['modes']['relay']}, proxy {report['modes']['proxy']}")
    print(
        f"transcripts: {report['transcripts_persisted']}/{report['transcripts_expected']} persisted"
        f" (lost {report['lost']}, duplicates {report['duplicates']})"
    )
    print(
        f"setup ms (hello to connected): p50 {setup['p50']}  p95 {setup['p95']}  max {setup['max']}"
    )
    for error in report["errors"]:
        print(f"error: {error}")
    if as_json:
        print(json.dumps(report))
