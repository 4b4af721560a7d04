"""Prometheus metrics of one controller (its own registry, so tests can run several).

>>> m = ControllerMetrics()
>>> m.polls.inc()
>>> b"adaprof_polls_total 1.0" in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        # children every request counts (labels() looks them up under a lock), kept
        # once used: a series appears at its first count, as with labels()
        self._route_latency: dict[str, Histogram] = {}
        self._decisions: dict[str, Counter] = {}

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

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
