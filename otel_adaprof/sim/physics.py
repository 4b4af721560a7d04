"""What profiling costs and observes in the simulator, calibrated on real processes.

Nothing here comes from the controller's prior. In py-spy's world (the packaged
``calibration.json``) the profiler's CPU is the measured cost model
(:func:`otel_adaprof.cost_model.load_cost_model`, ``bench/cost_model.py``) at the
service's thread count and busy share (its process CPU: a service busy a fifth of the
time costs py-spy far less than one always busy, which the controller's prior plans
for). In the native profiler's (``calibration_native.json``) it is what the benchmark's
native runs measured: a fixed part while the sampler runs plus a part per Hz, constant
in the process scope and, in the requests scope, in proportion to the service's own
CPU (the sampler ticks only while a request is open), at most the process scope's. What a rate
yields in samples, the lag before new params show, the attribution bias, the agent's
other threads and the demo service's own CPU per phase come from
``bench/sim_calibration.py`` for either world.
Measurement noise: ±8 % log-normal on CPU, ±5 % on bytes.

Usage::

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> truth = window_truth(Params(sampling_interval_ms=10), SCENARIOS["hot-path"].phases[0])
    >>> truth.sampler_cpu > window_truth(Params(sampling_interval_ms=100),
    ...                                  SCENARIOS["hot-path"].phases[0]).sampler_cpu
    True
    >>> from otel_adaprof.sim.scenario import demo_scenario
    >>> native = calibration("native")
    >>> phase = demo_scenario(calib=native).phases[0]  # the demo service: 0.07 of a core
    >>> scoped = window_truth(Params(sampling_interval_ms=10, sample_scope="requests"), phase,
    ...                       calib=native)
    >>> scoped.sampler_cpu < window_truth(Params(sampling_interval_ms=10), phase,
    ...                                   calib=native).sampler_cpu
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_adaprof.cost_model import SLOW_SPAN_CORE_SHARE, load_cost_model
from otel_adaprof.params import Category, Params
from otel_adaprof.sim.calibration import Calibration, calibration
from otel_adaprof.sim.scenario import Phase

__all__ = [
    "Calibration",
    "WindowTruth",
    "calibration",
    "marker_share",
    "sampler_cores",
    "window_truth",
]

#: Log-normal sigma of measured CPU and bytes.
CPU_NOISE = 0.08
BYTES_NOISE = 0.05
#: Agent CPU per exported span and per marker (seconds) when the calibration has no
#: measured figure (``agent_cpu_per_span_s``), bytes per span and per sample: the
#: simulator's own constants.
AGENT_CPU_PER_SPAN_S = 15e-6
AGENT_CPU_PER_MARKER_S = 40e-6
BYTES_PER_SPAN = 400.0
BYTES_PER_SAMPLE = 24.0
BYTES_PER_FRAME = 6.0


@dataclass(frozen=True)
class WindowTruth:
    """Expected (noise-free) figures of one window under some params."""

    sampler_cpu: float  # the profiler's own, fraction of one core
    agent_cpu: float  # the agent's other threads, fraction of one core
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


def sampler_cores(params: Params, phase: Phase, rate: float, calib: Calibration) -> float:
    """The profiler's own CPU (cores) at ``rate`` Hz under ``params`` during ``phase``,
    in ``calib``'s world (see the module's docstring).

    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> phase, native = SCENARIOS["hot-path"].phases[0], calibration("native")
    >>> sampler_cores(Params(), phase, 0.0, native)
    0.0
    >>> at_100 = sampler_cores(Params(), phase, 100.0, native)
    >>> round((at_100 - native.sampler_cores_fixed) / native.sampler_cores_per_hz)
    100
    """
    if rate <= 0:
        return 0.0
    busy = min(1.0, max(0.0, phase.cpu_load))
    if calib.sampler_cores_per_hz is None:
        mode = str(getattr(params, "profile_mode", "wall"))
        return load_cost_model().profiler_cores(rate, int(phase.threads), mode, busy=busy)
    per_hz = calib.sampler_cores_per_hz
    if params.sample_scope == "requests" and calib.requests_cores_per_hz_core is not None:
        # never more ticks than the process scope's: a request open all the time
        per_hz = min(per_hz, busy * calib.requests_cores_per_hz_core)
    return calib.sampler_cores_fixed + rate * per_hz


def window_truth(
    params: Params, phase: Phase, rate_hz: float | None = None, calib: Calibration | None = None
) -> WindowTruth:
    """Noise-free cost and volumes of running ``params`` during ``phase`` (at
    ``rate_hz`` instead of the params' rate, for a burst or a lagging segment) in
    ``calib``'s world (default: py-spy's)."""
    calib = calib or calibration()
    rate = float(params.rate_hz if rate_hz is None else rate_hz)
    frames = min(params.stack_depth, phase.frames)
    spy = sampler_cores(params, phase, rate, calib)
    kept = phase.spans_per_s * params.trace_ratio
    markers = kept * marker_share(params, phase)
    if calib.agent_cpu_per_span_s is None:
        agent = kept * AGENT_CPU_PER_SPAN_S + markers * AGENT_CPU_PER_MARKER_S
    else:  # measured: every agent thread but py-spy's, per span (markers included)
        agent = kept * calib.agent_cpu_per_span_s
    if params.slow_span_interval_ms > 0:  # held to the agent's share of a core for it
        agent += min(SLOW_SPAN_CORE_SHARE, kept * calib.capture_cpu_per_span_s)
    samples = rate * min(1.0, phase.cpu_load * calib.sample_yield)
    data = kept * BYTES_PER_SPAN + samples * (BYTES_PER_SAMPLE + BYTES_PER_FRAME * frames)
    return WindowTruth(spy, agent, samples, kept, markers, data)
