"""The marker processor: decides which ended spans are *execution markers*.

A span is a marker when it passes the params' ``span_filters`` (its category, and
errors-only) and its ``marker_trigger`` (at least ``min_duration_ms``, and slower
than the operation's ``latency_percentile`` when one is set). The decision is made in
``on_end`` on the application's thread: a dict look-up, a classification and a few
comparisons — no I/O, no lock held for long. What it records (the thread the span ran
on, its interval, its trace) is what the span join needs.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> live = LiveParams(Params.parse({"marker_trigger": {"min_duration_ms": 0}}))
    >>> book = MarkerBook()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(MarkerProcessor(live, book))
    >>> with provider.get_tracer("t").start_as_current_span("work") as span:
    ...     pass
    >>> book.get(span.get_span_context().span_id).category
    'internal'
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.profiler.liveness import ThreadLiveness
from otel_adaprof.instrumentation.spans.categories import category_of
from otel_adaprof.instrumentation.spans.latency import LatencyTracker

#: Markers remembered for the join at most (oldest forgotten first).
MAX_MARKERS = 50_000
#: Recent markers remembered per thread, to find concurrent ones (asyncio).
PER_THREAD_MARKERS = 256
#: Open spans whose thread is remembered at most (spans never ended are forgotten).
MAX_OPEN_SPANS = 100_000


@dataclass(frozen=True, slots=True)
class MarkerInfo:
    """What the join needs to know about a marker span."""

    tid: int
    born_ns: int
    start_ns: int
    end_ns: int
    trace_id: int
    category: str
    trigger: str
    config_version: int


class MarkerBook:
    """Recent markers by span id, and per thread (to spot concurrent markers)."""

    def __init__(self, limit: int = MAX_MARKERS) -> None:
        self.limit = limit
        self._by_span: OrderedDict[int, MarkerInfo] = OrderedDict()
        self._by_thread: dict[int, deque[MarkerInfo]] = {}
        self._lock = threading.Lock()

    def add(self, span_id: int, info: MarkerInfo) -> None:
        """Remember a marker (forgetting the oldest beyond the limit)."""
        with self._lock:
            self._by_span[span_id] = info
            recent = self._by_thread.get(info.tid)
            if recent is None:
                recent = self._by_thread[info.tid] = deque(maxlen=PER_THREAD_MARKERS)
            recent.append(info)
            while len(self._by_span) > self.limit:
                _, old = self._by_span.popitem(last=False)
                kept = self._by_thread.get(old.tid)
                if kept is not None and kept and kept[0] is old:
                    kept.popleft()
                    if not kept:
                        del self._by_thread[old.tid]

    def after_fork(self) -> None:
        """In a forked child: a new lock and no markers of the parent."""
        self._lock = threading.Lock()
        self._by_span.clear()
        self._by_thread.clear()

    def get(self, span_id: int) -> MarkerInfo | None:
        """The marker with this span id, if it is one."""
        return self._by_span.get(span_id)

    def concurrent(self, info: MarkerInfo) -> list[MarkerInfo]:
        """Markers of *other* traces that overlapped ``info`` on the same thread.

        On a threaded server there are none; on an asyncio loop, concurrent requests
        share the thread and a sample in the overlap cannot be told apart.
        """
        with self._lock:
            recent = list(self._by_thread.get(info.tid, ()))
        return [
            other
            for other in recent
            if other.trace_id != info.trace_id
            and other.start_ns < info.end_ns
            and other.end_ns > info.start_ns
        ]


@dataclass
class SpanCounters:
    """Counts since the agent started (the observer takes per-window differences)."""

    spans: int = 0
    markers: int = 0


def trigger_text(min_duration_ms: float, percentile: float | None) -> str:
    """How a marker was triggered, as it appears in ``adaprof.trigger``.

    >>> trigger_text(50.0, 95.0), trigger_text(0.0, None)
    ('duration>=50ms,p95', 'any')
    """
    parts = []
    if min_duration_ms > 0:
        parts.append(f"duration>={min_duration_ms:g}ms")
    if percentile is not None:
        parts.append(f"p{percentile:g}")
    return ",".join(parts) or "any"


def _plain_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The span's attributes as a plain dict where the SDK keeps one.

    ``span.attributes`` is a read-only proxy over ``BoundedAttributes``, where every
    missing key costs a raised ``KeyError``; classification looks up a dozen keys.
    """
    bounded = getattr(span, "_attributes", None)
    raw = getattr(bounded, "_dict", None)
    return raw if isinstance(raw, dict) else span.attributes


class MarkerProcessor(SpanProcessor):
    """Decides markers at ``on_end``; never blocks, never raises into the application."""

    def __init__(
        self,
        live: LiveParams,
        book: MarkerBook,
        latency: LatencyTracker | None = None,
        counters: SpanCounters | None = None,
        liveness: ThreadLiveness | None = None,
    ) -> None:
        self.live = live
        self.book = book
        self.latency = latency or LatencyTracker()
        self.counters = counters or SpanCounters()
        self.liveness = liveness
        self._threads: dict[int, tuple[int, int, int]] = {}
        self._generations: dict[int, tuple[int, int]] = {}
        self.errors = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # A thread id is reused once its thread has exited (one thread per request
        # servers): the native id tells the new thread from the old, and samples whose
        # stack was there before the new thread's first span belong to the old one.
        ident = threading.get_ident()
        native = threading.get_native_id()
        gen = self._generations.get(ident)
        if gen is None or gen[0] != native:
            gen = self._generations[ident] = (native, span.start_time or 0)
            if len(self._generations) > MAX_OPEN_SPANS:
                self._generations.clear()
        threads = self._threads
        threads[span.context.span_id] = (ident, gen[1], native)
        if len(threads) > MAX_OPEN_SPANS:
            for key in list(threads)[: MAX_OPEN_SPANS // 2]:
                threads.pop(key, None)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._decide(span)
        except Exception:  # a bug here must cost a marker, not a request
            self.errors += 1

    def _decide(self, span: ReadableSpan) -> None:
        ctx = span.context
        if ctx is None:
            return
        thread = self._threads.pop(ctx.span_id, None)
        self.counters.spans += 1
        start, end = span.start_time, span.end_time
        if thread is None or start is None or end is None:
            return
        if self.liveness is not None:  # the span proves its thread was alive
            self.liveness.span(thread[0], thread[2], start, end)
        duration_ms = (end - start) / 1e6
        current = self.live.current
        params = current.params
        trigger = params.marker_trigger
        pct = trigger.latency_percentile
        threshold = self.latency.threshold(span.name, pct) if pct is not None else None
        self.latency.observe(span.name, duration_ms)
        category = category_of(span.kind, _plain_attributes(span))
        is_error = span.status.status_code is StatusCode.ERROR
        if not params.span_filters.matches(category, is_error):
            return
        if duration_ms < trigger.min_duration_ms:
            return
        if pct is not None and (threshold is None or duration_ms <= threshold):
            return
        self.book.add(
            ctx.span_id,
            MarkerInfo(
                tid=thread[0],
                born_ns=thread[1],
                start_ns=start,
                end_ns=end,
                trace_id=ctx.trace_id,
                category=category.value,
                trigger=trigger_text(trigger.min_duration_ms, pct),
                config_version=current.version,
            ),
        )
        self.counters.markers += 1

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
