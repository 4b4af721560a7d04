"""The hard overhead budget: mask actions expected to exceed it, retreat when one did.

Two rules, applied before the learner chooses:

1. *Masking.* An action is offered only when its expected cost (see
   :mod:`~otel_adaprof.controller.policy.cost`, calibrated on the service's measured
   overhead) stays under ``margin`` times the budget, for CPU and for bytes. The
   cheapest action is always offered, so there is always a choice.
2. *Retreat.* When the window just reported was measured over budget, the next
   window runs the cheapest action, whatever the learner would pick; the agent is
   back under after one window, so an excursion costs at most one window over budget.
   The over-budget measurement also raises the calibration, so the actions that led
   there stay masked under the same load.

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.controller.policy.catalog import load_catalog
    >>> from otel_adaprof.params import Params
    >>> guard = SafetyGuard(load_catalog())
    >>> allowed = guard.allowed(DecisionContext.initial("shop", Params()))
    >>> "off" in [a.name for a in allowed], "deep-200hz" in [a.name for a in allowed]
    (True, False)
"""

from __future__ import annotations

import numpy as np

from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import Action, Catalog
from otel_adaprof.controller.policy.cost import (
    AGENT_CPU_PER_MARKER_S,
    AGENT_CPU_PER_SPAN_S,
    BYTES_PER_SPAN,
    CostEstimate,
    CostTerms,
    expected_cost,
    pyspy_cpu,
)

#: Share of the budget an action's *expected* cost may use (room for measurement noise).
DEFAULT_MARGIN = 0.8
#: Weight of the newest window in the calibration average.
CALIBRATION_RATE = 0.5
#: Calibration bounds (measured/predicted py-spy CPU).
CALIBRATION_RANGE = (0.25, 8.0)


def over_budget(ctx: DecisionContext) -> bool:
    """Whether the reported window was measured over the session's budget."""
    state = ctx.state
    if state is None:
        return False
    return (
        state.profiler_cpu_fraction > ctx.budget.cpu_fraction
        or state.bytes_exported_per_s > ctx.budget.bytes_per_s
    )


class SafetyGuard:
    """Budget guard of one service: masks actions, forces the cheapest after a breach."""

    def __init__(self, catalog: Catalog, margin: float = DEFAULT_MARGIN) -> None:
        self.catalog = catalog
        self.margin = margin
        self.calibration = 1.0
        self._cheapest = catalog.cheapest()
        self._terms = {a.name: CostTerms.of(a.params) for a in catalog}
        terms = [self._terms[a.name] for a in catalog]
        #: Per-action constants as arrays (catalog order), for :meth:`assess_arrays`.
        self.rate = np.array([t.rate_hz for t in terms], dtype=float)
        self.ratio = np.array([t.trace_ratio for t in terms])
        self.pass_share = np.array([t.pass_share for t in terms])
        self._spy = np.array([t.spy for t in terms])
        self._agent = np.array(
            [AGENT_CPU_PER_SPAN_S + t.pass_share * AGENT_CPU_PER_MARKER_S for t in terms]
        )
        self._bps = np.array([t.bytes_per_sample for t in terms])
        self._cheapest_index = catalog.index(self._cheapest.name)

    @property
    def cheapest(self) -> Action:
        """The fallback action."""
        return self._cheapest

    def observe(self, ctx: DecisionContext) -> None:
        """Update the calibration from the reported window (measured vs prior py-spy CPU)."""
        state = ctx.state
        p = ctx.params_in_force
        if state is None or not p.profiling_enabled or state.samples_per_s <= 0:
            return
        active = min(1.0, state.samples_per_s / max(p.rate_hz, 1))
        prior = expected_cost(p, spans_per_s=state.spans_per_s, active_share=active)
        spy_prior = pyspy_cpu(p.rate_hz, min(p.stack_depth, 24))
        agent = max(0.0, prior.cpu_fraction - spy_prior)
        measured_spy = state.profiler_cpu_fraction - agent
        if spy_prior <= 0 or measured_spy <= 0:
            return
        ratio = min(max(measured_spy / spy_prior, CALIBRATION_RANGE[0]), CALIBRATION_RANGE[1])
        # Go up at once (safety first), come down gradually.
        if ratio > self.calibration:
            self.calibration = ratio
        else:
            self.calibration += CALIBRATION_RATE * (ratio - self.calibration)

    def estimate(self, action: Action, ctx: DecisionContext) -> CostEstimate:
        """Expected cost of ``action`` in the situation of ``ctx``."""
        spans, active = situation(ctx)
        terms = self._terms.get(action.name) or CostTerms.of(action.params)
        return terms.estimate(spans, active, self.calibration)

    def allowed(self, ctx: DecisionContext) -> list[Action]:
        """Actions whose expected cost fits the budget (the cheapest always included)."""
        return [action for action, _ in self.assess(ctx)]

    def assess(self, ctx: DecisionContext) -> list[tuple[Action, CostEstimate]]:
        """The allowed actions with their expected cost, in catalog order."""
        cpu_cap = ctx.budget.cpu_fraction * self.margin
        bytes_cap = ctx.budget.bytes_per_s * self.margin
        spans, active = situation(ctx)
        out = []
        for action in self.catalog:
            est = self._terms[action.name].estimate(spans, active, self.calibration)
            if (est.cpu_fraction <= cpu_cap and est.bytes_per_s <= bytes_cap) or (
                action is self._cheapest
            ):
                out.append((action, est))
        return out

    def assess_arrays(self, ctx: DecisionContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`assess` vectorised: ``(indices, cpu_fraction, bytes_per_s)`` of the
        allowed actions (catalog indices, ascending)."""
        spans, active = situation(ctx)
        kept = spans * self.ratio
        cpu = self._spy * self.calibration + kept * self._agent
        data = kept * BYTES_PER_SPAN + self.rate * active * self._bps
        ok = (cpu <= ctx.budget.cpu_fraction * self.margin) & (
            data <= ctx.budget.bytes_per_s * self.margin
        )
        ok[self._cheapest_index] = True
        idx = np.flatnonzero(ok)
        return idx, cpu[idx], data[idx]


def situation(ctx: DecisionContext) -> tuple[float, float]:
    """``(spans_per_s, active_share)`` of the service as the last window showed it.

    The active share (threads on CPU, what py-spy samples without ``--idle``) is read
    from samples/rate when the profiler ran, else from the process CPU.
    """
    state = ctx.state
    if state is None:
        return 0.0, 1.0
    p = ctx.params_in_force
    if p.profiling_enabled and state.samples_per_s > 0:
        return state.spans_per_s, min(1.0, state.samples_per_s / max(p.rate_hz, 1))
    return state.spans_per_s, min(1.0, max(state.process_cpu, 0.05))
