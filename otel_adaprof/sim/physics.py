"""What profiling costs and observes in the simulator, calibrated on real processes.

Nothing here comes from the controller's prior: the profiler's CPU is the measured
cost model (:func:`otel_adaprof.cost_model.load_cost_model`, ``bench/cost_model.py``)
at the service's thread count; what a rate yields in samples, the lag before new
params show, and the attribution bias come from ``bench/sim_calibration.py`` (the
packaged ``calibration.json``, measured on the demo service under the real agent).
Measurement noise: ±8 % log-normal on CPU, ±5 % on bytes.

Usage::

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> truth = window_truth(Params(sampling_interval_ms=10), SCENARIOS["hot-path"].phases[0])
    >>> truth.pyspy_cpu > window_truth(Params(sampling_interval_ms=100),
    ...                                SCENARIOS["hot-path"].phases[0]).pyspy_cpu
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from otel_adaprof.cost_model import load_cost_model
from otel_adaprof.params import Category, Params
from otel_adaprof.sim.scenario import Phase

#: Log-normal sigma of measured CPU and bytes.
CPU_NOISE = 0.08
BYTES_NOISE = 0.05
#: Agent CPU per exported span and per marker (seconds), bytes per span and per sample:
#: small next to the profiler's, kept as the simulator's own constants.
AGENT_CPU_PER_SPAN_S = 15e-6
AGENT_CPU_PER_MARKER_S = 40e-6
BYTES_PER_SPAN = 400.0
BYTES_PER_SAMPLE = 24.0
BYTES_PER_FRAME = 6.0


@dataclass(frozen=True)
class Calibration:
    """Measured on real processes by ``bench/sim_calibration.py``."""

    sample_yield: float  # samples/s per Hz per core of workload CPU
    attribution_bias: float  # L1 error no sample count removes
    segment_lag_s: float  # mean delay before new params show in the samples
    false_alarms_per_s: float = 0.0  # reflex firings without a change, at 4 std

    def false_alarm_rate(self, sensitivity: float) -> float:
        """Reflex firings per second without a change at ``sensitivity`` (baseline std):
        measured at 4 std, falling as ``exp(−(s − 4) / 2)`` (an assumed Gaussian-like
        tail; only 4 std was measured)."""
        if sensitivity <= 0:
            return 0.0
        return self.false_alarms_per_s * math.exp(-(sensitivity - 4.0) / 2.0)


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    """The packaged calibration (``otel_adaprof/sim/calibration.json``)."""
    data = json.loads(resources.files("otel_adaprof.sim").joinpath("calibration.json").read_text())
    return Calibration(
        sample_yield=float(data.get("sample_yield") or 1.0),
        attribution_bias=float(data.get("attribution_bias") or 0.0),
        segment_lag_s=float(data.get("segment_lag_s") or 0.0),
        false_alarms_per_s=float(data.get("reflex_false_alarms_per_s_at_4std") or 0.0),
    )


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
        share *= min(1.0, phase.slow_share * 100.0 / params.marker_trigger.min_duration_ms)
    return share


def window_truth(params: Params, phase: Phase, rate_hz: float | None = None) -> WindowTruth:
    """Noise-free cost and volumes of running ``params`` during ``phase`` (at
    ``rate_hz`` instead of the params' rate, for a burst or a lagging segment)."""
    rate = float(params.rate_hz if rate_hz is None else rate_hz)
    frames = min(params.stack_depth, phase.frames)
    mode = str(getattr(params, "profile_mode", "wall"))
    spy = load_cost_model().profiler_cores(rate, int(phase.threads), mode)
    kept = phase.spans_per_s * params.trace_ratio
    markers = kept * marker_share(params, phase)
    agent = kept * AGENT_CPU_PER_SPAN_S + markers * AGENT_CPU_PER_MARKER_S
    samples = rate * min(1.0, phase.cpu_load * calibration().sample_yield)
    data = kept * BYTES_PER_SPAN + samples * (BYTES_PER_SAMPLE + BYTES_PER_FRAME * frames)
    return WindowTruth(spy, agent, samples, kept, markers, data)
