"""The span join: marker spans wait for their samples, then go on to the exporter.

Sits in front of the SDK's export processor (``BatchSpanProcessor``). A span that is
not a marker, or ends while profiling is off, passes straight through on the
application's thread. A marker span is held in a bounded queue until the profiler's
watermark passes its end (py-spy's samples arrive when its run ends) or it has waited
``hold_s``; a worker thread — asleep until then: a span held into an empty queue, the
watermark passing the first held span's end (:meth:`SampleStore.wake_at`) or that
span's ``hold_s`` wakes it, at most every :data:`TICK_S` (while spans come in more
often than that, once a tick; every :data:`CLOCK_TICK_S` while no sampler runs) —
then reads the samples its thread took while it ran, adds the ``adaprof.*``
attributes (:mod:`~otel_adaprof.instrumentation.join.span_samples`) and hands the span
on. Nothing is ever dropped here: a full queue sends the span on at
once without samples (counted in ``overflow``, reported as ``queue_drops``); shutdown
and ``force_flush`` send every held span on with the samples already in; a failure
while attaching sends the span on as it was (counted in ``failures``).

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> live, book, store = LiveParams(Params()), MarkerBook(), SampleStore()
    >>> memory = InMemorySpanExporter()
    >>> join = SpanJoin(SimpleSpanProcessor(memory), book, store, live, hold_s=0.1)
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(MarkerProcessor(live, book))
    >>> provider.add_span_processor(join)
    >>> with provider.get_tracer("t").start_as_current_span("work"):
    ...     pass
    >>> provider.shutdown()
    >>> memory.get_finished_spans()[0].attributes["adaprof.marker"]
    True
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.span_samples import marker_attributes
from otel_adaprof.instrumentation.join.stacks import Stack
from otel_adaprof.instrumentation.sdk_compat import (
    forward_start_and_ending,
    raw_attributes,
    span_context_of,
    span_id_in,
    starts_nothing,
)
from otel_adaprof.instrumentation.spans.categories import category_of
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerInfo, MarkerProcessor

log = logging.getLogger("otel_adaprof.agent")

#: Shortest time between two passes of the worker over the held spans (s): spans that
#: come in meanwhile go on together at the next pass (a pass costs the worker about
#: as much as the spans it sends on: at 50 markers/s, 0.2 s between passes takes
#: 1.8 ms of CPU/s, 0.1 s 3.2 ms). Profiling off, a span used to wait up to 0.2 s
#: for the watermark's tick, and the export processor batches for seconds.
TICK_S = 0.2
#: The same while no sampler runs (slow-span capture alone, or py-spy off): a marker's
#: samples are all in when it ends, so nothing is gained by passing sooner, and the
#: export processor behind batches for seconds anyway. At 0.2 s the worker woke about
#: twice per pass, 5-8 times a second at 10 requests/s with the catalog's p90 trigger
#: (≈ 0.06 % of a core, docs/benchmarks.md "Watch mode: waking less").
CLOCK_TICK_S = 1.0
#: Longest sleep of the worker with no span held (s): a span held wakes it at once. It
#: used to look every 0.1 s whatever was held: 10 wake-ups/s while markers were held.
IDLE_WAIT_S = 5.0
#: Markers between two looks at whether a profiler runs (params changes: at once).
PROFILING_RECHECK = 256


class SampleLinker(Protocol):
    """Takes a marker span's samples to another signal (OTLP profiles)."""

    def link(
        self,
        span: ReadableSpan,
        tid: int,
        samples: Sequence[tuple[int, Stack, bool]],
        period_ns: int,
        depth: int,
    ) -> int:
        """How many of ``samples`` (stacks cut to ``depth`` frames from the leaf) are
        linked to ``span`` there (0: none)."""

    def flush(self) -> None:
        """Send what is queued (at shutdown and ``force_flush``)."""


#: Span attribute naming the span's profile: its span id in 16 hex digits (Grafana's
#: traces-to-profiles reads it), set when a linker took samples of the span.
PROFILE_ID_ATTRIBUTE = "pyroscope.profile.id"


@dataclass
class JoinCounters:
    """Counts since start (the observer takes per-window differences)."""

    held: int = 0
    joined: int = 0
    samples_attached: int = 0
    overflow: int = 0
    timed_out: int = 0
    failures: int = 0
    #: Slow marker spans sent on (:attr:`MarkerInfo.slow`), and those of them that
    #: carry at least one sample, from py-spy or slow-span capture alike: the agent's
    #: slow-span coverage, what a user sees on the slowest spans.
    slow: int = 0
    slow_sampled: int = 0


class SpanJoin(SpanProcessor):
    """Holds marker spans until their samples are in; wraps the export processor."""

    def __init__(
        self,
        downstream: SpanProcessor,
        book: MarkerBook,
        store: SampleStore,
        live: LiveParams,
        *,
        hold_s: float = 6.0,
        max_held: int = 20_000,
        top_stacks: int = 5,
        backend: Callable[[], str] = lambda: "none",
        profiling: Callable[[], bool] = lambda: True,
        linker: SampleLinker | None = None,
    ) -> None:
        self.downstream = downstream
        self.book = book
        self._marker_of = book.get_function()
        self.store = store
        self.live = live
        self.hold_ns = int(hold_s * 1e9)
        self.max_held = max_held
        self.top_stacks = top_stacks
        self.backend = backend
        self.profiling = profiling
        self.linker = linker
        self.counters = JoinCounters()
        self._held: deque[tuple[int, ReadableSpan, MarkerInfo]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        #: The worker sleeps with no span held: the next span held wakes it.
        self._idle = False
        self._stopped = False
        self._worker: threading.Thread | None = None
        self.native_id: int | None = None
        # ``on_start`` and ``_on_ending`` are the export processor's own: the SDK calls
        # them for every span, and a frame of ours would only forward the call
        forward_start_and_ending(self, downstream)
        self._profiling_for: object = None
        self._profiling_now = False
        self._profiling_age = 0
        #: The marker processor's :meth:`~MarkerProcessor.decide` when this join stands
        #: in for it in the provider's list (:meth:`decide_markers`).
        self._decide: Callable[[ReadableSpan], MarkerInfo | None] | None = None
        #: Called before each span is sent on: brings in samples read while the span
        #: was open that no sampler's take will (the native watcher's,
        #: :meth:`~otel_adaprof.instrumentation.profiler.native.SlowSpanWatcher.take_ended`).
        self.before_send: Callable[[], None] | None = None

    def decide_markers(self, markers: MarkerProcessor) -> None:
        """Do the marker processor's work here, in its place in the provider's list.

        The SDK calls ``on_start``, ``_on_ending`` and ``on_end`` of every processor for
        every span; the marker processor and the join as one processor save a third of
        what the agent adds to a span that is not a marker
        (``bench/span_path_callgrind.py``). ``on_start`` becomes the marker processor's
        (and then the export processor's, unless that one's does nothing); ``on_end``
        decides, then joins. The agent does this for the first join after the marker
        processor (:meth:`~otel_adaprof.instrumentation.agent.Agent.fuse`).
        """
        self._decide = markers.decide
        if starts_nothing(self.downstream):
            self.on_start = markers.on_start  # type: ignore[method-assign]
        else:
            first, then = markers.on_start, self.downstream.on_start

            def on_start(span: Span, parent_context: Context | None = None) -> None:
                first(span, parent_context)
                then(span, parent_context)

            self.on_start = on_start  # type: ignore[method-assign]

    # SpanProcessor ----------------------------------------------------------------------

    def on_end(self, span: ReadableSpan) -> None:
        decide = self._decide
        if decide is not None:
            info = decide(span)
        else:
            ctx = span_context_of(span)
            info = None if ctx is None else self._marker_of(span_id_in(ctx))
        if info is None:
            self.downstream.on_end(span)
            return
        if not self._profiling():
            # No samples to attach: the span goes on as it is, at no cost.
            self.counters.slow += info.slow
            self.downstream.on_end(span)
            return
        if self._stopped:
            self._forward(span, info, samples=False)
            return
        with self._lock:
            if len(self._held) >= self.max_held:
                self.counters.overflow += 1
                full, wake = True, False
            else:
                self._held.append((time.monotonic_ns() + self.hold_ns, span, info))
                self.counters.held += 1
                full, wake, self._idle = False, self._idle, False
        if full:
            self._forward(span, info, samples=False)
        else:
            if wake:
                self._wake.set()
            self._ensure_worker()

    def _profiling(self) -> bool:
        """``profiling()``, asked again when the params change or every 256 markers."""
        current = self.live.current
        self._profiling_age += 1
        if current is not self._profiling_for or self._profiling_age >= PROFILING_RECHECK:
            self._profiling_for, self._profiling_age = current, 0
            self._profiling_now = self.profiling()
        return self._profiling_now

    def shutdown(self) -> None:
        self.stop()
        self.downstream.shutdown()

    def stop(self, timeout: float = 1.0) -> None:
        """Send every held span on now and stop the worker; later markers pass through.

        The downstream processor keeps running (``shutdown`` also shuts it down).
        """
        self._stopped = True
        self._wake.set()  # the worker leaves now, not at its next tick
        self.release_all()
        if self.linker is not None:
            self.linker.flush()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.release_all()
        if self.linker is not None:
            self.linker.flush()
        return bool(self.downstream.force_flush(timeout_millis))

    # the worker -------------------------------------------------------------------------

    @property
    def held(self) -> int:
        """Marker spans waiting for samples right now."""
        return len(self._held)

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            with self._lock:
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(
                        target=self._run, name="adaprof-span-join", daemon=True
                    )
                    self._worker.start()

    def after_fork(self) -> None:
        """In a forked child: no worker thread, no spans of the parent."""
        self._worker = None
        self._held.clear()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = False

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        next_pass = 0.0
        # spans come in more often than every TICK_S: with none held it sleeps to the
        # next pass rather than be woken by each (one wake-up a tick, not two)
        busy = False
        with self.store.ignored.running():
            while not self._stopped:
                self._wake.clear()  # before looking: a wake-up from now on is not lost
                wait = self._until_due(idle=not busy)
                if wait is None and busy:
                    self._wake.wait(max(0.0, next_pass - time.monotonic()))
                    busy = self.held > 0  # none came in a whole tick: idle from now on
                    continue
                if wait is None:  # nothing held: the next span held wakes it
                    woke = self._wake.wait(IDLE_WAIT_S)
                    busy = woke and time.monotonic() < next_pass
                    continue
                wait = max(wait, next_pass - time.monotonic())
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                try:
                    self.release_ready()
                except Exception:  # keep joining; a bad span must not stop the others
                    log.exception("otel-adaprof: span join failed")
                next_pass = time.monotonic() + (
                    CLOCK_TICK_S if self.store.follows_clock else TICK_S
                )

    def _until_due(self, idle: bool = True) -> float | None:
        """Seconds until the first held span may go on (0: now; ``None``: none held; with
        ``idle``, the next one held wakes the worker); the watermark passing its end
        wakes it sooner."""
        with self._lock:
            if not self._held:
                self._idle = idle
                return None
            self._idle = False
            deadline, _span, info = self._held[0]
        if info.end_ns <= self.store.watermark_ns:
            return 0.0
        self.store.wake_at(info.end_ns, self._wake)
        return max(0.0, (deadline - time.monotonic_ns()) / 1e9)

    def release_ready(self) -> int:
        """Send on every held span whose samples are in (or that waited long enough)."""
        released = 0
        while True:
            with self._lock:
                if not self._held:
                    return released
                deadline, span, info = self._held[0]
                ready = info.end_ns <= self.store.watermark_ns
                late = time.monotonic_ns() >= deadline
                if not (ready or late):
                    return released
                self._held.popleft()
            if late and not ready:
                self.counters.timed_out += 1
            self._forward(span, info, samples=True)
            released += 1

    def release_all(self) -> None:
        """Send on every held span now, with the samples that are in."""
        while True:
            with self._lock:
                if not self._held:
                    return
                _, span, info = self._held.popleft()
            self._forward(span, info, samples=True)

    def _forward(self, span: ReadableSpan, info: MarkerInfo, *, samples: bool) -> None:
        self.counters.slow += info.slow
        if samples and self.before_send is not None:
            try:
                self.before_send()
            except Exception:  # the span goes on with the samples that are in
                log.debug("otel-adaprof: samples not brought in", exc_info=True)
        try:
            out = self._with_samples(span, info, samples)
        except Exception:
            self.counters.failures += 1
            log.debug("otel-adaprof: samples not attached", exc_info=True)
            out = span
        self.downstream.on_end(out)

    def _with_samples(self, span: ReadableSpan, info: MarkerInfo, samples: bool) -> ReadableSpan:
        params = self.live.params
        found = (
            self.store.samples_between(info.tid, info.start_ns, info.end_ns, info.born_ns)
            if samples
            else []
        )
        shared = 0
        if found:
            others = self.book.concurrent(info)
            if others:
                shared = sum(
                    1 for t, _s, _w in found if any(o.start_ns <= t <= o.end_ns for o in others)
                )
        category = info.category or category_of(span.kind, raw_attributes(span)).value
        attrs = marker_attributes(
            category=category,
            trigger=info.trigger,
            config_version=info.config_version,
            profiler=self.backend(),
            samples=[(stack, waiting) for _t, stack, waiting in found],
            shared=shared,
            interval_ms=params.sampling_interval_ms,
            depth=params.stack_depth,
            top=self.top_stacks,
        )
        self.counters.joined += 1
        self.counters.samples_attached += len(found)
        self.counters.slow_sampled += info.slow and bool(found)
        merged = dict(raw_attributes(span) or {})
        merged.update(attrs)
        if found and self.linker is not None and span.context is not None:
            period_ns = params.sampling_interval_ms * 1_000_000
            if self.linker.link(span, info.tid, found, period_ns, params.stack_depth) > 0:
                merged[PROFILE_ID_ATTRIBUTE] = f"{span.context.span_id:016x}"
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=merged,
            events=span.events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )
