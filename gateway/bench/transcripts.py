"""``interview-gateway bench transcripts``: the transcript writer against the configured database.

Pushes synthetic, transcript-shaped events for many sessions through
:class:`storage.transcripts.TranscriptWriter` (as fast as it takes them, or at ``--rate``
events/s), then reads every session back to count what was lost or duplicated. Prints sustained
events/s and enqueue-to-commit latency; with ``--json`` the last line is one JSON object.

Absolute rates do not travel between machines, so the same run also times a raw psycopg binary
``COPY`` of the same rows (numbered on the client) into a table shaped like
``transcript_entries`` (its columns, checks, keys and foreign key; no row-level security, no
duplicate check, no counters, no journal), in batches of the same size over the same number of
connections, once just before the writer's run and once just after (a machine whose load
changes during the run moves both alike): ``raw_copy_events_per_s`` over both, and the
writer's ``ratio_to_raw`` (what the writer's durability and exactly-once cost, on this machine,
now; meaningful without ``--rate``).

The bench's tenants (and, through them, its sessions and rows) and the raw table are deleted
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from gateway.cli.helptext import command_parser
from gateway.config import ConfigError, Settings
from storage import interviews
from storage.database import Database, DatabaseUnavailable, open_database
from storage.tenants import create_tenant
from storage.transcripts import TranscriptEntry, TranscriptWriter

_TYPES = (
    ("interviewer", "response.output_audio_transcript.done"),
    ("candidate", "conversation.item.input_audio_transcription.completed"),
)
_SENTENCE = "Tell me about a time you had to debug a production incident under pressure."


def _parser() -> argparse.ArgumentParser:
    p = command_parser("interview-gateway bench transcripts", __doc__)
    p.add_argument(
        "--events", metavar="N", type=int, default=100_000, help="events to write (100000)"
    )
    p.add_argument(
        "--rate", metavar="R", type=float, default=0.0, help="events/s; 0: as fast as possible"
    )
    p.add_argument(
        "--sessions", metavar="N", type=int, default=200, help="interview sessions (200)"
    )
    p.add_argument(
        "--tenants", metavar="N", type=int, default=4, help="tenants the sessions belong to (4)"
    )
    p.add_argument(
        "--batch-size", metavar="N", type=int, default=2000, help="writer batch size (2000)"
    )
    p.add_argument("--connections", metavar="N", type=int, default=2, help="writer connections (2)")
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    return p


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def _entry(n: int, tenant_id: UUID, session_id: UUID) -> TranscriptEntry:
    role, event_type = _TYPES[n % 2]
    event_id = f"event_{n:09d}"
    text = f"{_SENTENCE} ({n})"
    raw = json.dumps(
        {"type": event_type, "event_id": event_id, "item_id": f"item_{n // 2}", "transcript": text}
    )
    return TranscriptEntry(
        tenant_id=tenant_id,
        session_id=session_id,
        event_id=event_id,
        role=role,  # type: ignore[arg-type]
        text=text,
        source="relay",
        event_type=event_type,
        item_id=f"item_{n // 2}",
        audio_start_ms=n * 10,
        audio_end_ms=n * 10 + 900,
        raw=raw,
    )


async def _produce(writer: TranscriptWriter, entries: list[TranscriptEntry], rate: float) -> None:
    start = time.perf_counter()
    chunk = 500
    for first in range(0, len(entries), chunk):
        for n in range(first, min(len(entries), first + chunk)):
            if rate:
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # pacing the load, not synchronising
            writer.submit(entries[n])
        # bounded memory: let the writer catch up rather than spill a synthetic flood to disk
        await writer.wait_backlog(10 * chunk)


async def _read_back(db: Database, tenants: list[UUID], run: str) -> tuple[int, int, int]:
    """(rows, distinct event ids, sessions whose seq is not dense 1..n) for this run."""
    rows = distinct = gaps = 0
    for tenant_id in tenants:
        async with db.tenant(tenant_id) as conn:
            cur = await conn.execute(
                "SELECT count(*), count(DISTINCT e.event_id), max(e.seq)"
                " FROM transcript_entries e JOIN interview_sessions s ON s.id = e.session_id"
                " WHERE s.metadata->>'bench' = %s GROUP BY e.session_id",
                [run],
            )
            for count, unique, top in await cur.fetchall():
                rows += count
                distinct += unique
                gaps += top != count
    return rows, distinct, gaps


_RAW_TYPES = (
    "uuid", "uuid", "int8", "text", "text", "text", "text", "text", "text", "timestamptz",
    "int4", "int4", "jsonb",
)  # fmt: skip


def _raw_rows(entries: list[TranscriptEntry]) -> list[tuple[Any, ...]]:
    """The rows the writer stores for ``entries``, each session's numbered 1..n."""
    seqs: dict[UUID, int] = {}
    rows = []
    for e in entries:
        seq = seqs[e.session_id] = seqs.get(e.session_id, 0) + 1
        rows.append((
            e.tenant_id, e.session_id, seq, e.event_id, e.item_id, e.role, e.text, e.source,
            e.event_type, e.received_at, e.audio_start_ms, e.audio_end_ms, e.raw,
        ))  # fmt: skip
    return rows


class RawCopy:
    """A plain binary COPY of the writer's rows into a table of their shape, batched like the
    writer: the baseline the writer is measured against. Use as ``async with``."""

    def __init__(self, conninfo: str, run_id: str, entries: list[TranscriptEntry], args: Any):
        self._conninfo = conninfo
        self._table = sql.Identifier(f"bench_raw_copy_{run_id}")
        self._rows = _raw_rows(entries)  # made before any clock starts, as the writer's are
        self._batch_size: int = args.batch_size
        self._connections: int = args.connections
        self._lanes: list[psycopg.AsyncConnection[Any]] = []

    async def __aenter__(self) -> RawCopy:
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as c:
            await c.execute(
                sql.SQL(
                    "CREATE TABLE {} (LIKE transcript_entries INCLUDING ALL,"
                    " FOREIGN KEY (tenant_id, session_id)"
                    " REFERENCES interview_sessions (tenant_id, id) ON DELETE CASCADE)"
                ).format(self._table)
            )
        for _ in range(self._connections):
            self._lanes.append(
                await psycopg.AsyncConnection.connect(
                    self._conninfo, options="-c jit=off", autocommit=True
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for conn in self._lanes:
            await conn.close()
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as c:
            await c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table))

    async def time(self) -> float:
        """Seconds to COPY every row into the (emptied) table."""
        await self._lanes[0].execute(sql.SQL("TRUNCATE {}").format(self._table))
        copy = sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(self._table)
        size = self._batch_size
        batches: Iterator[list[tuple[Any, ...]]] = (
            self._rows[i : i + size] for i in range(0, len(self._rows), size)
        )

        async def lane(conn: psycopg.AsyncConnection[Any]) -> None:
            for batch in batches:  # shared: each lane takes the next batch
                async with conn.transaction(), conn.cursor().copy(copy) as out:
                    out.set_types(_RAW_TYPES)
                    for row in batch:
                        await out.write_row(row)

        started = time.perf_counter()
        await asyncio.gather(*(lane(conn) for conn in self._lanes))
        return time.perf_counter() - started


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    db = await open_database(
        settings.database_url,
        data_dir=settings.data_dir,
        migrate=settings.migrate_on_start,
        app_password=settings.db_app_password,
    )
    run_id = uuid.uuid4().hex
    tenants = [await create_tenant(db, f"bench {run_id[:8]} #{i}") for i in range(args.tenants)]
    sessions = [
        (
            t,
            await interviews.create_session(
                db, t, requested_mode="relay", metadata={"bench": run_id}
            ),
        )
        for i in range(args.sessions)
        for t in [tenants[i % len(tenants)]]
    ]
    latencies: list[float] = []
    # built before the clock starts: what is measured is the writer, not the making of events
    entries = [_entry(n, *sessions[n % len(sessions)]) for n in range(args.events)]
    try:
        async with RawCopy(db.admin_conninfo, run_id, entries, args) as raw:
            raw_before = await raw.time()
            with tempfile.TemporaryDirectory(prefix="igw-bench-journal-") as journal:
                writer = TranscriptWriter(
                    db,
                    Path(journal),
                    batch_size=args.batch_size,
                    connections=args.connections,
                    on_commit=latencies.extend,
                )
                await writer.start()
                started = time.perf_counter()
                await _produce(writer, entries, args.rate)
                await writer.flush()
                elapsed = time.perf_counter() - started
                stats = writer.stats
                await writer.close()
            raw_after = await raw.time()
        rows, distinct, gaps = await _read_back(db, tenants, run_id)
    finally:
        for t in tenants:
            async with db.tenant(t) as conn:
                await conn.execute("DELETE FROM tenants WHERE id = %s", [t])
        await db.close()
    latencies.sort()
    raw_rate = 2 * args.events / (raw_before + raw_after)
    return {
        "events": args.events,
        "events_per_s": round(args.events / elapsed, 1),
        "raw_copy_events_per_s": round(raw_rate, 1),
        "ratio_to_raw": round(args.events / elapsed / raw_rate, 3),
        "commit_latency_ms": {
            "p50": round(_percentile(latencies, 0.50) * 1000, 2),
            "p99": round(_percentile(latencies, 0.99) * 1000, 2),
        },
        "lost": args.events - distinct,
        "duplicates": rows - distinct,
        "seconds": round(elapsed, 3),
        "rate": args.rate or None,
        "sessions": args.sessions,
        "tenants": args.tenants,
        "batches": stats.batches,
        "connections": args.connections,
        "journaled": stats.journaled,
        "retries": stats.retries,
        "sessions_with_seq_gaps": gaps,
        "database": "embedded" if settings.database_url is None else "DATABASE_URL",
    }


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if min(args.events, args.sessions, args.tenants, args.connections) < 1 or args.rate < 0:
        print(
            "bench transcripts: --events, --sessions, --tenants and --connections must be positive",
            file=sys.stderr,
        )
        return 2
    try:
        settings = Settings.from_env()
        report = asyncio.run(run(args, settings))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway bench transcripts: {exc}", file=sys.stderr)
        return 1
    lat = report["commit_latency_ms"]
    rate = f"at {args.rate:g}/s" if args.rate else "as fast as possible"
    print(
        f"{report['events']} events for {report['sessions']} sessions ({rate}) into the "
        f"{report['database']} database in {report['seconds']} s\n"
        f"  sustained      {report['events_per_s']:,.0f} events/s"
        f" ({report['ratio_to_raw']:.2f} of a raw COPY's"
        f" {report['raw_copy_events_per_s']:,.0f} events/s)\n"
        f"  commit latency p50 {lat['p50']} ms, p99 {lat['p99']} ms (enqueue to commit)\n"
        f"  lost {report['lost']}, duplicates {report['duplicates']}, "
        f"batches {report['batches']}, journaled {report['journaled']}"
    )
    if args.json:
        print(json.dumps(report))
    return 0 if report["lost"] == 0 and report["duplicates"] == 0 else 1
