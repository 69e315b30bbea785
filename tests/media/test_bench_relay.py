"""``bench relay --observers K``, run for real at its smallest: its processes start, observers
listen in on every session, and the JSON report has the shape the issue names (figures are
the benchmark's to print, not this test's to judge)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_observers_runs_none_one_and_k_and_reports_their_cost() -> None:
    command = [sys.executable, "-m", "gateway.bench.relay", "--sessions", "2", "--duration", "1"]
    command += ["--baseline-sessions", "1", "--observers", "3", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert set(report["observers"]) == {"cpu_percent_per_observer", "added_latency_ms_p50"}
    assert set(report["with_observers"]) == {"1", "3"}
    for k, phase in report["with_observers"].items():
        assert phase["observers_per_session"] == int(k)
        assert phase["delivered_ratio"] > 0.9
        # every observer of every session got both voices: ~50 packets a second each
        assert phase["observer_packets"] > int(k) * 2 * 2 * 25, phase
    assert "fast+3 obs" in done.stdout and "observers (3 per session against none)" in done.stdout


def test_observers_are_bounded() -> None:
    command = [sys.executable, "-m", "gateway.bench.relay", "--observers", "21"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--observers 1-20" in done.stderr
