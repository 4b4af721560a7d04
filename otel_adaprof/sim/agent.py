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
from otel_adaprof.sim.physics import BYTES_NOISE, CPU_NOISE, window_truth
from otel_adaprof.sim.scenario import WINDOW_SECONDS, Phase

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
        self.identity = AgentIdentity(
            service=service,
            instance_id=instance,
            host="sim",
            pid=1,
            profiler_backend=ProfilerBackend.PY_SPY,
        )

    def report(
        self, params: Params, config_version: int, phase: Phase, window_start: float
    ) -> PollRequest:
        """Run one window of ``phase`` under ``params``; return the poll that reports it."""
        rng = self.rng
        truth = window_truth(params, phase)
        secs = WINDOW_SECONDS
        n = int(rng.poisson(truth.samples_per_s * secs)) if params.profiling_enabled else 0
        stacks: list[StackCount] = []
        if n > 0:
            names, probs = _stacks(
                tuple(sorted(phase.functions.items())), phase.frames, params.stack_depth
            )
            counts = rng.multinomial(n, probs)
            order = np.argsort(-counts)[:MAX_STACKS]
            stacks = [StackCount(stack=names[i], count=int(counts[i])) for i in order if counts[i]]
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
            profiler_cpu_seconds=(truth.pyspy_cpu + truth.agent_cpu) * cpu_noise * secs,
        )
        histogram = StackHistogram(stacks=stacks, total_samples=n, depth=params.stack_depth)
        return PollRequest(
            agent=self.identity,
            config_version=config_version,
            window=state,
            stacks=histogram if n > 0 else None,
        )
