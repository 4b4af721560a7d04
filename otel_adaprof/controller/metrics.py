"""Prometheus metrics of one controller (its own registry, so tests can run several).

>>> m = ControllerMetrics()
>>> m.polls.inc()
>>> b"adaprof_polls_total 1.0" in m.render()
True

Where a poll's time goes (:mod:`~otel_adaprof.controller.poll_timing`), each group
commit's transaction and ``COMMIT`` (its fsync), and the garbage collector's pauses
(which stop the event loop) have histograms of their own:

>>> from otel_adaprof.controller.poll_timing import PollTiming
>>> t = PollTiming(start=0.0)
>>> t.mark("parse", 0.0002)
>>> m.observe_poll(t)
>>> b'adaprof_poll_part_seconds_bucket{le="0.00025",part="parse"} 1.0' in m.render()
True
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from otel_adaprof.controller.poll_timing import PollTiming

#: Bounds (seconds) of the histograms of a poll's parts, commits and GC pauses: fine
#: around the 10 ms a poll should take.
FINE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class ControllerMetrics:
    """Counters of polls, decisions, rewards and errors; open sessions; request latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter("adaprof_polls", "Agent polls answered", registry=self.registry)
        self.decisions = Counter(
            "adaprof_decisions",
            "Decisions made, in a session or on defaults",
            ["kind"],
            registry=self.registry,
        )
        self.rewards = Counter(
            "adaprof_rewards", "Decisions credited with a reward", registry=self.registry
        )
        self.sessions_open = Gauge(
            "adaprof_sessions_open", "Profiling sessions open", registry=self.registry
        )
        self.errors = Counter(
            "adaprof_http_errors",
            "HTTP answers with status >= 400",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "adaprof_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
            registry=self.registry,
        )
        self.poll_parts = PartSeconds(
            "adaprof_poll_part_seconds",
            "Time of each part of a poll in the controller (see poll_timing)",
            FINE_BUCKETS,
            self.registry,
        )
        self.commit_seconds = Histogram(
            "adaprof_db_commit_seconds",
            "Group-commit transactions: all of it (stage=transaction) and its COMMIT, "
            "the WAL append and fsync (stage=commit)",
            ["stage"],
            buckets=FINE_BUCKETS,
            registry=self.registry,
        )
        self.commit_polls = Histogram(
            "adaprof_db_commit_polls",
            "Polls per group-commit transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.gc_pauses = Histogram(
            "adaprof_gc_pause_seconds",
            "Pauses of the garbage collector (the event loop waits), per generation",
            ["generation"],
            buckets=FINE_BUCKETS,
            registry=self.registry,
        )
        self.gc_frozen = Gauge(
            "adaprof_gc_frozen_objects",
            "Objects the garbage collector leaves out: the heap as the controller started",
            registry=self.registry,
        )
        self.gc_frozen.set_function(gc.get_freeze_count)
        # children every request counts (labels() looks them up under a lock), kept
        # once used: a series appears at its first count, as with labels()
        self._route_latency: dict[str, Histogram] = {}
        self._decisions: dict[str, Counter] = {}
        self._commit_stages = (
            self.commit_seconds.labels("transaction"),
            self.commit_seconds.labels("commit"),
        )
        self._gc_generations = [self.gc_pauses.labels(str(g)) for g in range(3)]
        self._gc_started = 0.0

    def decision(self, kind: str) -> Counter:
        """The decisions counter of one kind (``session`` or ``default``)."""
        child = self._decisions.get(kind)
        if child is None:
            child = self._decisions[kind] = self.decisions.labels(kind)
        return child

    def route_latency(self, route: str) -> Histogram:
        """The latency histogram of one route (its child kept after the first request)."""
        child = self._route_latency.get(route)
        if child is None:
            child = self._route_latency[route] = self.latency.labels(route)
        return child

    def observe_poll(self, timing: PollTiming) -> None:
        """Count one poll's parts."""
        self.poll_parts.observe_all(timing.parts)

    def observe_commit(self, polls: int, seconds: float, commit_seconds: float | None) -> None:
        """Count one group-commit transaction (called on the writer thread)."""
        self.commit_polls.observe(polls)
        self._commit_stages[0].observe(seconds)
        if commit_seconds is not None:
            self._commit_stages[1].observe(commit_seconds)

    def watch_gc(self) -> None:
        """Time the garbage collector's pauses (until :meth:`unwatch_gc`)."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        """Stop timing the garbage collector."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            generation = info.get("generation")
            if isinstance(generation, int) and 0 <= generation < len(self._gc_generations):
                self._gc_generations[generation].observe(time.perf_counter() - self._gc_started)
            self._gc_started = 0.0

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class PartSeconds:
    """A histogram with one series per poll part (label ``part``), that every poll
    adds its parts to: counted in plain lists on the event loop's thread, the only one
    that observes (prometheus_client's ``Histogram`` takes two locks and walks the
    bounds in Python per value: nine parts cost a few percent of a poll), and exposed
    to the registry as the same histogram family (buckets, count and sum per part).

    >>> registry = CollectorRegistry()
    >>> h = PartSeconds("x_seconds", "x", (0.001, 0.01), registry)
    >>> h.observe_all({"parse": 0.002, "read": 0.02})
    >>> h.observe_all({"parse": 0.001})
    >>> b'x_seconds_bucket{le="0.001",part="parse"} 1.0' in generate_latest(registry)
    True
    >>> b'x_seconds_count{part="parse"} 2.0' in generate_latest(registry)
    True
    """

    def __init__(
        self, name: str, documentation: str, bounds: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(float(b) for b in bounds)
        self._labels = [*(floatToGoString(b) for b in self._bounds), "+Inf"]  # type: ignore[no-untyped-call]
        # part -> [observations per bucket (non-cumulative; the last is +Inf), sum]
        self._series: dict[str, list[float]] = {}
        registry.register(self)

    def observe_all(self, parts: Mapping[str, float]) -> None:
        """Add each part's seconds to its series (a value lands in the first bucket
        whose bound is at least it, as with prometheus_client)."""
        series, bounds = self._series, self._bounds
        for part, seconds in parts.items():
            row = series.get(part)
            if row is None:
                row = series[part] = [0.0] * (len(bounds) + 2)
            row[bisect_left(bounds, seconds)] += 1.0
            row[-1] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The family as the registry exposes it (cumulative buckets)."""
        family = HistogramMetricFamily(self._name, self._documentation, labels=["part"])
        for part, row in list(self._series.items()):
            cumulative = 0.0
            buckets = []
            for label, count in zip(self._labels, row[:-1], strict=True):
                cumulative += count
                buckets.append((label, cumulative))
            family.add_metric([part], buckets, row[-1])
        yield family
