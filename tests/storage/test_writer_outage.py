"""The transcript writer when the database goes away: nothing accepted is lost or duplicated.

The outage is real: the test database stops accepting connections and every backend serving
it is terminated (what a restarting server looks like to a client), then it comes back.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from storage import interviews, tenants
from storage.database import Database
from storage.transcripts import TranscriptEntry, TranscriptWriter, read_transcript
from tests.outages import outage

#: Slow (real database outages, retries, a killed process): left out by
#: `scripts/test -m "not slow"`.
pytestmark = pytest.mark.slow

TIMEOUT = 60


def entry(tenant: UUID, session: UUID, n: int) -> TranscriptEntry:
    return TranscriptEntry(tenant, session, f"ev{n:05d}", "candidate", f"line {n}", "relay", "t")


@pytest.fixture
async def sessions(db: Database) -> list[tuple[UUID, UUID]]:
    out = []
    for name in ("A", "B"):
        tenant = await tenants.create_tenant(db, name)
        for _ in range(2):
            out.append(
                (tenant, await interviews.create_session(db, tenant, requested_mode="relay"))
            )
    return out


async def assert_exactly_once(db: Database, sessions: list[tuple[UUID, UUID]], count: int) -> None:
    for k, (tenant, sid) in enumerate(sessions):
        rows = await read_transcript(db, tenant, sid)
        expected = [f"ev{n:05d}" for n in range(k, count, len(sessions))]
        assert [r.event_id for r in rows] == expected
        assert [r.seq for r in rows] == list(range(1, len(expected) + 1))


async def test_events_written_through_an_outage_land_exactly_once_in_order(
    db: Database,
    sessions: list[tuple[UUID, UUID]],
    postgres_url: str,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    writer = TranscriptWriter(
        db, tmp_path / "journal", batch_size=20, max_pending=50, max_backoff=0.2
    )
    await writer.start()
    for n in range(300):
        writer.submit(entry(*sessions[n % 4], n))
    await asyncio.wait_for(writer.flush(), TIMEOUT)

    with outage(postgres_url, fresh_database_url):
        for n in range(300, 1300):
            writer.submit(entry(*sessions[n % 4], n))
            if n % 100 == 0:  # the same events again, some already committed before the outage
                writer.submit(entry(*sessions[(n - 200) % 4], n - 200))
        await asyncio.wait_for(writer.wait_durable(), TIMEOUT)
        assert writer.stats.retries >= 1
        assert writer.stats.journaled >= 950  # beyond the memory bound, and memory parked
        assert writer.stats.committed < 1300

    await asyncio.wait_for(writer.flush(), TIMEOUT)
    await writer.close()
    await assert_exactly_once(db, sessions, 1300)
    assert writer.stats.committed == 1300
    assert not any((tmp_path / "journal").glob("*.journal"))


async def test_close_during_an_outage_keeps_events_for_the_next_writer(
    db: Database,
    sessions: list[tuple[UUID, UUID]],
    postgres_url: str,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    first = TranscriptWriter(db, tmp_path / "journal", batch_size=10, max_backoff=0.1)
    await first.start()
    with outage(postgres_url, fresh_database_url):
        for n in range(200):
            first.submit(entry(*sessions[n % 4], n))
        await first.close(grace=0.5)
        assert first.stats.committed == 0
    second = TranscriptWriter(db, tmp_path / "journal", batch_size=10)
    await second.start()
    second.submit(entry(*sessions[200 % 4], 200))  # flush() covers the journal ahead of it
    await asyncio.wait_for(second.flush(), TIMEOUT)
    await second.close()
    await assert_exactly_once(db, sessions, 201)
    assert second.stats.replayed == 200


CHILD = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from pathlib import Path
    from storage.database import open_database
    from storage.transcripts import TranscriptEntry, TranscriptWriter

    async def main(url, journal, pairs):
        sessions = [tuple(uuid.UUID(x) for x in p.split(":")) for p in pairs.split(",")]
        db = await open_database(url, data_dir=Path(journal), migrate=False)
        writer = TranscriptWriter(db, Path(journal), batch_size=25, max_pending=100,
                                  max_backoff=0.2)
        await writer.start()
        def submit(n):
            t, s = sessions[n % len(sessions)]
            writer.submit(TranscriptEntry(t, s, f"ev{n:05d}", "candidate", f"line {n}",
                                          "relay", "t"))
        for n in range(200):
            submit(n)
        await writer.flush()
        print("committed", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent takes the database away
        for n in range(150, 1000):  # 150..199 again: already committed
            submit(n)
        await writer.wait_durable()
        print("journaled", writer.stats.journaled, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # killed here, never returns

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_killing_the_writer_with_events_in_its_journal_loses_nothing(
    db: Database,
    sessions: list[tuple[UUID, UUID]],
    postgres_url: str,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal"
    pairs = ",".join(f"{t}:{s}" for t, s in sessions)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        fresh_database_url,
        str(journal),
        pairs,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
        assert line.strip() == b"committed"
        with outage(postgres_url, fresh_database_url):
            child.stdin.write(b"go\n")
            await child.stdin.drain()
            line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT)
            assert line.startswith(b"journaled")
            child.send_signal(signal.SIGKILL)  # no close(), no flush: the process just dies
            await asyncio.wait_for(child.wait(), TIMEOUT)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert any(journal.glob("*.journal"))

    writer = TranscriptWriter(db, journal, batch_size=100)
    await writer.start()
    writer.submit(entry(*sessions[1000 % 4], 1000))
    await asyncio.wait_for(writer.flush(), TIMEOUT)
    await writer.close()
    await assert_exactly_once(db, sessions, 1001)
    assert not any(journal.glob("*.journal"))


@contextmanager
def stalled(database_url: str) -> Iterator[None]:
    """The database accepts connections but every transcript insert waits on a lock, until the
    block ends: a server that hangs rather than refuses."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE transcript_entries IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


async def test_wait_durable_returns_when_a_stalled_database_times_the_batch_out(
    db: Database, sessions: list[tuple[UUID, UUID]], fresh_database_url: str, tmp_path: Path
) -> None:
    # The journal's fsync is long done when the batch times out and memory is parked in the
    # journal: that move alone must wake whoever waits for durability.
    writer = TranscriptWriter(
        db, tmp_path / "journal", batch_size=20, max_pending=50, write_timeout=1.0
    )
    await writer.start()
    with stalled(fresh_database_url):
        for n in range(200):
            writer.submit(entry(*sessions[n % 4], n))
        await asyncio.wait_for(writer.wait_durable(), TIMEOUT)
        assert writer.stats.retries >= 1 and writer.stats.committed == 0
    await asyncio.wait_for(writer.flush(), TIMEOUT)
    await writer.close()
    await assert_exactly_once(db, sessions, 200)
