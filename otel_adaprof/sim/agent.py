"""A simulated agent: one window of a phase under some params → a real poll request.

The report is a :class:`~otel_adaprof.protocol.PollRequest` with an
:class:`~otel_adaprof.protocol.ObservedState` and a
:class:`~otel_adaprof.protocol.StackHistogram`, exactly what a real agent sends, so the
controller-side code (features, reward) cannot tell the difference.

Usage::

    >>> import numpy as np
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> agent = SimulatedAgent("shop", np.random.default_rng(0))
    >>> req = agent.report(Params(), 3, SCENARIOS["hot-path"].phases[0], window_start=0.0)
    >>> req.config_version, req.stacks.total_samples > 0
    (3, True)
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

from otel_adaprof.instrumentation.control.reflex import REST_FACTOR
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
from otel_adaprof.sim.physics import BYTES_NOISE, CPU_NOISE, calibration, window_truth
from otel_adaprof.sim.scenario import WINDOW_SECONDS, Phase

#: Where the attribution bias puts the samples it takes from the workload.
BIAS_STACK = "main (app.py:12);serve_forever (server.py:88);select (selectors.py:468)"
#: Seconds from a change until the agent's reflex fires (its change signals' delay).
REFLEX_DELAY_S = 1.0

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

    def __init__(self, service: str, rng: np.random.Generator, instance: str = "sim-1") -> None:
        self.rng = rng
        self._last_params: Params | None = None
        self._last_phase: str | None = None
        self._burst_left = 0.0
        self._rest_left = 0.0
        self._false_alarm = False
        self.identity = AgentIdentity(
            service=service,
            instance_id=instance,
            host="sim",
            pid=1,
            profiler_backend=ProfilerBackend.PY_SPY,
        )

    def _seconds_by_rate(self, params: Params, phase: Phase) -> list[tuple[float, float, bool]]:
        """``(seconds, rate)`` spent in this window: a lagging segment at the old rate
        after a params change, the agent's reflex burst after a phase change, the rest
        at the params' rate; the flag marks burst time."""
        secs = WINDOW_SECONDS
        parts: list[tuple[float, float, bool]] = []
        old = self._last_params
        if old is not None and old != params:
            lag = min(secs, calibration().segment_lag_s)
            parts.append((lag, float(old.rate_hz), False))
            secs -= lag
        sensitivity = float(getattr(params, "burst_sensitivity", 0.0) or 0.0)
        changed = self._last_phase is not None and phase.name != self._last_phase
        false_alarm = calibration().false_alarm_rate(sensitivity) * WINDOW_SECONDS
        self._false_alarm = not changed and bool(self.rng.random() < min(0.9, false_alarm))
        # As the agent's reflex: a burst of fixed length, then a rest as long (REST_FACTOR)
        # in which a signal starts nothing.
        idle = self._burst_left <= 0 and self._rest_left <= 0
        if sensitivity > 0 and (changed or self._false_alarm) and idle:
            self._burst_left = float(getattr(params, "burst_seconds", 0.0) or 0.0)
            self._rest_left = REST_FACTOR * self._burst_left
            delay = min(secs, REFLEX_DELAY_S)
            parts.append((delay, float(params.rate_hz), False))
            secs -= delay
        elif self._burst_left <= 0:
            self._rest_left = max(0.0, self._rest_left - secs)
        if self._burst_left > 0 and sensitivity > 0:
            burst = min(secs, self._burst_left)
            interval = int(getattr(params, "burst_interval_ms", 10) or 10)
            parts.append((burst, 1000.0 / interval, True))
            self._burst_left -= burst
            secs -= burst
            if self._burst_left <= 0:
                self._rest_left = max(0.0, self._rest_left - secs)
        parts.append((secs, float(params.rate_hz), False))
        return [(t, r, b) for t, r, b in parts if t > 0]

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
        truth = window_truth(params, phase)
        secs = WINDOW_SECONDS
        parts = self._seconds_by_rate(params, phase)
        burst_s = sum(t for t, _r, b in parts if b)
        changed = self._last_phase is not None and phase.name != self._last_phase
        self._last_params, self._last_phase = params, phase.name
        expected = sum(t * window_truth(params, phase, r).samples_per_s for t, r, _ in parts)
        spy = sum(t * window_truth(params, phase, r).pyspy_cpu for t, r, _ in parts) / secs
        n = int(rng.poisson(expected))
        stacks: list[StackCount] = []
        if n > 0:
            names, probs = _stacks(
                tuple(sorted(phase.functions.items())), phase.frames, params.stack_depth
            )
            bias = min(0.5, calibration().attribution_bias / 2.0)
            moved = int(rng.binomial(n, bias))
            counts = rng.multinomial(n - moved, probs)
            order = np.argsort(-counts)[: MAX_STACKS - 1]
            stacks = [StackCount(stack=names[i], count=int(counts[i])) for i in order if counts[i]]
            if moved:
                stacks.append(StackCount(stack=BIAS_STACK, count=moved))
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
            profiler_cpu_seconds=(spy + truth.agent_cpu) * cpu_noise * secs,
            **self._signals(params, changed or self._false_alarm, burst_s),
        )
        histogram = StackHistogram(stacks=stacks, total_samples=n, depth=params.stack_depth)
        return PollRequest(
            agent=self.identity,
            config_version=config_version,
            window=state,
            stacks=histogram if n > 0 else None,
        )
