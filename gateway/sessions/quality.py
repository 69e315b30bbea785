"""One interview's call quality, sampled while it runs: every ``interval`` seconds the call (a
relay: ``media.quality``) reports both legs and the turns since, which go to the database
(``storage.quality``, under row-level security) and to the process's latest figures for the
metrics. A proxied call measures nothing (its media never crosses the gateway).

Sampling runs in the session's own task and never holds up the interview: a database that does
not take a report within ``WRITE_WAIT`` loses that report (logged), not the interview.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from uuid import UUID

from storage import quality
from storage.database import Database
from storage.quality import LegSample, QualityReport

log = logging.getLogger(__name__)

#: Seconds one report may take to reach the database before it is given up.
WRITE_WAIT = 2.0
#: Upper bounds (seconds) of the turn-latency histogram's buckets.
TURN_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


@runtime_checkable
class MeasuresQuality(Protocol):
    async def quality(self) -> QualityReport: ...


@dataclass
class TurnLatencies:
    """Process-wide histogram of turn response latencies (for ``/metrics``)."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(TURN_BUCKETS))
    count: int = 0
    total_seconds: float = 0.0

    def observe(self, ms: float) -> None:
        seconds = ms / 1000
        self.count += 1
        self.total_seconds += seconds
        for i, bound in enumerate(TURN_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1


class QualitySampler:
    """Samples one interview's call every ``interval`` seconds; ``latest`` per leg."""

    def __init__(
        self,
        db: Database,
        tenant_id: UUID,
        interview_id: UUID,
        *,
        interval: float,
        turns: TurnLatencies,
        log_extra: Mapping[str, str],
    ) -> None:
        self._db = db
        self._tenant_id, self._interview_id = tenant_id, interview_id
        self.interval = interval
        self._turns = turns
        self._log_extra = dict(log_extra)
        self.latest: dict[str, LegSample] = {}

    async def run(self, call: object) -> None:
        """Sample ``call`` until cancelled (the session's end); nothing for a call that does
        not measure, or when sampling is off (``interval`` 0)."""
        if not isinstance(call, MeasuresQuality) or self.interval <= 0:
            return
        while True:
            await asyncio.sleep(self.interval)
            await self.sample(call)

    async def sample(self, call: MeasuresQuality) -> None:
        report = await call.quality()
        self.latest = {sample.leg: sample for sample in report.legs}
        for ms in report.turns_ms:
            self._turns.observe(ms)
        try:
            async with asyncio.timeout(WRITE_WAIT):
                await quality.record_quality(self._db, self._tenant_id, self._interview_id, report)
        except Exception as exc:
            log.warning("call quality not recorded: %r", exc, extra=self._log_extra)
