"""Cost model: the profiler CPU and bytes per second an action is expected to cost.

A calibrated prior, corrected by what the agent measured. Where the numbers come from:

* py-spy ``--nonblocking`` CPU (fraction of one core) grows sub-linearly with the rate:
  measured on this kind of machine (2 vCPU, CPython 3.11, a CPU-bound target with a
  5-frame stack, ``py-spy record -r R -d 8``): 0.36 % at 10 Hz, 2.07 % at 100 Hz, so
  ``cpu ≈ 6.3e-4 · rate^0.76``. DESIGN.md's figures for deeper, real stacks (4–5 % at
  100 Hz, ≈30 % at 1000 Hz) are about 2x that: the per-sample cost grows with the
  frames py-spy unwinds, modelled as ``0.8 + 0.04 · frames`` (1.0 at 5 frames, 2.0 at
  30) and with the threads it scans.
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
    >>> round(est.cpu_fraction, 4)
    0.0367
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_adaprof.params import ALL_CATEGORIES, Params

#: py-spy CPU (fraction of a core) at 1 Hz on a 5-frame stack: 0.0036 / 10**0.76.
PY_SPY_CPU_AT_1HZ = 6.3e-4
#: Exponent of the rate in py-spy's CPU cost (from the 10 Hz and 100 Hz measurements).
PY_SPY_RATE_EXPONENT = 0.76
#: Per-frame growth of py-spy's per-sample cost (calibrated against DESIGN.md's 4-5 %).
PY_SPY_FRAME_FACTOR = 0.04
#: Frames a typical Python web service stack has (used when nothing is measured yet).
TYPICAL_FRAMES = 24
#: Agent CPU seconds per exported span.
AGENT_CPU_PER_SPAN_S = 15e-6
#: Agent CPU seconds per marker (joining samples to the span).
AGENT_CPU_PER_MARKER_S = 40e-6
#: Bytes exported per span.
BYTES_PER_SPAN = 400.0
#: Bytes per stack sample: fixed part and per frame.
BYTES_PER_SAMPLE = 24.0
BYTES_PER_FRAME = 6.0


def pyspy_cpu(rate_hz: float, frames: float, threads: float = 1.0) -> float:
    """py-spy's CPU (fraction of one core) at ``rate_hz`` unwinding ``frames`` per sample.

    >>> round(pyspy_cpu(100, 30), 3)
    0.042
    """
    if rate_hz <= 0:
        return 0.0
    per_frames = 0.8 + PY_SPY_FRAME_FACTOR * frames
    per_threads = 0.9 + 0.1 * max(1.0, threads)
    return float(PY_SPY_CPU_AT_1HZ * rate_hz**PY_SPY_RATE_EXPONENT * per_frames * per_threads)


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
) -> CostEstimate:
    """Prior cost of running ``params`` on a service with ``spans_per_s`` spans,
    threads busy ``active_share`` of the time, ``frames``-deep stacks; py-spy's part
    scaled by ``calibration`` (measured / predicted of recent windows)."""
    eff_frames = min(float(params.stack_depth), frames)
    spy = pyspy_cpu(params.rate_hz, eff_frames) * calibration
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
    def of(cls, params: Params, frames: float = TYPICAL_FRAMES) -> CostTerms:
        """Terms of ``params`` on a service with ``frames``-deep stacks.

        >>> CostTerms.of(Params(sampling_interval_ms=0)).spy
        0.0
        """
        eff = min(float(params.stack_depth), frames)
        return cls(
            rate_hz=params.rate_hz,
            frames=eff,
            spy=pyspy_cpu(params.rate_hz, eff),
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
