"""State features: what the policy sees of an agent's last window, as numbers near 0..1.

A pure function of the :class:`DecisionContext`. Values that span decades (rates,
bytes, memory, latency) are on log scales; CPU and memory utilisation are fractions;
the profiler's overhead is relative to the session's budget. ``docs/policy.md``
lists every feature.

The *drift* signal says how far the window's stack distribution is from the service's
accumulated profile, per sample: the total-variation distance between the two
distributions over reward keys (0 = same shares, 1 = disjoint), which does not grow
with the sampling rate, plus the share of samples on never-seen keys (novelty). Their
noise floor falls with the number of samples, which is a feature too (``conf``).

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.params import Params
    >>> f = state_features(DecisionContext.initial("shop", Params()))
    >>> f["first"], f["drift"]
    (1.0, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.cost import marker_pass_share
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.reward import (
    accuracy_gain,
    accuracy_gains,
    expected_l1,
    keyed,
    novelty,
    phase_target,
    slow_span_coverage,
    total_variation,
)

#: Names of the per-state action features (namespace ``C``), in the order
#: :meth:`ActionContext.rows` and the logged decisions use.
C_FEATURES = ("cpu", "bytes", "density", "samples", "gain", "stay")
#: Upper clip of the overhead/budget ratio (a window at 5x budget is already "very over").
MAX_BUDGET_RATIO = 5.0


#: A change statistic (baseline std) is logged as ``sig_*`` divided by this, clipped to ±1.
SIGNAL_SCALE = 10.0


def _log_scale(value: float, decades: float) -> float:
    """``log10(1 + value) / decades``: 0 at 0, 1 at ``10**decades``."""
    return math.log10(1.0 + (value if value > 0.0 else 0.0)) / decades  # max(0.0, value)


def drift(
    profile: Mapping[str, float],
    window: Mapping[str, float],
    keyed_profile: Mapping[str, float] | None = None,
) -> tuple[float, float]:
    """``(total_variation, novelty)`` of a window against the accumulated profile,
    both over reward keys. ``(0, 0)`` when either is empty. ``keyed_profile``: the
    profile already folded onto reward keys (``keyed(profile)``, kept by the caller:
    folding a profile of thousands of stacks per decision costs milliseconds).

    >>> drift({"m (a.py:1)": 9}, {"m (a.py:2)": 1, "n (a.py:3)": 1})
    (0.5, 0.05)
    """
    prof = keyed(profile) if keyed_profile is None else keyed_profile
    win = keyed(window)
    if not prof or not win:
        return 0.0, 0.0
    return total_variation(win, prof), novelty(prof, win)


def phase_features(ctx: DecisionContext) -> dict[str, float]:
    """Where the current phase stands: samples since the last change, the expected
    error reached against the goal's target, a change just detected or signalled, a
    burst in flight, and the agent's change signals (CUSUM, baseline std units).

    >>> from otel_adaprof.params import Params
    >>> phase_features(DecisionContext.initial("s", Params()))["phase_error"]
    1.0
    """
    phase = ctx.phase
    k, target = ctx.goal.functions, phase_target(ctx.phase, ctx.goal)
    n = phase.samples if phase is not None else 0.0
    err = expected_l1(n, k)
    feats = {
        "phase_n": _log_scale(n, 4.0),
        "phase_error": err / 2.0,
        "reached": 1.0 if err <= target else 0.0,
        "to_go": min(1.0, accuracy_gain(n, 1e9, k, target) / 3.0),
        "change": 1.0 if phase is not None and phase.changed else 0.0,
        "pending": 1.0 if phase is not None and phase.pending_change_unix is not None else 0.0,
    }
    state = ctx.state
    if state is not None:
        feats["bursting"] = 1.0 if reflex_burst_seconds(state) > 0 else 0.0
        signals = getattr(state, "change_signals", None)
        if signals is not None:
            for name in ("cpu_per_request", "latency", "span_rate"):
                value = float(getattr(signals, name, 0.0) or 0.0)
                feats[f"sig_{name}"] = max(-1.0, min(1.0, value / SIGNAL_SCALE))
        slow = int(getattr(state, "slow_spans", 0) or 0)
        if slow:
            feats["slow_cov"] = slow_span_coverage(
                slow,
                getattr(state, "slow_spans_sampled", None),
                int(getattr(state, "slow_span_samples", 0) or 0),
            )
    return feats


def reflex_burst_seconds(state: object) -> float:
    """Seconds of the window in the reflex's bursts, its glimpses left out (a glimpse is
    one py-spy run on a rise, not the burst of a change that fired).

    >>> from otel_adaprof.protocol import ObservedState
    >>> reflex_burst_seconds(ObservedState(window_start=0, window_seconds=3,
    ...                                    burst_seconds=2.5, glimpse_seconds=2.0))
    0.5
    """
    burst = float(getattr(state, "burst_seconds", 0.0) or 0.0)
    return max(0.0, burst - float(getattr(state, "glimpse_seconds", 0.0) or 0.0))


def state_features(ctx: DecisionContext) -> dict[str, float]:
    """The state vector of one decision (feature name -> value)."""
    p = ctx.params_in_force
    feats: dict[str, float] = {
        "in_log_rate": math.log10(1.0 + p.rate_hz) / 3.0,
        "in_depth": p.stack_depth / 128.0 if p.profiling_enabled else 0.0,
        "in_ratio": p.trace_ratio,
    }
    feats.update(phase_features(ctx))
    state = ctx.state
    if state is None:
        feats["first"] = 1.0
        feats["drift"] = 0.0
        return feats
    overhead = state.profiler_cpu_fraction / ctx.budget.cpu_fraction
    data = state.bytes_exported_per_s / (ctx.budget.bytes_per_s or math.inf)
    window = ctx.stacks.as_dict() if ctx.stacks is not None else {}
    tv, new = drift(ctx.profile, window, ctx.keyed_profile) if window else (0.0, 0.0)
    n = float(ctx.stacks.total_samples) if ctx.stacks is not None else 0.0
    feats.update(
        {
            "first": 0.0,
            "cpu_proc": _log_scale(state.process_cpu, 1.0),
            "cpu_node": state.node_cpu,
            "mem_proc": _log_scale(state.process_memory_bytes, 12.0),
            "mem_node": state.node_memory,
            "rtt": _log_scale(state.poll_rtt_ms or 0.0, 4.0),
            "spans": _log_scale(state.spans_per_s, 5.0),
            "markers": _log_scale(state.markers_per_s, 4.0),
            "samples": _log_scale(state.samples_per_s, 3.0),
            "bytes": _log_scale(state.bytes_exported_per_s, 8.0),
            "overhead": min(overhead, MAX_BUDGET_RATIO) / MAX_BUDGET_RATIO,
            "over_budget": 1.0 if overhead > 1.0 or data > 1.0 else 0.0,
            "bytes_budget": min(data, MAX_BUDGET_RATIO) / MAX_BUDGET_RATIO,
            "drift": tv,
            "novel": new,
            # bins let a linear model respond non-linearly to drift
            "drift_lo": 1.0 if 0.05 < tv <= 0.2 else 0.0,
            "drift_hi": 1.0 if tv > 0.2 else 0.0,
            "novel_any": 1.0 if new > 0.0 else 0.0,
            "conf": _log_scale(n, 4.0),
            "drops": 1.0 if state.queue_drops or state.export_failures else 0.0,
        }
    )
    return feats


def action_context(
    ctx: DecisionContext, params: Params, cpu_fraction: float, bytes_per_s: float
) -> dict[str, float]:
    """Features of one candidate action *in this state* (namespace ``C``).

    What the candidate is expected to cost relative to the budget (from the safety
    guard's cost model), the marker density it should reach, the samples it should
    collect, the accuracy they would add to the current phase (the reward's accuracy
    term, nats / 3) and whether the action keeps the params in force (``stay``).
    :class:`ActionContext` computes the same for many actions at once.

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> c = action_context(DecisionContext.initial("s", Params()), Params(), 0.01, 1000.0)
    >>> c["cpu"], c["stay"], 0.0 < c["gain"] <= 1.0
    (0.5, 1.0, True)
    """
    shared = ActionContext(ctx)
    return shared.features(
        params.rate_hz,
        params.trace_ratio,
        marker_pass_share(params),
        cpu_fraction,
        bytes_per_s,
        same=params == ctx.params_in_force,
    )


class ActionContext:
    """The per-decision part of :func:`action_context`, computed once per decision."""

    def __init__(self, ctx: DecisionContext) -> None:
        state = ctx.state
        self.cpu_budget = ctx.budget.cpu_fraction
        self.bytes_budget = ctx.budget.bytes_per_s or math.inf
        self.target = ctx.goal.target_markers_per_s
        self.secs = state.window_seconds if state is not None else 5.0
        self.active = 1.0
        self.spans = 0.0
        self.pass_scale = 1.0
        if state is not None:
            self.spans = state.spans_per_s
            cur = ctx.params_in_force
            if cur.profiling_enabled and state.samples_per_s > 0:
                self.active = min(1.0, state.samples_per_s / max(cur.rate_hz, 1))
            else:
                self.active = min(1.0, max(state.process_cpu, 0.05))
            kept_now = state.spans_per_s * cur.trace_ratio
            prior_now = marker_pass_share(cur)
            if kept_now > 0 and prior_now > 0:
                # scale the prior pass share by how the current filters really do
                self.pass_scale = min(1.0, state.markers_per_s / kept_now) / prior_now
        self.phase_n = ctx.phase.samples if ctx.phase is not None else 0.0
        self.functions = ctx.goal.functions
        self.acc_target = phase_target(ctx.phase, ctx.goal)

    def rows(
        self,
        rate_hz: Sequence[float],
        trace_ratio: Sequence[float],
        pass_share: Sequence[float],
        cpu_fraction: Sequence[float],
        bytes_per_s: Sequence[float],
        same: Sequence[float],
    ) -> list[list[float]]:
        """:meth:`features` for many actions at once: one list per action, columns
        :data:`C_FEATURES` (what decisions log), for the hot path.

        The same values, to the last bit, as the numpy arrays it replaced (kept as the
        reference in ``tests/policy/test_decision_arithmetic.py``): their arithmetic
        element by element in the same order (``np.minimum``'s NaN kept), and the
        ``samples`` column still by numpy's ``log10`` (which need not round as
        ``math.log10`` does).
        """
        per_hz = self.active * self.secs
        samples = [rate * per_hz for rate in rate_hz]
        logs = [v / 4.0 for v in np.log10(np.array([1.0 + n for n in samples])).tolist()]
        gains = accuracy_gains(self.phase_n, samples, self.functions, self.acc_target)
        spans, scale = self.spans, self.pass_scale
        cpu_budget, bytes_budget, target = self.cpu_budget, self.bytes_budget, self.target
        out = []
        for ratio, share, cpu, data, log, gain, stay in zip(
            trace_ratio, pass_share, cpu_fraction, bytes_per_s, logs, gains, same, strict=True
        ):
            passing = share * scale
            markers = spans * ratio * (1.0 if passing > 1.0 else passing)
            c = cpu / cpu_budget
            b = data / bytes_budget
            m = markers / target
            out.append(
                [
                    MAX_BUDGET_RATIO if c > MAX_BUDGET_RATIO else c,
                    MAX_BUDGET_RATIO if b > MAX_BUDGET_RATIO else b,
                    1.0 if m > 1.0 else m,
                    log,
                    gain / 3.0,
                    stay,
                ]
            )
        return out

    def _gain(self, samples: float) -> float:
        return accuracy_gain(self.phase_n, samples, self.functions, self.acc_target) / 3.0

    def features(
        self,
        rate_hz: int,
        trace_ratio: float,
        pass_share: float,
        cpu_fraction: float,
        bytes_per_s: float,
        same: bool = False,
    ) -> dict[str, float]:
        """Features of one action given its rate, ratio, prior pass share and cost."""
        markers = self.spans * trace_ratio * min(1.0, pass_share * self.pass_scale)
        samples = rate_hz * self.active * self.secs
        return {
            "cpu": min(cpu_fraction / self.cpu_budget, MAX_BUDGET_RATIO),
            "bytes": min(bytes_per_s / self.bytes_budget, MAX_BUDGET_RATIO),
            "density": min(1.0, markers / self.target),
            "samples": _log_scale(samples, 4.0),
            "gain": self._gain(samples),
            "stay": 1.0 if same else 0.0,
        }


#: Weight of the newest window in the running averages of :class:`Trend`.
TREND_RATE = 0.3


class Trend:
    """Running averages of what the agents see without profiling (process CPU, span
    and marker rates), so a change shows even while the profiler is off.

    A new hot path costs CPU; a new workload changes span rates. These are measured
    in every window, profiled or not, so they tell the policy *when* sampling is
    worth it. One per service (the policy's), in memory: after a restart it warms up
    again in a few windows.

    >>> from otel_adaprof.protocol import ObservedState
    >>> t = Trend()
    >>> s = ObservedState(window_start=0, window_seconds=5, process_cpu=0.5)
    >>> t.update(s)["cpu_change"]
    0.0
    >>> round(t.update(s.model_copy(update={"process_cpu": 1.0}))["cpu_change"], 2)
    0.49
    """

    def __init__(self) -> None:
        self.cpu: float | None = None
        self.spans: float | None = None

    @staticmethod
    def _change(value: float, average: float | None) -> float:
        if average is None:
            return 0.0
        # log2 ratio, clipped to ±2 (4x) and scaled to ±1
        ratio = math.log2((value + 0.01) / (average + 0.01))
        return max(-2.0, min(2.0, ratio)) / 2.0

    def update(self, state: ObservedState) -> dict[str, float]:
        """Change features of ``state`` against the averages, then fold it in."""
        cpu = self._change(state.process_cpu, self.cpu)
        spans = self._change(state.spans_per_s, self.spans)
        self.cpu = (
            state.process_cpu
            if self.cpu is None
            else (self.cpu + TREND_RATE * (state.process_cpu - self.cpu))
        )
        self.spans = (
            state.spans_per_s
            if self.spans is None
            else (self.spans + TREND_RATE * (state.spans_per_s - self.spans))
        )
        return {
            "cpu_change": cpu,
            "cpu_up": max(0.0, cpu),
            "cpu_moved": abs(cpu),
            "spans_change": spans,
            "spans_moved": abs(spans),
        }


def context_dict(value: object) -> dict[str, float]:
    """An action's logged ``C`` features as a dict (logged as a list or a dict).

    >>> context_dict([0.5, 0.1, 1.0, 0.2, 0.3, 0.0])["bytes"]
    0.1
    """
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and len(value) == len(C_FEATURES):
        return {k: float(v) for k, v in zip(C_FEATURES, value, strict=True)}
    return {}
