"""The fleet's Prometheus metrics, read at scrape time from what the front, its pool, its
reaper and its backend already count (as ``gateway.http.metrics`` does for sessions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.fleet.runtime import Fleet


class FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        fleet, stats = self._fleet, self._fleet.front.stats
        backend = fleet.backend.name
        pool = GaugeMetricFamily(
            "gateway_fleet_pool_size", "warm workers waiting for an interview", labels=["backend"]
        )
        pool.add_metric([backend], len(fleet.pool))
        yield pool
        claims = CounterMetricFamily(
            "gateway_fleet_claims", "interviews given a worker, by outcome", labels=["outcome"]
        )
        claims.add_metric(["ready"], stats.claims)
        claims.add_metric(["failed"], stats.claim_failures)
        yield claims
        latency = HistogramMetricFamily(
            "gateway_fleet_claim_seconds", "seconds from claim to a ready worker"
        )
        latency.add_metric(
            [], [(f"{bound:g}", count) for bound, count in stats.claim_buckets()], stats.claim_sum
        )
        yield latency
        yield CounterMetricFamily(
            "gateway_fleet_orphans_reaped",
            "orphaned workers destroyed and stale claims dropped by the reaper",
            value=fleet.reaper.reaped,
        )
        exits = CounterMetricFamily(
            "gateway_fleet_worker_exits", "workers gone, by reason", labels=["reason"]
        )
        for reason, count in sorted(fleet.backend.exits.items()):
            exits.add_metric([reason], count)
        yield exits
