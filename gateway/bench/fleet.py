"""``interview-gateway bench fleet``: N concurrent interviews through a front, each on a worker.

The front runs in this process (the aiohttp app a front role serves), on the ``local``
backend (worker processes) or on ``fly-sim``: the ``fly`` backend's real Machines API client
against the stand-in (``gateway.sim.machines``), whose Machines boot local workers. A warm pool
of ``--pool`` workers is filled before the interviews start (``local``: started workers;
``fly``: ``skip_launch`` Machines, so a claim is a start). Headless aiortc candidates
(``gateway.sim.candidate``) take the interviews against the in-process simulated upstream.

Figures: claim→ready (the front's claim until its worker serves: ``claim_ms``; the text also
gives the claims that took a pooled worker and the cold ones apart), hello→connected
as the candidate sees it, claim included (``connected_ms``), interviews completed, distinct
workers used, workers still there once the front has stopped (``leaked_workers``, must be 0),
transcript lines persisted against expected. ``--json`` ends with one JSON object with keys
``interviews``, ``completed``, ``distinct_workers``, ``leaked_workers``, ``claim_ms``
{``p50``, ``p95``}, ``connected_ms`` {``p50``, ``p95``}, ``transcripts_expected``,
``transcripts_persisted``. Everything stays on loopback; the database is ``DATABASE_URL``'s (or
the embedded server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cli.helptext import command_parser

MAX_INTERVIEWS = 100
FLY_APP = "bench-workers"
LOOPBACK = ("127.0.0.1",)
#: how fast the simulated interviewer and candidates speak (words/s): short interviews
WORDS_PER_SECOND = 8.0


def _parser() -> argparse.ArgumentParser:
    p = command_parser("interview-gateway bench fleet", __doc__)
    p.add_argument("--interviews", metavar="N", type=int, default=10, help="interviews (10)")
    p.add_argument(
        "--backend", choices=("local", "fly-sim"), default="local", help="where workers run"
    )
    p.add_argument("--pool", metavar="K", type=int, default=None, help="warm workers (N)")
    p.add_argument(
        "--concurrency",
        metavar="C",
        type=int,
        default=None,
        help="interviews at once (all N): a bound for a small machine",
    )
    p.add_argument(
        "--fly-pool",
        choices=("stopped", "started"),
        default="stopped",
        help="fly-sim: what the pool holds (GATEWAY_FLY_POOL, stopped)",
    )
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not 1 <= args.interviews <= MAX_INTERVIEWS:
        print(f"bench fleet: --interviews must be 1 to {MAX_INTERVIEWS}", file=sys.stderr)
        return 2
    args.pool = args.interviews if args.pool is None else args.pool
    args.concurrency = args.concurrency or args.interviews
    if args.pool < 0 or args.concurrency < 1:
        print("bench fleet: --pool must be 0 or more, --concurrency 1 or more", file=sys.stderr)
        return 2
    from gateway import media
    from gateway.config import ConfigError
    from storage.database import DatabaseUnavailable

    media.install(LOOPBACK)
    try:
        report, notes = asyncio.run(bench(args))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"bench fleet: {exc}", file=sys.stderr)
        return 1
    print_report(report, notes, args, as_json=args.json)
    return 0 if report["leaked_workers"] == 0 else 1


@dataclasses.dataclass
class _Run:
    """One interview's outcome: its worker (None if it never had one) and report."""

    worker_id: str | None
    report: Any


async def bench(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The report (the JSON keys the command promises), and lines for a person: claims from
    the pool and cold ones apart, then the interviews' errors."""
    from gateway.app import DATABASE, FLEET, JWT_SECRET
    from gateway.sim.script import Script

    script = Script.default()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        async with (
            _stand_in(args, Path(tmp)) as stand_in,
            _front(args, Path(tmp), stand_in) as (app, base_url),
        ):
            fleet, db = app[FLEET], app[DATABASE]
            if stand_in is not None:  # the workers' app secrets, as `fly secrets set` gives them
                stand_in.api.app_secrets.update(
                    DATABASE_URL=db.admin_conninfo, GATEWAY_JWT_SECRET=app[JWT_SECRET]
                )
            await asyncio.wait_for(fleet.pool.full(), 60 + 10 * args.pool)
            runs, invitations = await _interviews(app, base_url, args, script)
            # a worker exits once its interview's end and transcript are recorded
            await asyncio.gather(*(_gone(fleet.backend, r.worker_id) for r in runs if r.worker_id))
            stats = fleet.front.stats
            claims = sorted(s * 1000 for s in stats.claim_seconds)
            pooled = sorted(s * 1000 for s in stats.pooled_claim_seconds)
            cold = sorted(s * 1000 for s in stats.cold_claim_seconds)
            from gateway.cli.simulate import build_report

            figures = await build_report(db, invitations, [r.report for r in runs], script)
            backend = fleet.backend
        # the front has stopped: every worker it had should be gone with it
        leaked = len(stand_in.api.live()) if stand_in is not None else len(await backend.list({}))
    connected = sorted(r.report.setup_ms for r in runs if r.report.setup_ms is not None)
    report = {
        "interviews": figures["interviews"],
        "completed": figures["completed"],
        "distinct_workers": len({r.worker_id for r in runs if r.worker_id is not None}),
        "leaked_workers": leaked,
        "claim_ms": _percentiles(claims),
        "connected_ms": _percentiles(connected),
        "transcripts_expected": figures["transcripts_expected"],
        "transcripts_persisted": figures["transcripts_persisted"],
    }
    notes = [
        f"claim->ready, {len(pooled)} from the pool: {_ms(_percentiles(pooled))}",
        f"claim->ready, {len(cold)} cold (created): {_ms(_percentiles(cold))}",
    ]
    return report, notes + [f"error: {error}" for error in figures["errors"]]


def _ms(figures: dict[str, float | None]) -> str:
    return f"p50 {figures['p50']} ms, p95 {figures['p95']} ms"


async def _interviews(
    app: web.Application, base_url: str, args: argparse.Namespace, script: Any
) -> tuple[list[_Run], list[Any]]:
    from gateway.app import DATABASE, JWT_SECRET
    from gateway.sessions.invitations import invite
    from gateway.sim.candidate import HeadlessCandidate
    from storage import tenants, workers

    db = app[DATABASE]
    tenant_id = await tenants.create_tenant(db, "bench-fleet")
    invitations = [
        await invite(db, app[JWT_SECRET], tenant_id, mode="proxy") for _ in range(args.interviews)
    ]
    answers = [turn.answer for turn in script.turns]
    room = asyncio.Semaphore(args.concurrency)

    async def take(n: int) -> _Run:
        inv = invitations[n]
        candidate = HeadlessCandidate(
            inv.signal_url(base_url),
            inv.token,
            interview_id=str(inv.interview_id),
            answers=answers,
            ice_addresses=LOOPBACK,
            words_per_second=WORDS_PER_SECOND,
            seed=n,
        )
        worker_id = None
        async with room:
            try:
                async with asyncio.timeout(120):
                    await candidate.connect()
                    claim = await workers.get_claim(db, inv.interview_id)
                    worker_id = claim.worker_id if claim is not None else None
                    await candidate.converse()
                    assert candidate.client is not None
                    await candidate.client.bye()
            except Exception as exc:
                candidate.report.error = f"{type(exc).__name__}: {exc}"
            finally:
                await candidate.close()
        return _Run(worker_id, candidate.report)

    runs = await asyncio.gather(*(take(n) for n in range(args.interviews)))
    return list(runs), invitations


async def _gone(backend: Any, worker_id: str) -> None:
    from gateway.fleet.backend import BackendError

    with contextlib.suppress(BackendError):
        await backend.wait(worker_id, "destroyed", 60)


@contextlib.asynccontextmanager
async def _stand_in(args: argparse.Namespace, tmp: Path) -> AsyncIterator[Any]:
    """The Machines API stand-in (``gateway.sim.machines.Served``) for ``fly-sim``; None for
    ``local``."""
    if args.backend != "fly-sim":
        yield None
        return
    from gateway.sim import machines

    async with machines.serve(
        token=secrets.token_urlsafe(24),
        app_name=FLY_APP,
        data_dir=tmp / "machines",
        max_machines=2 * args.interviews + args.pool + 5,
    ) as served:
        yield served


@contextlib.asynccontextmanager
async def _front(
    args: argparse.Namespace, tmp: Path, stand_in: Any
) -> AsyncIterator[tuple[web.Application, str]]:
    """A front on loopback, and its base URL."""
    from gateway.app import create_app
    from gateway.config import FlySettings, Settings

    settings = dataclasses.replace(
        Settings.from_env(),
        role="front",
        backend="fly" if stand_in is not None else "local",
        mode="proxy",
        upstream="sim",
        data_dir=tmp,
        jwt_secret=secrets.token_urlsafe(32),
        ice_addresses=LOOPBACK,
        ice_allow_remote=("127.0.0.0/8",),
        sim_words_per_second=WORDS_PER_SECOND,
        worker_pool=args.pool,
        max_workers=args.interviews + args.pool + 5,
        worker_start_timeout=60.0,
        max_sessions_per_tenant=max(50, args.interviews),
        rate_signal_per_ip=0.0,
        rate_signal_per_tenant=0.0,
    )
    if stand_in is not None:
        fly = FlySettings(
            api_url=stand_in.url,
            token=stand_in.api.token,
            app=FLY_APP,
            image="interview-gateway:bench",
            routing="forward",  # no Fly proxy here to replay requests
            worker_port=stand_in.api.worker_port,
            pool=args.fly_pool,
        )
        settings = dataclasses.replace(settings, fly=fly)
    settings.check()
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield app, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}

    def at(fraction: float) -> float:
        return round(values[min(len(values) - 1, round(fraction * (len(values) - 1)))], 1)

    return {"p50": at(0.5), "p95": at(0.95)}


def print_report(
    report: dict[str, Any], notes: list[str], args: argparse.Namespace, *, as_json: bool
) -> None:
    claim, connected = report["claim_ms"], report["connected_ms"]
    print(
        f"bench fleet ({args.backend}, pool {args.pool}"
        f"{f' {args.fly_pool}' if args.backend == 'fly-sim' else ''}):"
        f" {report['completed']}/{report['interviews']} interviews completed on"
        f" {report['distinct_workers']} distinct workers; {report['leaked_workers']} left running"
    )
    print(f"  claim->ready      {_ms(claim)}")
    print(f"  hello->connected  {_ms(connected)}")
    print(
        f"  transcript lines  {report['transcripts_persisted']}"
        f" of {report['transcripts_expected']} persisted"
    )
    for line in notes[:12]:
        print(f"  {line}")
    if as_json:
        print(json.dumps(report))
