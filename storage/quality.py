"""Call quality: each leg's network sampled every few seconds, each turn's response latency,
and the summary the admin API gives per interview (medians, 95th percentiles, worst moment).

The numbers come from the relay (``gateway.media.quality``); this module only keeps and reads
them, so a report can put "the AI kept talking over me" next to the network of that moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from storage.database import Database

#: The two legs of a relayed call: the candidate's browser, and the AI interviewer.
LEGS = ("browser", "upstream")
_MEASURES = ("rtt_ms", "jitter_ms", "loss", "bitrate_in_kbps", "bitrate_out_kbps")


@dataclass(frozen=True, slots=True)
class LegSample:
    """One leg at one moment; None where the stack had nothing to say yet (no RTCP report)."""

    leg: str
    rtt_ms: float | None = None
    jitter_ms: float | None = None
    loss: float | None = None
    bitrate_in_kbps: float | None = None
    bitrate_out_kbps: float | None = None


@dataclass(frozen=True, slots=True)
class QualityReport:
    """What a call measured since it was last asked: both legs now, the turns since."""

    legs: list[LegSample]
    turns_ms: list[float] = field(default_factory=list)


async def record_quality(
    db: Database, tenant_id: UUID, interview_id: UUID, report: QualityReport
) -> None:
    async with db.tenant(tenant_id) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO call_quality (tenant_id, interview_id, leg, rtt_ms, jitter_ms, loss,"
            " bitrate_in_kbps, bitrate_out_kbps) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                [tenant_id, interview_id, s.leg, *(getattr(s, m) for m in _MEASURES)]
                for s in report.legs
            ],
        )
        if report.turns_ms:
            await cur.executemany(
                "INSERT INTO turn_latency (tenant_id, interview_id, latency_ms)"
                " VALUES (%s, %s, %s)",
                [[tenant_id, interview_id, ms] for ms in report.turns_ms],
            )


async def quality_summary(db: Database, tenant_id: UUID, interview_id: UUID) -> dict[str, Any]:
    """Per leg: samples, and p50 / p95 of each measure, and the worst moment (the sample with
    the most loss, then the longest round trip); per turn: count, p50, p95, max (ms)."""
    legs: dict[str, Any] = {}
    async with db.tenant(tenant_id) as conn:
        for leg in LEGS:
            percentiles = ", ".join(
                f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {m}),"
                f" percentile_cont(0.95) WITHIN GROUP (ORDER BY {m})"
                for m in _MEASURES
            )
            cur = await conn.execute(
                f"SELECT count(*), {percentiles} FROM call_quality"
                " WHERE interview_id = %s AND leg = %s",
                [interview_id, leg],
            )
            row = await cur.fetchone()
            assert row is not None
            cur = await conn.execute(
                f"SELECT at, {', '.join(_MEASURES)} FROM call_quality"
                " WHERE interview_id = %s AND leg = %s"
                " ORDER BY loss DESC NULLS LAST, rtt_ms DESC NULLS LAST LIMIT 1",
                [interview_id, leg],
            )
            worst = await cur.fetchone()
            legs[leg] = {
                "samples": row[0],
                **{
                    m: {"p50": _round(row[1 + 2 * i]), "p95": _round(row[2 + 2 * i])}
                    for i, m in enumerate(_MEASURES)
                },
                "worst": None if worst is None else _moment(worst),
            }
        cur = await conn.execute(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms)"
            " FROM turn_latency WHERE interview_id = %s",
            [interview_id],
        )
        turns = await cur.fetchone()
        assert turns is not None
    return {
        "legs": legs,
        "turns": {
            "count": turns[0],
            "latency_ms_p50": _round(turns[1]),
            "latency_ms_p95": _round(turns[2]),
            "latency_ms_max": _round(turns[3]),
        },
    }


def _moment(row: tuple[Any, ...]) -> dict[str, Any]:
    at: datetime = row[0]
    return {"at": at.isoformat(), **{m: _round(v) for m, v in zip(_MEASURES, row[1:], strict=True)}}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


@dataclass(frozen=True, slots=True)
class TimedSample:
    """A leg's sample and when it was taken, for drawing it over time."""

    at: datetime
    sample: LegSample


@dataclass(frozen=True, slots=True)
class TurnLatency:
    at: datetime
    latency_ms: float


async def quality_samples(
    db: Database, tenant_id: UUID, interview_id: UUID
) -> tuple[list[TimedSample], list[TurnLatency]]:
    """Every sample of both legs, and every turn's latency, in time order (the report's
    pictures)."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            f"SELECT at, leg, {', '.join(_MEASURES)} FROM call_quality"
            " WHERE interview_id = %s ORDER BY at, leg",
            [interview_id],
        )
        samples = [
            TimedSample(row[0], LegSample(row[1], *(_round(v) for v in row[2:])))
            for row in await cur.fetchall()
        ]
        cur = await conn.execute(
            "SELECT at, latency_ms FROM turn_latency WHERE interview_id = %s ORDER BY at",
            [interview_id],
        )
        turns = [TurnLatency(row[0], float(row[1])) for row in await cur.fetchall()]
    return samples, turns


@dataclass(frozen=True, slots=True)
class QualityOverview:
    """One line of an interview's quality for a list: its turns' median and slowest latency,
    the browser leg's median round trip and its worst loss."""

    turns: int
    latency_ms_p50: float | None
    latency_ms_max: float | None
    browser_rtt_ms_p50: float | None
    browser_loss_max: float | None


async def quality_overviews(
    db: Database, tenant_id: UUID, interview_ids: list[UUID]
) -> dict[UUID, QualityOverview]:
    """The overview of each of ``interview_ids`` that measured anything (two grouped queries,
    whatever the number of interviews)."""
    async with db.tenant(tenant_id) as conn:
        cur = await conn.execute(
            "SELECT interview_id, count(*),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms)"
            " FROM turn_latency WHERE interview_id = ANY(%s) GROUP BY interview_id",
            [interview_ids],
        )
        turns = {row[0]: row[1:] for row in await cur.fetchall()}
        cur = await conn.execute(
            "SELECT interview_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY rtt_ms), max(loss)"
            " FROM call_quality WHERE interview_id = ANY(%s) AND leg = 'browser'"
            " GROUP BY interview_id",
            [interview_ids],
        )
        legs = {row[0]: row[1:] for row in await cur.fetchall()}
    return {
        interview_id: QualityOverview(
            turns=int(turns.get(interview_id, (0,))[0]),
            latency_ms_p50=_round(turns[interview_id][1]) if interview_id in turns else None,
            latency_ms_max=_round(turns[interview_id][2]) if interview_id in turns else None,
            browser_rtt_ms_p50=_round(legs[interview_id][0]) if interview_id in legs else None,
            browser_loss_max=_round(legs[interview_id][1]) if interview_id in legs else None,
        )
        for interview_id in set(turns) | set(legs)
    }
