"""Latency percentiles, for the ``latency_percentile`` marker trigger.

Each operation (span name) keeps its last :data:`WINDOW` durations; the percentile
is recomputed every :data:`RECOMPUTE_EVERY` observations, so a span's cost is an
append and a comparison. At most :data:`MAX_OPERATIONS` operations are tracked (the
least recently added or recomputed is forgotten).

The service's requests (local root spans: no parent, or a remote one) are also kept
together, as the pseudo-operation :data:`REQUESTS`, and a request operation's trigger
is the *lower* of its own percentile and that of all requests
(:meth:`LatencyTracker.trigger_ms`). A user looks for the slowest requests of the
service, not only each endpoint's slowest tenth: when one endpoint is slow as a whole
(every ``/checkout`` slower than any other request), its own p90 marks a tenth of it,
the service's p90 marks all of it. The marker processor says ``request=True`` only
while a percentile trigger is in force (nothing else reads the service's percentile),
so a span costs one append otherwise; the service's figure is known again
:data:`MIN_OBSERVATIONS` requests after such a trigger is set (its operations' own
percentiles meanwhile).

    >>> t = LatencyTracker()
    >>> for ms in range(1, 65):
    ...     t.observe("GET /a", float(ms))
    >>> t.threshold("GET /a", 95.0)
    61.0
    >>> t.threshold("GET /never", 95.0) is None
    True
    >>> for i in range(100):  # requests: a fast endpoint, and one a fifth as often, slow
    ...     t.observe("GET /fast", 1.0 + i % 8, request=True)
    ...     if i % 4 == 0:
    ...         t.observe("GET /slow", 100.0 + i % 40, request=True)
    >>> t.threshold("GET /slow", 90.0), t.trigger_ms("GET /slow", 90.0)  # own, service's
    (132.0, 116.0)
    >>> t.trigger_ms("GET /fast", 90.0), t.trigger_ms("GET /a", 95.0)  # their own
    (8.0, 61.0)
"""

from __future__ import annotations

import threading
from collections import deque

#: Durations kept per operation: the percentile follows the service within half of this
#: many spans (with 256, an operation at 2 requests/s kept a hot path's p90 for a
#: minute after it ended, and no span was slow — nor captured — in the meantime).
WINDOW = 64
#: Observations between two recomputations of an operation's percentiles.
RECOMPUTE_EVERY = 16
#: Fewer observations than this: no percentile yet (the trigger does not fire).
MIN_OBSERVATIONS = 20
#: Operations tracked at most.
MAX_OPERATIONS = 1024
#: The pseudo-operation of every request (local root span) of the service.
REQUESTS = "\x00requests"


class _Op:
    __slots__ = ("cache", "durations", "seen", "total")

    def __init__(self, seen: int) -> None:
        self.durations: deque[float] = deque(maxlen=WINDOW)
        #: When it was last recomputed or added (the tracker's tick): the operation least
        #: recently seen by this measure is forgotten first.
        self.seen = seen
        self.total = 0  # observations ever (take_new's bookmark)
        self.cache: dict[float, float] = {}


class LatencyTracker:
    """Recent durations per operation and their percentiles (thread-safe).

    An observation takes no lock: a deque append and a few attribute writes, each
    atomic; a race between two threads can only move a recomputation by one
    observation. Adding an operation, and recomputing a percentile, take the lock.
    """

    def __init__(self) -> None:
        self._ops: dict[str, _Op] = {}
        self._tick = 0
        self._lock = threading.Lock()
        #: Operations seen as requests (local roots): judged against :data:`REQUESTS` too.
        self.request_ops: set[str] = set()

    def after_fork(self) -> None:
        """In a forked child: a new lock (the durations seen stay useful)."""
        self._lock = threading.Lock()

    def observe(self, operation: str, duration_ms: float, request: bool = False) -> None:
        """Record one duration; ``request``: the span is a local root (a request)."""
        if request:
            if operation not in self.request_ops and len(self.request_ops) < MAX_OPERATIONS:
                self.request_ops.add(operation)
            self._append(self._ops.get(REQUESTS) or self._add(REQUESTS), duration_ms)
        self._append(self._ops.get(operation) or self._add(operation), duration_ms)

    def trigger_then_observe(
        self, operation: str, duration_ms: float, request: bool, percentile: float
    ) -> float | None:
        """:meth:`trigger_ms` as it stood before this span, then :meth:`observe` it.

        The marker processor's one call per span while a percentile trigger is in force
        (a frame instead of six: this runs on the application's thread for every span).

        >>> t = LatencyTracker()
        >>> [t.trigger_then_observe("GET /a", float(ms), True, 50.0) for ms in range(1, 23)][-3:]
        [None, 10.0, 10.0]
        >>> t.trigger_ms("GET /a", 50.0)
        10.0
        """
        ops = self._ops
        op = ops.get(operation) or self._add(operation)
        trigger = op.cache.get(percentile)
        if trigger is None and len(op.durations) >= MIN_OBSERVATIONS:
            trigger = self._compute(op, percentile)
        known = operation in self.request_ops
        if known or request:
            requests = ops.get(REQUESTS) or self._add(REQUESTS)
            if known:  # the lower of its own and the service's
                service = requests.cache.get(percentile)
                if service is None and len(requests.durations) >= MIN_OBSERVATIONS:
                    service = self._compute(requests, percentile)
                if service is not None and (trigger is None or service < trigger):
                    trigger = service
            if request:
                if not known and len(self.request_ops) < MAX_OPERATIONS:
                    self.request_ops.add(operation)
                self._append(requests, duration_ms)
        self._append(op, duration_ms)
        return trigger

    def _append(self, op: _Op, duration_ms: float) -> None:
        op.durations.append(duration_ms)
        op.total = total = op.total + 1
        if total % RECOMPUTE_EVERY == 0:  # (on the span path: nothing more per span)
            op.cache = {}
            self._tick += 1
            op.seen = self._tick

    def _add(self, operation: str) -> _Op:
        with self._lock:
            op = self._ops.get(operation)
            if op is None:
                if len(self._ops) >= MAX_OPERATIONS:  # forget the least recently seen
                    oldest = min(self._ops, key=lambda name: self._ops[name].seen)
                    del self._ops[oldest]
                self._tick += 1
                op = self._ops[operation] = _Op(self._tick)
            return op

    def take_new(self, seen: dict[str, int]) -> dict[str, list[float]]:
        """Durations observed since the last call, per operation (at most :data:`WINDOW`).

        ``seen`` is the caller's bookmark (operation → count already taken), updated here.

        >>> t, seen = LatencyTracker(), {}
        >>> t.observe("GET /a", 5.0); t.take_new(seen)
        {'GET /a': [5.0]}
        >>> t.observe("GET /a", 7.0); t.take_new(seen), t.take_new(seen)
        ({'GET /a': [7.0]}, {})
        """
        out: dict[str, list[float]] = {}
        with self._lock:
            for name, op in self._ops.items():
                if name == REQUESTS:
                    continue
                new = op.total - seen.get(name, 0)
                if new > 0:
                    n = min(new, len(op.durations))
                    out[name] = list(op.durations)[-n:]
                    seen[name] = op.total
        if len(seen) > 2 * MAX_OPERATIONS:
            for name in [n for n in seen if n not in out][: len(seen) - MAX_OPERATIONS]:
                del seen[name]
        return out

    def trigger_ms(self, operation: str, percentile: float) -> float | None:
        """The ``latency_percentile`` trigger of an operation (ms; ``None``: not yet known).

        Its own percentile; for an operation seen as a request, the lower of that and
        the percentile of all the service's requests (either one, when only one is known).
        """
        own = self.threshold(operation, percentile)
        if operation not in self.request_ops:
            return own
        service = self.threshold(REQUESTS, percentile)
        if own is None or service is None:
            return own if service is None else service
        return min(own, service)

    def threshold(self, operation: str, percentile: float) -> float | None:
        """The ``percentile`` of the operation's recent durations (nearest rank)."""
        op = self._ops.get(operation)
        if op is None or len(op.durations) < MIN_OBSERVATIONS:
            return None
        value = op.cache.get(percentile)
        return self._compute(op, percentile) if value is None else value

    def _compute(self, op: _Op, percentile: float) -> float:
        """The percentile (nearest rank) of ``op``'s durations, cached until recomputed."""
        with self._lock:
            ordered = sorted(tuple(op.durations))
        rank = max(0, min(len(ordered) - 1, round(percentile / 100 * len(ordered)) - 1))
        value = op.cache[percentile] = ordered[rank]
        return value
