"""Prometheus metrics, read at scrape time from the counters the components already keep.

The sessions, the transcript writer and the media paths each count what happens to
them in plain attributes; this collector turns those into metric families when scraped, so no
hot path calls into prometheus_client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.media.forwarding import MediaStats
from gateway.media.udp_mux import UdpMux
from gateway.sessions.manager import SessionManager
from gateway.sessions.quality import TURN_BUCKETS
from storage.transcripts import TranscriptWriter


class GatewayCollector(Collector):
    def __init__(
        self,
        sessions: SessionManager,
        writer: TranscriptWriter,
        media: MediaStats,
        mux: UdpMux | None = None,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self._media = media
        self._mux = mux

    def collect(self) -> Iterator[Metric]:
        manager, stats = self._sessions, self._sessions.stats
        yield GaugeMetricFamily(
            "gateway_sessions_live", "live interview sessions", value=len(manager)
        )
        yield GaugeMetricFamily(
            "gateway_relay_slots_used",
            "sessions holding a relay slot",
            value=manager.relay_slots_used,
        )
        yield CounterMetricFamily(
            "gateway_sessions_started", "sessions a candidate joined", value=stats.started
        )
        modes = CounterMetricFamily(
            "gateway_sessions", "sessions connected, by mode", labels=["mode"]
        )
        modes.add_metric(["relay"], stats.relay)
        modes.add_metric(["proxy"], stats.proxy)
        yield modes
        yield CounterMetricFamily(
            "gateway_relay_fallbacks", "auto mode fell back to proxy", value=stats.fallbacks
        )
        yield CounterMetricFamily(
            "gateway_bad_events", "unreadable Realtime events received", value=stats.bad_events
        )
        integrity = CounterMetricFamily(
            "gateway_integrity_events",
            "candidate client actions the gateway refused or undid, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(stats.integrity.items()):
            integrity.add_metric([kind], count)
        yield integrity
        ended = CounterMetricFamily("gateway_sessions_ended", "ended sessions", labels=["reason"])
        for reason, count in sorted(stats.ended.items()):
            ended.add_metric([reason], count)
        yield ended
        transcodes = CounterMetricFamily(
            "gateway_relay_transcode_fallbacks",
            "relayed audio routes that decode and re-encode, by codec",
            labels=["codec"],
        )
        for codec, count in sorted(self._media.transcode_fallbacks.items()):
            transcodes.add_metric([codec], count)
        yield transcodes
        writer = CounterMetricFamily(
            "gateway_transcript_writer_events",
            "transcript writer events, by outcome",
            labels=["outcome"],
        )
        for name, value in dataclasses.asdict(self._writer.stats).items():
            writer.add_metric([name], value)
        yield writer
        yield GaugeMetricFamily(
            "gateway_transcript_writer_backlog",
            "transcript entries accepted but not yet committed",
            value=self._writer.backlog,
        )
        if self._mux is not None:
            yield from _mux_metrics(self._mux)
        yield from self._quality()

    def _quality(self) -> Iterator[Metric]:
        """Each live relayed interview's legs, as last sampled; every turn's latency."""
        labels = ["interview_id", "leg"]
        families = {
            "rtt_ms": GaugeMetricFamily(
                "gateway_call_rtt_seconds", "round-trip time per leg", labels=labels
            ),
            "jitter_ms": GaugeMetricFamily(
                "gateway_call_jitter_seconds", "jitter of what the leg's peer sends", labels=labels
            ),
            "loss": GaugeMetricFamily(
                "gateway_call_loss_ratio", "packets lost over the last interval", labels=labels
            ),
            "bitrate_in_kbps": GaugeMetricFamily(
                "gateway_call_bitrate_in_bits_per_second", "the peer's audio bitrate", labels=labels
            ),
            "bitrate_out_kbps": GaugeMetricFamily(
                "gateway_call_bitrate_out_bits_per_second", "our audio bitrate", labels=labels
            ),
        }
        scale = {"rtt_ms": 1e-3, "jitter_ms": 1e-3, "loss": 1.0}
        for session in self._sessions.sessions():
            for leg, sample in sorted(session.quality.latest.items()):
                for name, family in families.items():
                    value = getattr(sample, name)
                    if value is not None:
                        family.add_metric(
                            [str(session.interview_id), leg], value * scale.get(name, 1000.0)
                        )
        yield from families.values()
        turns = self._sessions.stats.turn_latency
        yield HistogramMetricFamily(
            "gateway_turn_latency_seconds",
            "candidate's end of speech to the interviewer's first audio packet (relay)",
            buckets=[
                *(
                    (str(bound), count)
                    for bound, count in zip(TURN_BUCKETS, turns.buckets, strict=True)
                ),
                ("+Inf", turns.count),
            ],
            sum_value=turns.total_seconds,
        )


def _mux_metrics(mux: UdpMux) -> Iterator[Metric]:
    """What the shared ICE UDP port (``GATEWAY_ICE_UDP_PORT``) did with its datagrams, and
    how many entries its maps hold (bounded; zero once every relay leg closed)."""
    outcomes = CounterMetricFamily(
        "gateway_ice_mux_datagrams",
        "datagrams at the shared ICE UDP port, by what the demux did with them",
        labels=["outcome"],
    )
    for name, value in dataclasses.asdict(mux.stats).items():
        outcomes.add_metric([name], value)
    yield outcomes
    entries = GaugeMetricFamily(
        "gateway_ice_mux_entries", "entries in the UDP mux's maps, by map", labels=["map"]
    )
    for name, size in mux.sizes().items():
        entries.add_metric([name], size)
    yield entries


def registry_for(
    sessions: SessionManager,
    writer: TranscriptWriter,
    media: MediaStats,
    mux: UdpMux | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(sessions, writer, media, mux))
    return registry
