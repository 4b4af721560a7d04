"""What profiling costs and observes in the simulator: the calibrated cost model.

The same constants as the controller's prior
(:mod:`otel_adaprof.controller.policy.cost`, where the measurements are cited), plus
what the controller's prior cannot know and must learn from reports: the service's
thread count and real stack depth (py-spy's per-sample cost grows with both), and
measurement noise (±8 % log-normal on CPU, ±5 % on bytes).

Usage::

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> truth = window_truth(Params(sampling_interval_ms=10), SCENARIOS["hot-path"].phases[0])
    >>> round(truth.pyspy_cpu, 3), round(truth.samples_per_s)
    (0.043, 50)
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_adaprof.controller.policy.cost import (
    AGENT_CPU_PER_MARKER_S,
    AGENT_CPU_PER_SPAN_S,
    BYTES_PER_FRAME,
    BYTES_PER_SAMPLE,
    BYTES_PER_SPAN,
    pyspy_cpu,
)
from otel_adaprof.params import Category, Params
from otel_adaprof.sim.scenario import Phase

#: Log-normal sigma of measured CPU and bytes.
CPU_NOISE = 0.08
BYTES_NOISE = 0.05
#: Share of spans above a latency percentile p is (1 - p/100) by definition.


@dataclass(frozen=True)
class WindowTruth:
    """Expected (noise-free) figures of one window under some params."""

    pyspy_cpu: float  # fraction of one core
    agent_cpu: float  # fraction of one core
    samples_per_s: float
    kept_spans_per_s: float
    markers_per_s: float
    bytes_per_s: float


def marker_share(params: Params, phase: Phase) -> float:
    """Share of kept spans that become markers in ``phase`` (true category mix)."""
    total = sum(phase.categories.values()) or 1.0
    share = (
        sum(w for c, w in phase.categories.items() if Category(c) in params.span_filters.categories)
        / total
    )
    if params.span_filters.errors_only:
        share *= phase.error_share
    pct = params.marker_trigger.latency_percentile
    if pct is not None:
        share *= 1.0 - pct / 100.0
    if params.marker_trigger.min_duration_ms > 0:
        # slow_share is the share over 100 ms; shorter thresholds catch more, linearly
        share *= min(1.0, phase.slow_share * 100.0 / params.marker_trigger.min_duration_ms)
    return share


def window_truth(params: Params, phase: Phase) -> WindowTruth:
    """Noise-free cost and volumes of running ``params`` during ``phase``."""
    frames = min(params.stack_depth, phase.frames)
    spy = pyspy_cpu(params.rate_hz, frames, phase.threads)
    kept = phase.spans_per_s * params.trace_ratio
    markers = kept * marker_share(params, phase)
    agent = kept * AGENT_CPU_PER_SPAN_S + markers * AGENT_CPU_PER_MARKER_S
    samples = params.rate_hz * min(1.0, phase.cpu_load)
    data = kept * BYTES_PER_SPAN + samples * (BYTES_PER_SAMPLE + BYTES_PER_FRAME * frames)
    return WindowTruth(spy, agent, samples, kept, markers, data)
