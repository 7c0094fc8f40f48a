"""Prometheus metrics: requests as they happen, the fleet's state when scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tfhost.batching import QUEUE_BUCKETS, BatchingStats
from tfhost.state import State

if TYPE_CHECKING:
    from tfhost.fleet import Fleet

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Buckets for a server whose fast calls take a few hundred microseconds.
_LATENCY_BUCKETS = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)

# Rows per model call of a batched version: powers of two up to 1024.
BATCH_SIZE_BUCKETS = tuple(float(1 << i) for i in range(11))


class Metrics:
    """One registry per server (never the process-global one: two servers in one
    process, as in tests, must not share counts)."""

    def __init__(self, fleet: Fleet) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "tfhost_requests",
            "Requests answered, by model, version, protocol and status.",
            ("model", "version", "protocol", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "tfhost_request_seconds",
            "Request latency in the server, from admission to answer.",
            ("model", "version", "protocol"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._refused = Counter(
            "tfhost_requests_refused",
            "Requests refused at once because max_in_flight were in flight.",
            ("protocol",),
            registry=self.registry,
        )
        self.registry.register(_FleetCollector(fleet))
        # The children of each label set, looked up once: labels() costs more than the
        # increment on a fast request's path.
        self._children: dict[tuple[str, str, int | None, str], tuple[Any, Any]] = {}

    def request(
        self, protocol: str, model: str, version: int | None, status: str, seconds: float
    ) -> None:
        key = (protocol, model, version, status)
        children = self._children.get(key)
        if children is None:
            v = "" if version is None else str(version)
            children = (
                self._requests.labels(model, v, protocol, status),
                self._latency.labels(model, v, protocol),
            )
            self._children[key] = children  # a racing thread stores equal children
        children[0].inc()
        children[1].observe(seconds)

    def refused(self, protocol: str) -> None:
        self._refused.labels(protocol).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FleetCollector(Collector):
    """Read at scrape time, so the figures are never stale and cost nothing per request."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        infos = self._fleet.models()
        state = GaugeMetricFamily(
            "tfhost_model_state",
            "1 for the state each model version is in.",
            labels=("model", "version", "state"),
        )
        memory = GaugeMetricFamily(
            "tfhost_model_memory_bytes",
            "Memory each loaded model version took, measured at load.",
            labels=("model", "version"),
        )
        load = GaugeMetricFamily(
            "tfhost_model_load_seconds",
            "How long each version took to load and warm up.",
            labels=("model", "version"),
        )
        restarts = CounterMetricFamily(
            "tfhost_model_restarts",
            "Worker restarts of each process-isolated version.",
            labels=("model", "version"),
        )
        batching = _BatchingFamilies()
        total = 0
        for info in infos:
            labels = (info.name, str(info.version))
            for each in State:
                state.add_metric((*labels, each.name), 1.0 if info.state is each else 0.0)
            if info.memory_bytes is not None:
                memory.add_metric(labels, info.memory_bytes)
                if info.state is State.AVAILABLE:
                    total += info.memory_bytes
            if info.load_seconds is not None:
                load.add_metric(labels, info.load_seconds)
            restarts.add_metric(labels, info.restarts)
            if info.batching is not None:
                batching.add(labels, info.batching)
        yield state
        yield memory
        yield load
        yield restarts
        yield from batching.families()
        yield GaugeMetricFamily(
            "tfhost_memory_used_bytes", "Memory of every available version.", value=total
        )
        budget = self._fleet.memory_budget
        if budget is not None:
            yield GaugeMetricFamily(
                "tfhost_memory_budget_bytes", "The fleet's memory budget.", value=budget
            )
        yield CounterMetricFamily(
            "tfhost_evictions",
            "Versions unloaded to stay within the memory budget.",
            value=self._fleet.evictions,
        )


class _BatchingFamilies:
    """The batched versions' figures (``ModelInfo.batching``), one sample set per version."""

    def __init__(self) -> None:
        labels = ("model", "version")
        self.sizes = HistogramMetricFamily(
            "tfhost_batch_size",
            "Rows each model call of a batched version was given (padding included).",
            labels=labels,
        )
        self.depth = GaugeMetricFamily(
            "tfhost_batch_queue_depth",
            "Requests waiting in a batched version's queue.",
            labels=labels,
        )
        self.waits = HistogramMetricFamily(
            "tfhost_batch_queue_seconds",
            "How long each request of a batched version waited in its queue.",
            labels=labels,
        )
        self.limit = GaugeMetricFamily(
            "tfhost_batch_max_size",
            "The max_batch_size a batched version uses (configured, or what auto chose).",
            labels=labels,
        )

    def add(self, labels: tuple[str, str], stats: BatchingStats) -> None:
        sizes = stats.batch_sizes
        buckets: list[tuple[str, float]] = [
            (str(bound), sum(n for size, n in sizes.items() if size <= bound))
            for bound in BATCH_SIZE_BUCKETS
        ]
        buckets.append(("+Inf", sum(sizes.values())))
        rows = sum(size * n for size, n in sizes.items())
        self.sizes.add_metric(labels, buckets, rows)
        self.depth.add_metric(labels, stats.queue_depth)
        # queue_buckets are cumulative already: each request counts in every bucket it fits.
        waits: list[tuple[str, float]] = [
            (str(bound), count)
            for bound, count in zip(QUEUE_BUCKETS, stats.queue_buckets, strict=True)
        ]
        waits.append(("+Inf", stats.queued))
        self.waits.add_metric(labels, waits, stats.queue_seconds)
        self.limit.add_metric(labels, stats.max_batch_size)

    def families(self) -> Iterator[Metric]:
        yield self.sizes
        yield self.depth
        yield self.waits
        yield self.limit
