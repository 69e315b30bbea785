"""``bench transcripts`` on a small load: its JSON report carries the writer's rate beside a raw
COPY's of the same rows, loses and duplicates nothing, and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from gateway import cli


def test_bench_transcripts_reports_the_writer_beside_a_raw_copy(
    fresh_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    argv = ["bench", "transcripts", "--events", "3000", "--sessions", "12", "--tenants", "2"]
    assert cli.main([*argv, "--batch-size", "500", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.splitlines()[-1])
    assert report["events_per_s"] > 0 and report["raw_copy_events_per_s"] > 0
    assert report["ratio_to_raw"] == pytest.approx(
        report["events_per_s"] / report["raw_copy_events_per_s"], rel=0.01
    )
    assert (report["lost"], report["duplicates"], report["sessions_with_seq_gaps"]) == (0, 0, 0)
    assert "of a raw COPY's" in out  # the human-readable summary says it too
    with psycopg.connect(fresh_database_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench_raw_copy_%'"
        ).fetchone()
        assert left == (0,)
        assert conn.execute("SELECT count(*) FROM tenants").fetchone() == (0,)
