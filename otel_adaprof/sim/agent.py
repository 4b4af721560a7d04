"""A simulated agent: one window of a phase under some params → a real poll request.

The report is a :class:`~otel_adaprof.protocol.PollRequest` with an
:class:`~otel_adaprof.protocol.ObservedState` and a
:class:`~otel_adaprof.protocol.StackHistogram`, exactly what a real agent sends, so the
controller-side code (features, reward) cannot tell the difference.

Samples reach the report as they reach a real agent. In py-spy's world py-spy runs in
segments planned for the rate
(:func:`~otel_adaprof.instrumentation.profiler.supervisor.planned_segment_s`: 10 s at
1–20 Hz, 4 s at 50 Hz, 2 s at 100 Hz), a segment's samples come in when it ends or is
cut (a new rate), and a window reports those that came in during it: at 10 Hz a window
of 3 s may report none, the next one ten seconds' worth. In the native profiler's world
(``calib`` of :func:`~otel_adaprof.sim.physics.calibration` ``("native")``) the sampler
is a thread of the process: new params apply at its next tick and a window's close takes
in every sample taken during it.

Usage::

    >>> import numpy as np
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> agent = SimulatedAgent("shop", np.random.default_rng(0))
    >>> phase = SCENARIOS["hot-path"].phases[0]
    >>> first = agent.report(Params(sampling_interval_ms=100), 3, phase, window_start=0.0)
    >>> first.config_version, first.stacks  # a 10 s segment at 10 Hz: nothing in yet
    (3, None)
    >>> agent.report(Params(sampling_interval_ms=100), 3, phase, 5.0).stacks.total_samples > 0
    True
    >>> native = SimulatedAgent("shop", np.random.default_rng(0), calib=calibration("native"))
    >>> native.identity.profiler_backend.value
    'native'
    >>> native.report(Params(sampling_interval_ms=100), 3, phase, 0.0).stacks.total_samples > 0
    True
"""

from __future__ import annotations

import zlib
from collections import Counter
from functools import lru_cache

import numpy as np

from otel_adaprof.instrumentation.control.reflex import REST_FACTOR, burst_params
from otel_adaprof.instrumentation.profiler.supervisor import planned_segment_s
from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    MAX_STACKS,
    AgentIdentity,
    ObservedState,
    PollRequest,
    ProfilerBackend,
    StackCount,
    StackHistogram,
)
from otel_adaprof.sim.physics import (
    BYTES_NOISE,
    CPU_NOISE,
    Calibration,
    calibration,
    window_truth,
)
from otel_adaprof.sim.scenario import WINDOW_SECONDS, Phase

#: Where the attribution bias puts the samples it takes from the workload.
BIAS_STACK = "main (app.py:12);serve_forever (server.py:88);select (selectors.py:468)"

_CALLERS = ["main (app.py:12)", "serve_forever (server.py:88)", "handle (server.py:140)"]


def stack_for(function: str, variant: int, frames: int) -> str:
    """A collapsed stack ending in ``function`` (``variant`` changes the line numbers).

    >>> stack_for("work", 0, 5).split(";")[-2:]
    ['mid_1 (mid.py:11)', 'work (work.py:...)']
    """
    line = 10 + zlib.crc32(function.encode()) % 400 + 7 * variant
    module = function.split("_")[0]
    mids = [f"mid_{i} (mid.py:{10 + i})" for i in range(1, max(1, frames - 4) + 1)]
    return ";".join([*_CALLERS, *mids, f"{function} ({module}.py:{line})"])


@lru_cache(maxsize=4096)
def _stacks(
    functions: tuple[tuple[str, float], ...], frames: int, depth: int
) -> tuple[tuple[str, ...], np.ndarray]:
    names: list[str] = []
    weights: list[float] = []
    for fn, w in functions:
        for variant in (0, 1):
            frames_list = stack_for(fn, variant, frames).split(";")
            names.append(";".join(frames_list[-depth:]))
            weights.append(w / 2.0)
    probs = np.asarray(weights, dtype=float)
    return tuple(names), probs / probs.sum()


class SimulatedAgent:
    """One simulated process of a service, reporting like a real agent."""

    def __init__(
        self,
        service: str,
        rng: np.random.Generator,
        instance: str = "sim-1",
        window_s: float = WINDOW_SECONDS,
        calib: Calibration | None = None,
    ) -> None:
        self.rng = rng
        self.window_s = window_s
        #: The world: what the profiler costs and yields (py-spy's by default).
        self.calib = calib or calibration()
        #: Whether samples come in by segments (py-spy) or at each window's close.
        self.segments = self.calib.profiler == "py-spy"
        # the py-spy segment in flight: its rate (0: none), seconds left, samples taken
        self._segment_rate = 0.0
        self._segment_left = 0.0
        self._pending: Counter[str] = Counter()
        self._last_params: Params | None = None
        self._last_phase: str | None = None
        self._burst_left = 0.0
        self._burst_ran = 0.0
        self._rest_left = 0.0
        self._false_alarm = False
        self.identity = AgentIdentity(
            service=service,
            instance_id=instance,
            host="sim",
            pid=1,
            profiler_backend=ProfilerBackend(self.calib.profiler),
        )

    def _seconds_by_rate(self, params: Params, phase: Phase) -> list[tuple[float, float, bool]]:
        """``(seconds, rate)`` spent in this window: a lagging segment at the old rate
        after a params change, the agent's reflex burst after a phase change, the rest
        at the params' rate; the flag marks burst time."""
        secs = self.window_s
        parts: list[tuple[float, float, bool]] = []
        old = self._last_params
        if old is not None and old != params:
            lag = min(secs, self.calib.segment_lag_s)
            parts.append((lag, float(old.rate_hz), False))
            secs -= lag
        sensitivity = float(getattr(params, "burst_sensitivity", 0.0) or 0.0)
        changed = self._last_phase is not None and phase.name != self._last_phase
        false_alarm = self.calib.false_alarm_rate(sensitivity) * self.window_s
        self._false_alarm = not changed and bool(self.rng.random() < min(0.9, false_alarm))
        # As the agent's reflex: a burst of fixed length, then a rest as long (REST_FACTOR)
        # in which a signal starts nothing.
        # New params with shorter bursts (a retreat's glimpse) cut a running burst.
        length = float(getattr(params, "burst_seconds", 0.0) or 0.0)
        if self._burst_left > 0 and self._burst_ran + self._burst_left > length:
            self._burst_left = max(0.0, length - self._burst_ran)
            self._rest_left = REST_FACTOR * (self._burst_ran + self._burst_left)
        idle = self._burst_left <= 0 and self._rest_left <= 0
        if sensitivity > 0 and (changed or self._false_alarm) and idle:
            self._burst_left = length
            self._burst_ran = 0.0
            self._rest_left = REST_FACTOR * self._burst_left
            delay = min(secs, self.calib.reflex_delay_s)  # the change signals' delay
            parts.append((delay, float(params.rate_hz), False))
            secs -= delay
        elif self._burst_left <= 0:
            self._rest_left = max(0.0, self._rest_left - secs)
        if self._burst_left > 0 and sensitivity > 0:
            burst = min(secs, self._burst_left)
            interval = int(getattr(params, "burst_interval_ms", 10) or 10)
            parts.append((burst, 1000.0 / interval, True))
            self._burst_left -= burst
            self._burst_ran += burst
            secs -= burst
            if self._burst_left <= 0:
                self._rest_left = max(0.0, self._rest_left - secs)
        parts.append((secs, float(params.rate_hz), False))
        return [(t, r, b) for t, r, b in parts if t > 0]

    def _delivered(
        self, params: Params, phase: Phase, parts: list[tuple[float, float, bool]]
    ) -> Counter[str]:
        """The samples that come in during this window: py-spy's segments that end in
        it, or are cut by a new rate, in the order of ``parts``; without segments (the
        native profiler) every sample taken in it."""
        out: Counter[str] = Counter()
        if not self.segments:
            for seconds, rate, _burst in parts:
                if rate > 0:
                    out.update(self._sample(params, phase, rate, seconds))
            return out
        for seconds, rate, _burst in parts:
            if rate != self._segment_rate:  # a new rate: the running segment is cut
                out.update(self._pending)
                self._pending = Counter()
                self._segment_rate = rate
                self._segment_left = float(planned_segment_s(rate)) if rate > 0 else 0.0
            left = seconds if rate > 0 else 0.0
            while left > 1e-9:
                step = min(left, self._segment_left)
                self._pending.update(self._sample(params, phase, rate, step))
                left -= step
                self._segment_left -= step
                if self._segment_left <= 1e-9:  # the segment ends: its samples come in
                    out.update(self._pending)
                    self._pending = Counter()
                    self._segment_left = float(planned_segment_s(rate))
        return out

    def _sample(self, params: Params, phase: Phase, rate: float, seconds: float) -> Counter[str]:
        """Samples the profiler takes in ``seconds`` at ``rate`` (workload stacks, a share
        of them moved onto :data:`BIAS_STACK` by the attribution bias)."""
        rng = self.rng
        n = int(rng.poisson(seconds * window_truth(params, phase, rate, self.calib).samples_per_s))
        out: Counter[str] = Counter()
        if n <= 0:
            return out
        names, probs = _stacks(
            tuple(sorted(phase.functions.items())), phase.frames, params.stack_depth
        )
        moved = int(rng.binomial(n, min(0.5, self.calib.attribution_bias / 2.0)))
        for i in np.flatnonzero(counts := rng.multinomial(n - moved, probs)):
            out[names[i]] += int(counts[i])
        if moved:
            out[BIAS_STACK] += moved
        return out

    @staticmethod
    def _signals(params: Params, changed: bool, burst_s: float) -> dict[str, object]:
        """The agent's change signals and burst time, when this build reports them."""
        fields = ObservedState.model_fields
        out: dict[str, object] = {}
        if "change_signals" in fields:
            sensitive = float(getattr(params, "burst_sensitivity", 0.0) or 0.0) > 0
            out["change_signals"] = {"changes": 1 if changed and sensitive else 0}
        if "burst_seconds" in fields:
            out["burst_seconds"] = burst_s
        return out

    def report(
        self, params: Params, config_version: int, phase: Phase, window_start: float
    ) -> PollRequest:
        """Run one window of ``phase`` under ``params``; return the poll that reports it."""
        rng = self.rng
        truth = window_truth(params, phase, calib=self.calib)
        secs = self.window_s
        parts = self._seconds_by_rate(params, phase)
        burst_s = sum(t for t, _r, b in parts if b)
        changed = self._last_phase is not None and phase.name != self._last_phase
        self._last_params, self._last_phase = params, phase.name
        spy = sum(t * window_truth(params, phase, r, self.calib).sampler_cpu for t, r, _ in parts)
        spy /= secs
        # as the agent's reflex: a fast burst sets the slow-span capture aside
        burst = window_truth(burst_params(params), phase, calib=self.calib) if burst_s else None
        burst_agent = burst.agent_cpu if burst is not None else 0.0
        agent = (burst_s * burst_agent + max(0.0, secs - burst_s) * truth.agent_cpu) / secs
        came_in = self._delivered(params, phase, parts)
        n = sum(came_in.values())
        top = sorted(came_in.items(), key=lambda kv: -kv[1])[:MAX_STACKS]
        stacks = [StackCount(stack=stack, count=count) for stack, count in top]
        cpu_noise = float(rng.lognormal(0.0, CPU_NOISE))
        spans = float(rng.poisson(phase.spans_per_s * secs)) / secs
        markers = float(rng.poisson(truth.markers_per_s * secs)) / secs
        state = ObservedState(
            window_start=window_start,
            window_seconds=secs,
            process_cpu=min(1024.0, phase.cpu_load * float(rng.lognormal(0.0, 0.05))),
            node_cpu=min(1.0, phase.cpu_load / 2.0 + 0.05),
            process_memory_bytes=int(120e6 + 2e6 * phase.threads),
            node_memory=0.4,
            poll_rtt_ms=float(rng.uniform(0.5, 3.0)),
            spans_per_s=spans,
            markers_per_s=markers,
            samples_per_s=n / secs,
            bytes_exported_per_s=truth.bytes_per_s * float(rng.lognormal(0.0, BYTES_NOISE)),
            profiler_cpu_seconds=(spy + agent) * cpu_noise * secs,
            **self._signals(params, changed or self._false_alarm, burst_s),
        )
        histogram = StackHistogram(stacks=stacks, total_samples=n, depth=params.stack_depth)
        return PollRequest(
            agent=self.identity,
            config_version=config_version,
            window=state,
            stacks=histogram if n > 0 else None,
        )
