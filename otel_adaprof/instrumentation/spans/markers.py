"""The marker processor: decides which ended spans are *execution markers*.

A span is a marker when it passes the params' ``span_filters`` (its category, and
errors-only) and its ``marker_trigger`` (at least ``min_duration_ms``, and slower
than the operation's ``latency_percentile`` when one is set; a request — a local
root span — also when slower than that percentile of all the service's requests,
:meth:`~otel_adaprof.instrumentation.spans.latency.LatencyTracker.trigger_ms`).
The decision is made in ``on_end`` on the application's thread: a dict look-up and a
few comparisons — no I/O, no lock, no allocation for a span that is not a marker. The
filter decisions are prepared once per params version; the category is computed only
when a filter needs it (the span join computes it for the spans it attaches samples
to). What it records (the thread the span started on, its interval, its trace) is what
the span join needs;
the thread's identity comes from :class:`~otel_adaprof.instrumentation.threads.ThreadIdentity`.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> live = LiveParams(Params.parse({"marker_trigger": {"min_duration_ms": 0}}))
    >>> book = MarkerBook()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(MarkerProcessor(live, book))
    >>> with provider.get_tracer("t").start_as_current_span("work") as span:
    ...     pass
    >>> book.get(span.get_span_context().span_id).trigger
    'any'
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanContext, StatusCode

from otel_adaprof.instrumentation.control.live_params import LiveParams, ParamsInForce
from otel_adaprof.instrumentation.sdk_compat import (
    raw_attributes,
    span_context_of,
    span_fields,
    span_id_in,
)
from otel_adaprof.instrumentation.spans.categories import category_in
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.instrumentation.spans.open_spans import OpenSpanIndex
from otel_adaprof.instrumentation.threads import ThreadIdentity, ThreadLiveness
from otel_adaprof.params import Category

#: Markers remembered for the join at most (oldest forgotten first).
MAX_MARKERS = 50_000
#: Recent markers remembered per thread, to find concurrent ones (asyncio).
PER_THREAD_MARKERS = 256
#: Open spans whose thread is remembered at most (spans never ended are forgotten).
MAX_OPEN_SPANS = 100_000


class MarkerInfo(NamedTuple):
    """What the join needs to know about a marker span.

    ``category`` is empty when no filter needed it; the join computes it from the span.
    (A named tuple: cheap to make, and of no concern to the garbage collector.)
    """

    tid: int
    born_ns: int
    start_ns: int
    end_ns: int
    trace_id: int
    category: str
    trigger: str
    config_version: int
    #: The marker outlived a duration condition (a minimum duration or its latency
    #: percentile): a *slow* span, whose samples slow-span coverage counts.
    slow: bool = False


class MarkerBook:
    """Recent markers by span id, and per thread (to spot concurrent markers).

    Adding takes no lock (single dict and deque operations are atomic); only forgetting
    the oldest beyond the limit does, once per eighth of the limit.
    """

    def __init__(self, limit: int = MAX_MARKERS) -> None:
        self.limit = limit
        self._by_span: dict[int, MarkerInfo] = {}
        self._by_thread: dict[int, deque[MarkerInfo]] = {}
        self._lock = threading.Lock()

    def add(self, span_id: int, info: MarkerInfo) -> None:
        """Remember a marker (forgetting the oldest beyond the limit)."""
        by_span = self._by_span
        by_span[span_id] = info
        recent = self._by_thread.get(info.tid)
        if recent is None:
            recent = self._by_thread.setdefault(info.tid, deque(maxlen=PER_THREAD_MARKERS))
        recent.append(info)
        if len(by_span) > self.limit:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        with self._lock:
            by_span = self._by_span
            keep = self.limit - self.limit // 8
            while len(by_span) > keep:
                try:
                    oldest = next(iter(by_span))
                except (StopIteration, RuntimeError):  # emptied, or changed meanwhile
                    break
                old = by_span.pop(oldest, None)
                if old is None:
                    continue
                kept = self._by_thread.get(old.tid)
                if kept and kept[0] is old:
                    kept.popleft()
                    if not kept:
                        self._by_thread.pop(old.tid, None)

    def after_fork(self) -> None:
        """In a forked child: a new lock and no markers of the parent."""
        self._lock = threading.Lock()
        self._by_span.clear()
        self._by_thread.clear()

    def get(self, span_id: int) -> MarkerInfo | None:
        """The marker with this span id, if it is one."""
        return self._by_span.get(span_id)

    def get_function(self) -> Callable[[int], MarkerInfo | None]:
        """:meth:`get` with no frame of ours: the span join asks it of every span.

        >>> book = MarkerBook(); marker_of = book.get_function()
        >>> marker_of(7) is None
        True
        """
        return self._by_span.get

    def concurrent(self, info: MarkerInfo) -> list[MarkerInfo]:
        """Markers of *other* traces that overlapped ``info`` on the same thread.

        On a threaded server there are none; on an asyncio loop, concurrent requests
        share the thread and a sample in the overlap cannot be told apart.
        """
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
    #: Local root spans (no parent, or a remote one): the service's requests.
    requests: int = 0


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


def is_request(parent: SpanContext | None) -> bool:
    """Whether a span with this parent is a request of the service: a local root (no
    parent, or a remote one).

    >>> remote = SpanContext(trace_id=1, span_id=2, is_remote=True)
    >>> local = SpanContext(trace_id=1, span_id=2, is_remote=False)
    >>> is_request(None), is_request(remote), is_request(local)
    (True, True, False)
    """
    return parent is None or parent.is_remote


class _Plan:
    """The marker rules of one :class:`ParamsInForce`, prepared for the span path."""

    __slots__ = (
        "categories", "current", "errors_only", "min_ns", "pct", "slow", "trigger", "version"
    )  # fmt: skip

    def __init__(self, current: ParamsInForce) -> None:
        params = current.params
        trigger, filters = params.marker_trigger, params.span_filters
        self.current = current
        self.version = current.version
        wanted = frozenset(filters.categories)
        #: ``None``: every category passes, so the category is not needed to decide.
        self.categories: frozenset[Category] | None = (
            None if wanted >= frozenset(Category) else wanted
        )
        self.errors_only = filters.errors_only
        self.min_ns = int(trigger.min_duration_ms * 1_000_000)
        self.pct = trigger.latency_percentile
        self.trigger = trigger_text(trigger.min_duration_ms, self.pct)
        #: Markers under this plan are slow spans (a duration condition holds).
        self.slow = self.min_ns > 0 or self.pct is not None


class MarkerProcessor(SpanProcessor):
    """Decides markers at ``on_end``; never blocks, never raises into the application."""

    def __init__(
        self,
        live: LiveParams,
        book: MarkerBook,
        latency: LatencyTracker | None = None,
        counters: SpanCounters | None = None,
        liveness: ThreadLiveness | None = None,
        identity: ThreadIdentity | None = None,
    ) -> None:
        self.live = live
        self.book = book
        self.latency = latency or LatencyTracker()
        self.counters = counters or SpanCounters()
        self.liveness = liveness
        self.identity = identity or ThreadIdentity()
        self._threads: dict[int, tuple[int, int, int]] = {}
        self._plan = _Plan(live.current)
        self.errors = 0
        #: ``(started, ended)``, called as each request (a local root span) opens and
        #: closes: the native profiler's ``sample_scope: requests`` samples while one is
        #: open (:func:`~otel_adaprof.instrumentation.profiler.native.request_hooks`).
        self.request_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None
        #: Open spans (span id → thread ident, native id, start ns, name) while
        #: slow-span capture is on (``None``: off); read by its capture thread.
        self.open_spans: OpenSpanIndex | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # (ident, native id, born): a thread id reused by a new thread (one thread per
        # request) is a new key, so samples of the old thread are told apart.
        threads = self._threads
        span_id = span_id_in(span_context_of(span))
        thread_key = threads[span_id] = self.identity.current()
        hooks = self.request_hooks
        if hooks is not None and is_request(span.parent):
            hooks[0]()
        open_spans = self.open_spans
        if open_spans is not None:  # slow-span capture is on
            start, name = span.start_time or 0, span.name
            open_spans[span_id] = (thread_key[0], thread_key[1], start, name)
            open_spans.starting(start, name)  # wakes the capture's loop if it must look sooner
        if len(threads) > MAX_OPEN_SPANS:
            for key in list(threads)[: MAX_OPEN_SPANS // 2]:
                threads.pop(key, None)

    def on_end(self, span: ReadableSpan) -> None:
        self.decide(span)

    def decide(self, span: ReadableSpan) -> MarkerInfo | None:
        """Whether the ended span is a marker: its record (also in the book), or ``None``.

        What ``on_end`` does; the span join that stands in for this processor in the
        provider's list (``SpanJoin.decide_markers``) calls it and uses the answer.
        """
        try:
            return self._decide(span)
        except Exception:  # a bug here must cost a marker, not a request
            self.errors += 1
            return None

    def _decide(self, span: ReadableSpan) -> MarkerInfo | None:
        ctx, parent, start, end, name, kind = span_fields(span)
        if ctx is None:
            return None
        span_id = span_id_in(ctx)
        thread = self._threads.pop(span_id, None)
        open_spans = self.open_spans
        if open_spans is not None:
            entry = open_spans.pop(span_id, None)
            if entry is not None:  # the capture's alarm, if set for this span, moves on
                open_spans.ending(entry[2], entry[3])
        counters = self.counters
        counters.spans += 1
        request = is_request(parent)
        if request:
            counters.requests += 1
            hooks = self.request_hooks
            if hooks is not None:
                hooks[1]()
        if thread is None or start is None or end is None:
            return None
        liveness = self.liveness
        if liveness is not None and liveness.active:  # the span proves its thread alive
            liveness.span(thread[0], thread[1], start, end)
        plan = self._plan
        if plan.current is not self.live.current:
            plan = self._plan = _Plan(self.live.current)
        duration_ns = end - start
        duration_ms = duration_ns / 1e6
        pct = plan.pct
        latency = self.latency
        if pct is None:  # requests as a whole matter to a percentile trigger only
            latency.observe(name, duration_ms)
        else:  # the trigger as it was before this span
            threshold = latency.trigger_then_observe(name, duration_ms, request, pct)
            if threshold is None or duration_ms <= threshold:
                return None
        if duration_ns < plan.min_ns:
            return None
        if plan.errors_only and span.status.status_code is not StatusCode.ERROR:
            return None
        category = ""
        if plan.categories is not None:
            found = category_in(kind, raw_attributes(span), plan.categories)
            if found is None:
                return None
            category = found.value
        info = MarkerInfo(
            thread[0],
            thread[2],
            start,
            end,
            ctx.trace_id,
            category,
            plan.trigger,
            plan.version,
            plan.slow,
        )
        self.book.add(span_id, info)
        counters.markers += 1
        return info

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
