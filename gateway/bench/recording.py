"""``bench recording``: what recording costs, per relayed session, in CPU and bytes.

Each session has two voices, each a packet source like the relay's forwarders (their
``subscribers`` get one Opus packet every 20 ms, real speech encoded once before the clock
starts), paced in real time; the recording takes them as it does in a relay: Ogg pages, a
segment file, fsync and a ``video_segments`` row per segment in the configured database,
local storage in a temporary directory. The same run without recording first gives the
pacing loop's own cost, which is subtracted. The relay's own cost is ``bench relay``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from av.packet import Packet

from gateway.config import ConfigError, Settings
from gateway.recording.recorder import InterviewRecording, RecordingOptions, Recordings
from gateway.recording.storage import LocalStorage
from gateway.sim.opus_peers import encode_opus
from gateway.sim.speech import synthesize
from storage import interviews
from storage.database import DatabaseUnavailable, open_database
from storage.tenants import create_tenant

FRAME = 960
TICK = 0.02


class PacedVoice:
    """A packet source as the relay's forwarder is one: ``subscribers`` see every packet."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.subscribers: list[Callable[[Packet], None]] = []
        self._payloads = payloads
        self._sent = 0

    def send(self) -> None:
        packet = Packet(self._payloads[self._sent % len(self._payloads)])
        packet.pts = self._sent * FRAME
        self._sent += 1
        for subscriber in self.subscribers:
            subscriber(packet)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _paced(voices: list[PacedVoice], seconds: float) -> tuple[float, float]:
    """Every voice sends a packet each 20 ms for ``seconds``; (CPU seconds, wall seconds)."""
    cpu, started = _cpu(), time.monotonic()
    for tick in range(round(seconds / TICK)):
        for voice in voices:
            voice.send()
        await asyncio.sleep(max(0.0, started + (tick + 1) * TICK - time.monotonic()))
    return _cpu() - cpu, time.monotonic() - started


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    db = await open_database(
        settings.database_url, data_dir=settings.data_dir, migrate=settings.migrate_on_start
    )
    payloads = encode_opus(synthesize("tell me about a project you are proud of", seed=5))
    tenant = await create_tenant(db, "bench recording")
    try:
        with tempfile.TemporaryDirectory(prefix="igw-bench-recording-") as tmp:
            recordings = Recordings(
                RecordingOptions(
                    db=db,
                    storage=LocalStorage(Path(tmp) / "recordings"),
                    spool_dir=Path(tmp) / "spool",
                    segment_seconds=args.segment_seconds,
                )
            )
            idle = [PacedVoice(payloads) for _ in range(2 * args.sessions)]
            idle_cpu, idle_wall = await _paced(idle, args.duration)
            voices = [PacedVoice(payloads) for _ in range(2 * args.sessions)]
            started: list[InterviewRecording] = []
            for i in range(args.sessions):
                interview = await interviews.create_session(db, tenant, requested_mode="relay")
                recording = recordings.start(tenant, interview)
                recording.follow("candidate", voices[2 * i])
                recording.follow("interviewer", voices[2 * i + 1])
                started.append(recording)
            cpu, wall = await _paced(voices, args.duration)
            for recording in started:
                recording.close()
            await recordings.close()
            written = sum(p.stat().st_size for p in Path(tmp).rglob("*.opus"))
            rows = [
                row
                for recording in started
                for row in await interviews.list_video_segments(db, tenant, recording.interview_id)
            ]
    finally:
        async with db.tenant(tenant) as conn:
            await conn.execute("DELETE FROM tenants WHERE id = %s", [tenant])
        await db.close()
    per_session = (cpu / wall - idle_cpu / idle_wall) * 100 / args.sessions
    return {
        "sessions": args.sessions,
        "seconds": round(wall, 2),
        "segment_seconds": args.segment_seconds,
        "cpu_percent_per_session": round(per_session, 3),
        "pacing_cpu_percent": round(idle_cpu / idle_wall * 100, 3),
        "bytes_per_minute_per_session": round(written / wall * 60 / args.sessions),
        "segments": len(rows),
        "segments_uploaded": sum(row.status == "uploaded" for row in rows),
        "database": "embedded" if settings.database_url is None else "DATABASE_URL",
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interview-gateway bench recording")
    p.add_argument("--sessions", metavar="N", type=int, default=10, help="recorded sessions (10)")
    p.add_argument("--duration", metavar="S", type=float, default=30.0, help="seconds (30)")
    p.add_argument(
        "--segment-seconds", metavar="S", type=float, default=10.0, help="segment length (10)"
    )
    p.add_argument("--json", action="store_true", help="end with one JSON object")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.sessions < 1 or args.duration <= 0 or not 1 <= args.segment_seconds <= 3600:
        print(
            "bench recording: --sessions and --duration must be positive, --segment-seconds"
            " from 1 to 3600",
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(run(args, Settings.from_env()))
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"interview-gateway bench recording: {exc}", file=sys.stderr)
        return 1
    print(
        f"recording {report['sessions']} sessions (two voices each) for {report['seconds']} s:"
        f" {report['cpu_percent_per_session']} % of a core per session,"
        f" {report['bytes_per_minute_per_session']} bytes per minute per session,"
        f" {report['segments_uploaded']}/{report['segments']} segments uploaded"
    )
    if args.json:
        print(json.dumps(report))
    return 0
