"""Cost model: the profiler CPU and bytes per second an action is expected to cost.

A calibrated prior, corrected by what the agent measured. Where the numbers come from:

* Profiler CPU (py-spy and every agent thread it keeps busy) comes from the measured
  cost model, :func:`otel_adaprof.cost_model.load_cost_model` (``bench/cost_model.py``),
  at :data:`TYPICAL_THREADS` threads, with the fits of the agent's profiler backend
  (the native profiler's own, measured side by side with py-spy's); slow-span capture
  from the same model.
* The agent's own threads: about 15 µs of CPU per exported span and 40 µs per marker
  (stack join), a typical OpenTelemetry SDK batch-export cost.
* Bytes: about 400 bytes per exported span (OTLP protobuf, a few attributes) and
  ``24 + 6 · frames`` bytes per stack sample (interned frames, delta-encoded).

The prior is then scaled by the ratio measured/predicted of the last profiling windows
(exponentially averaged), which absorbs what the prior cannot know: thread count, real
stack depth, machine speed.

Usage::

    >>> from otel_adaprof.params import Params
    >>> est = expected_cost(Params(sampling_interval_ms=10), spans_per_s=0.0)
    >>> slow = expected_cost(Params(sampling_interval_ms=100), spans_per_s=0.0)
    >>> est.cpu_fraction > slow.cpu_fraction
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_adaprof.cost_model import load_cost_model
from otel_adaprof.params import ALL_CATEGORIES, Params

#: Frames a typical Python web service stack has (used when nothing is measured yet).
TYPICAL_FRAMES = 24
#: Threads a typical Python web service runs (workers + SDK + agent).
TYPICAL_THREADS = 16
#: Share of the time a slow span is alive on some thread (for slow-span capture's cost).
SLOW_SPAN_BUSY = 0.2
#: The profiler backend assumed when the agent's is not known (py-spy: the dearer, and
#: the one the default fits were measured with).
DEFAULT_BACKEND = "py-spy"
#: Agent CPU seconds per exported span.
AGENT_CPU_PER_SPAN_S = 15e-6
#: Agent CPU seconds per marker (joining samples to the span).
AGENT_CPU_PER_MARKER_S = 40e-6
#: Bytes exported per span.
BYTES_PER_SPAN = 400.0
#: Bytes per stack sample: fixed part and per frame.
BYTES_PER_SAMPLE = 24.0
BYTES_PER_FRAME = 6.0


def pyspy_cpu(
    rate_hz: float,
    frames: float,
    threads: float = TYPICAL_THREADS,
    mode: str = "cpu",
    backend: str = DEFAULT_BACKEND,
) -> float:
    """Profiler CPU (fraction of one core) at ``rate_hz``, from the measured cost model
    (:mod:`otel_adaprof.cost_model`) of the agent's profiler ``backend`` (py-spy's unless
    the model has that backend's own); ``frames`` is kept for callers, the fit does not
    depend on it.

    >>> pyspy_cpu(100, 30) > pyspy_cpu(10, 30) > pyspy_cpu(0, 30)
    True
    >>> pyspy_cpu(100, 30, backend="native") < pyspy_cpu(100, 30) / 5
    True
    """
    if rate_hz <= 0:
        return 0.0
    return load_cost_model().for_backend(backend).profiler_cores(rate_hz, int(threads), mode)


def slow_span_cpu(params: Params) -> float:
    """Expected CPU of slow-span capture under ``params`` (:data:`SLOW_SPAN_BUSY` of the
    time a slow span is alive)."""
    interval = int(getattr(params, "slow_span_interval_ms", 0) or 0)
    if interval <= 0:
        return 0.0
    return load_cost_model().slow_span_cores(SLOW_SPAN_BUSY * 1000.0 / interval)


def profile_mode(params: Params) -> str:
    """``cpu`` or ``wall`` (``wall`` on an agent that predates ``profile_mode``)."""
    return str(getattr(params, "profile_mode", "wall"))


def marker_pass_share(params: Params) -> float:
    """Prior share of kept spans that become markers under the filters and trigger."""
    share = len(params.span_filters.categories) / len(ALL_CATEGORIES)
    if params.span_filters.errors_only:
        share *= 0.05
    pct = params.marker_trigger.latency_percentile
    if pct is not None:
        share *= 1.0 - pct / 100.0
    if params.marker_trigger.min_duration_ms > 0:
        share *= 0.2
    return share


@dataclass(frozen=True)
class CostEstimate:
    """Expected profiler CPU (fraction of one core) and bytes exported per second."""

    cpu_fraction: float
    bytes_per_s: float


def expected_cost(
    params: Params,
    *,
    spans_per_s: float,
    active_share: float = 1.0,
    frames: float = TYPICAL_FRAMES,
    calibration: float = 1.0,
    backend: str = DEFAULT_BACKEND,
) -> CostEstimate:
    """Prior cost of running ``params`` on a service with ``spans_per_s`` spans,
    threads busy ``active_share`` of the time, ``frames``-deep stacks, with the agent's
    profiler ``backend``; the profiler's part scaled by ``calibration`` (measured /
    predicted of recent windows)."""
    eff_frames = min(float(params.stack_depth), frames)
    mode = profile_mode(params)
    spy = pyspy_cpu(params.rate_hz, eff_frames, mode=mode, backend=backend) * calibration
    spy += slow_span_cpu(params)
    kept = spans_per_s * params.trace_ratio
    markers = kept * marker_pass_share(params)
    agent = kept * AGENT_CPU_PER_SPAN_S + markers * AGENT_CPU_PER_MARKER_S
    samples = params.rate_hz * active_share
    data = kept * BYTES_PER_SPAN + samples * (BYTES_PER_SAMPLE + BYTES_PER_FRAME * eff_frames)
    return CostEstimate(spy + agent, data)


@dataclass(frozen=True)
class CostTerms:
    """The parts of :func:`expected_cost` that depend on the params only (precomputed
    once per catalog action so a decision stays well under a millisecond)."""

    rate_hz: int
    frames: float
    spy: float  # py-spy CPU at calibration 1
    trace_ratio: float
    pass_share: float
    bytes_per_sample: float

    @classmethod
    def of(
        cls, params: Params, frames: float = TYPICAL_FRAMES, backend: str = DEFAULT_BACKEND
    ) -> CostTerms:
        """Terms of ``params`` on a service with ``frames``-deep stacks, with the agent's
        profiler ``backend``.

        >>> CostTerms.of(Params(sampling_interval_ms=0)).spy
        0.0
        """
        eff = min(float(params.stack_depth), frames)
        spy = pyspy_cpu(params.rate_hz, eff, mode=profile_mode(params), backend=backend)
        return cls(
            rate_hz=params.rate_hz,
            frames=eff,
            spy=spy + slow_span_cpu(params),
            trace_ratio=params.trace_ratio,
            pass_share=marker_pass_share(params),
            bytes_per_sample=BYTES_PER_SAMPLE + BYTES_PER_FRAME * eff,
        )

    def estimate(self, spans_per_s: float, active_share: float, calibration: float) -> CostEstimate:
        """Same figures as :func:`expected_cost`, from the precomputed terms."""
        kept = spans_per_s * self.trace_ratio
        agent = kept * (AGENT_CPU_PER_SPAN_S + self.pass_share * AGENT_CPU_PER_MARKER_S)
        data = kept * BYTES_PER_SPAN + self.rate_hz * active_share * self.bytes_per_sample
        return CostEstimate(self.spy * calibration + agent, data)
