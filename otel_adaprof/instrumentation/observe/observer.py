"""The observer: what one window cost and saw, as the controller's ``ObservedState``.

Per window it measures the process's and the machine's CPU and memory (psutil), the
round trip of the previous poll, spans, markers and samples per second, bytes
exported per second, the profiler's own CPU and the spans that could not be held.

The profiler's CPU is every agent thread's and every py-spy run's, per part
(:class:`~otel_adaprof.instrumentation.observe.agent_cpu.AgentCpu`), and only what
the window's config version used; so are its samples and sampling rates.

    >>> from otel_adaprof.instrumentation.observe.observer import Counts, WindowObserver
    >>> obs = WindowObserver(counts=lambda: Counts())
    >>> state = obs.close_window(now=obs.window_start + 5.0)
    >>> state.window_seconds, state.markers_per_s
    (5.0, 0.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import psutil

from otel_adaprof.instrumentation.observe.agent_cpu import AgentCpu
from otel_adaprof.protocol import MAX_WINDOW_SECONDS, ChangeSignals, ObservedState

#: ``(behind events, requested Hz, effective Hz)`` of one config version's window.
Rates = tuple[int, float, float]


@dataclass(frozen=True)
class Counts:
    """Monotonic counters of the agent; the observer reports their per-window change."""

    spans: int = 0
    markers: int = 0
    samples: int = 0
    bytes_exported: int = 0
    profiler_cpu_s: float = 0.0
    queue_drops: int = 0
    export_failures: int = 0
    slow_spans: int = 0
    slow_spans_sampled: int = 0
    slow_span_samples: int = 0
    burst_s: float = 0.0
    glimpse_s: float = 0.0
    changes: int = 0
    profile_changes: int = 0
    new_code: int = 0

    def minus(self, other: Counts) -> Counts:
        """Field-wise difference (never negative: counters restart after a fork)."""
        return Counts(
            **{f.name: max(0, getattr(self, f.name) - getattr(other, f.name)) for f in fields(self)}
        )


class WindowObserver:
    """Turns counters and psutil readings into one :class:`ObservedState` per window."""

    def __init__(
        self,
        counts: Callable[[], Counts],
        agent_threads: Callable[[], list[int]] = list,
        signals: Callable[[int, int], ChangeSignals] | None = None,
        cpu: AgentCpu | None = None,
        rates: Callable[[int], Rates] | None = None,
    ) -> None:
        self._counts = counts
        self._agent_threads = agent_threads
        #: The change signals now, given the changes and profile changes counted in
        #: the window.
        self._signals = signals
        self._agent_cpu = cpu
        self._rates = rates
        self._proc = psutil.Process()
        self.poll_rtt_ms: float | None = None
        self._start_window(time.time())

    def _start_window(self, now: float) -> None:
        self.window_start = now
        self._mono = time.monotonic()
        self._base = self._counts()
        self._cpu = self._process_cpu()
        self._threads_cpu = self._thread_cpu()
        psutil.cpu_percent(interval=None)  # starts the machine-wide measurement

    def _process_cpu(self) -> float:
        times = self._proc.cpu_times()
        return float(times.user + times.system)

    def _thread_cpu(self) -> float:
        if self._agent_cpu is not None:
            return 0.0
        wanted = set(self._agent_threads())
        if not wanted:
            return 0.0
        try:
            return sum(t.user_time + t.system_time for t in self._proc.threads() if t.id in wanted)
        except psutil.Error:
            return 0.0

    def close_window(
        self, now: float | None = None, *, version: int = 0, samples: int | None = None
    ) -> ObservedState:
        """The figures of the window that ends now; the next window starts.

        ``version`` is the config version the window ran under: CPU and rates of other
        versions are left out; ``samples`` is the window's count of CPU samples of that
        version (the histogram's total), else the store's counter is used.
        """
        wall_now = now if now is not None else time.time()
        elapsed = time.monotonic() - self._mono if now is None else wall_now - self.window_start
        seconds = min(MAX_WINDOW_SECONDS, max(1e-3, elapsed))
        diff = self._counts().minus(self._base)
        process_cpu = max(0.0, self._process_cpu() - self._cpu) / seconds
        agent_threads = max(0.0, self._thread_cpu() - self._threads_cpu)
        breakdown: dict[str, float] = {}
        profiler_cpu = diff.profiler_cpu_s + agent_threads
        if self._agent_cpu is not None:
            self._agent_cpu.checkpoint(version)
            breakdown = self._agent_cpu.take(version)
            profiler_cpu = sum(breakdown.values())
        behind, requested, effective = self._rates(version) if self._rates else (0, 0.0, 0.0)
        sample_count = diff.samples if samples is None else samples
        try:
            memory = self._proc.memory_info().rss
            node_memory = psutil.virtual_memory().percent / 100.0
        except psutil.Error:
            memory, node_memory = 0, 0.0
        state = ObservedState(
            window_start=max(0.0, self.window_start),
            window_seconds=seconds,
            process_cpu=min(1024.0, process_cpu),
            node_cpu=min(1.0, psutil.cpu_percent(interval=None) / 100.0),
            process_memory_bytes=memory,
            node_memory=min(1.0, node_memory),
            poll_rtt_ms=self.poll_rtt_ms,
            spans_per_s=diff.spans / seconds,
            markers_per_s=diff.markers / seconds,
            samples_per_s=sample_count / seconds,
            bytes_exported_per_s=diff.bytes_exported / seconds,
            profiler_cpu_seconds=profiler_cpu,
            queue_drops=diff.queue_drops,
            export_failures=diff.export_failures,
            pyspy_behind_events=behind,
            requested_rate_hz=requested,
            effective_rate_hz=effective,
            profiler_cpu_breakdown=breakdown,
            change_signals=(
                self._signals(diff.changes, diff.profile_changes)
                if self._signals is not None
                else ChangeSignals(changes=diff.changes, profile_changes=diff.profile_changes)
            ).model_copy(update={"new_code": diff.new_code}),
            burst_seconds=min(diff.burst_s, seconds),
            glimpse_seconds=min(diff.glimpse_s, diff.burst_s, seconds),
            slow_spans=diff.slow_spans,
            slow_spans_sampled=min(diff.slow_spans_sampled, diff.slow_spans),
            slow_span_samples=diff.slow_span_samples,
        )
        self._start_window(wall_now)
        return state
