"""The hard overhead budget: mask actions expected to exceed it, retreat when one did.

The CPU budget holds *on average over the goal's horizon* (a budget bank): the guard
keeps the exponential average of the measured profiler CPU of all agent threads over
``goal.cost_horizon_s``, of the windows seen only (:mod:`~otel_adaprof.budget_bank`: a
young session gets no credit for the time before its first window). Two rules,
applied before the learner chooses:

1. *Masking.* An action is offered only when one more window at its expected cost
   (see :mod:`~otel_adaprof.controller.policy.cost`: the measured cost of the agent's
   profiler backend, calibrated on the service's measured overhead, plus the reflex's
   bursts for the share of the time the agent was measured bursting) keeps that average
   under ``margin`` times the budget, and its expected cost is under
   :data:`MAX_BURST_FACTOR` budgets. So a burst is allowed
   while the bank holds, and refused once the average is spent. Bytes are masked only
   when the session sets a bytes budget. Actions tagged ``fallback`` are never offered
   (they are the retreat); the cheapest other action is always offered.
2. *Retreat.* When the average is over the budget (or the window was over the bytes
   budget), the next windows run the fallback action, whatever the learner would pick,
   until the average is back under :data:`REFILL` budgets.
   A measurement above the prediction also raises the calibration, so the actions that
   led there stay masked under the same load.

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.controller.policy.catalog import load_catalog
    >>> from otel_adaprof.params import Params
    >>> guard = SafetyGuard(load_catalog())
    >>> allowed = guard.allowed(DecisionContext.initial("shop", Params()))
    >>> names = [a.name for a in allowed]
    >>> guard.cheapest.name, "off" in names, "watch-reflex" in names
    ('off', False, True)
"""

from __future__ import annotations

import math

import numpy as np

from otel_adaprof.budget_bank import BudgetBank
from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import Action, Catalog
from otel_adaprof.controller.policy.cost import (
    AGENT_CPU_PER_MARKER_S,
    AGENT_CPU_PER_SPAN_S,
    BYTES_PER_SPAN,
    DEFAULT_BACKEND,
    TYPICAL_FRAMES,
    CostEstimate,
    CostTerms,
    expected_cost,
    profile_mode,
    pyspy_cpu,
)

#: Share of the budget an action's *expected* cost may use (room for measurement noise).
DEFAULT_MARGIN = 0.8
#: Weight of the newest window in the calibration average.
CALIBRATION_RATE = 0.5
#: Calibration bounds (measured/predicted py-spy CPU).
CALIBRATION_RANGE = (0.25, 8.0)
#: Most budgets one window's expected cost may reach (the size of a burst).
MAX_BURST_FACTOR = 10.0
#: Windows a learning burst must fit in the bank to start (:meth:`SafetyGuard.burst_room`):
#: it then runs while one more window fits. Bursts that start only when they can last
#: change the params less often than single windows squeezed in as the bank refills.
BURST_WINDOWS = 3
#: After a retreat, the average must fall under this share of the budget to resume.
#: Above the masking margin, so what is offered then is what fits under the margin (the
#: watch, not a burst). At 0.7 a retreat after a reflex burst early in a session lasted
#: 66 s without py-spy (the average, honest from the first window, fell 0.0171 -> 0.0112
#: of a core on slow-span capture alone), a whole 60 s phase without a sample (session 28).
REFILL = 0.9
#: Tag of actions kept for the retreat only (never offered to the learner).
FALLBACK_TAG = "fallback"
#: Window length assumed before an agent has reported one (s).
DEFAULT_WINDOW_S = 5.0


def over_budget(ctx: DecisionContext) -> bool:
    """Whether the reported window alone was over the session's CPU or bytes budget."""
    state = ctx.state
    if state is None:
        return False
    bytes_cap = ctx.budget.bytes_per_s
    return state.profiler_cpu_fraction > ctx.budget.cpu_fraction or (
        bytes_cap is not None and state.bytes_exported_per_s > bytes_cap
    )


def bytes_over(ctx: DecisionContext) -> bool:
    """Whether the reported window was over the session's bytes budget (if it has one)."""
    cap = ctx.budget.bytes_per_s
    return ctx.state is not None and cap is not None and ctx.state.bytes_exported_per_s > cap


class SafetyGuard:
    """Budget guard of one service: masks actions, forces the cheapest after a breach."""

    def __init__(self, catalog: Catalog, margin: float = DEFAULT_MARGIN) -> None:
        self.catalog = catalog
        self.margin = margin
        self.calibration = 1.0
        self.bank = BudgetBank()  # profiler CPU over the horizon, as spent
        self.retreating = False
        self.window_s = DEFAULT_WINDOW_S
        fallbacks = [a for a in catalog if FALLBACK_TAG in a.tags]
        self._cheapest = (
            min(fallbacks, key=lambda a: (a.params.rate_hz, a.params.stack_depth))
            if fallbacks
            else catalog.cheapest()
        )
        #: Share of the time the agent's reflex bursts (measured, averaged).
        self.burst_share = 0.0
        self._cheapest_index = catalog.index(self._cheapest.name)
        # Actions tagged "fallback" are the retreat only, never offered to the learner;
        # the cheapest of the others is always offered.
        self._offerable = np.array([FALLBACK_TAG not in a.tags for a in catalog])
        if not self._offerable.any():
            self._offerable[:] = True
        offer = [a for a in catalog if FALLBACK_TAG not in a.tags] or list(catalog)
        floor = min(offer, key=lambda a: (a.params.rate_hz, a.params.stack_depth))
        self._floor_index = catalog.index(floor.name)
        #: The profiler backend the actions are priced for (the agent's, from its polls).
        self.backend = DEFAULT_BACKEND
        self._price(DEFAULT_BACKEND)

    def _price(self, backend: str) -> None:
        """Each action's cost constants with ``backend``'s measured cost (catalog order)."""
        catalog = self.catalog
        self.backend = backend
        self._terms = {a.name: CostTerms.of(a.params, backend=backend) for a in catalog}
        terms = [self._terms[a.name] for a in catalog]
        #: Per-action constants as arrays (catalog order).
        self.rate = np.array([t.rate_hz for t in terms], dtype=float)
        self.ratio = np.array([t.trace_ratio for t in terms])
        self.pass_share = np.array([t.pass_share for t in terms])
        self._spy = np.array([t.spy for t in terms])
        self._agent = np.array(
            [AGENT_CPU_PER_SPAN_S + t.pass_share * AGENT_CPU_PER_MARKER_S for t in terms]
        )
        self._bps = np.array([t.bytes_per_sample for t in terms])
        # what a reflex burst adds while it runs, per action (0 without the reflex)
        self._burst_extra = np.array(
            [
                max(
                    0.0,
                    pyspy_cpu(1000.0 / a.params.burst_interval_ms, TYPICAL_FRAMES,
                              mode=profile_mode(a.params), backend=backend) - t.spy,
                )
                if a.params.burst_sensitivity > 0
                else 0.0
                for a, t in zip(catalog, terms, strict=True)
            ]
        )  # fmt: skip
        #: The same constants per action, as Python floats, for :meth:`assess_lists`.
        self._rows = list(
            zip(
                self.ratio.tolist(),
                self._spy.tolist(),
                self._burst_extra.tolist(),
                self._agent.tolist(),
                self.rate.tolist(),
                self._bps.tolist(),
                self._offerable.tolist(),
                strict=True,
            )
        )

    @property
    def average(self) -> float:
        """Profiler CPU averaged over the horizon, as spent (fraction of a core)."""
        return self.bank.average

    @property
    def cheapest(self) -> Action:
        """The fallback action."""
        return self._cheapest

    def observe(self, ctx: DecisionContext) -> None:
        """Update the budget bank and the calibration (measured vs prior profiler CPU).

        An agent whose profiler backend differs from the one the actions are priced
        for (a first poll, or a restart on another profiler) has them priced again with
        its backend's measured cost, and the calibration starts again from 1: it
        corrected the other backend's prior.
        """
        if ctx.profiler_backend != self.backend:
            self._price(ctx.profiler_backend)
            self.calibration = 1.0
        state = ctx.state
        p = ctx.params_in_force
        if state is not None:
            self.window_s = state.window_seconds
            if p.burst_sensitivity > 0:
                share = min(1.0, state.burst_seconds / state.window_seconds)
                self.burst_share += CALIBRATION_RATE * (share - self.burst_share)
            self.bank = self.bank.add(
                state.profiler_cpu_fraction, state.window_seconds, ctx.goal.cost_horizon_s
            )
        if state is None or not p.profiling_enabled or state.samples_per_s <= 0:
            return
        active = min(1.0, state.samples_per_s / max(p.rate_hz, 1))
        backend = self.backend
        prior = expected_cost(
            p, spans_per_s=state.spans_per_s, active_share=active, backend=backend
        )
        spy_prior = pyspy_cpu(p.rate_hz, min(p.stack_depth, 24), backend=backend)
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

    def retreat_action(self, ctx: DecisionContext) -> Action:
        """The fallback to retreat to: the fastest ``fallback`` action expected to cost
        under half the budget (so the retreat still watches), one with slow-span capture
        first among equal rates, else the cheapest. Judged without the reflex's bursts:
        a retreat's reflex is a glimpse (one short burst on a change, then a rest as
        long), not the bursts the measured :attr:`burst_share` stands for, which is high
        right after the burst that spent the bank."""
        cap = 0.5 * ctx.budget.cpu_fraction
        fits = [
            a
            for a in self.catalog
            if FALLBACK_TAG in a.tags and self.estimate(a, ctx, bursts=False).cpu_fraction <= cap
        ]
        if not fits:
            return self._cheapest
        return max(fits, key=lambda a: (a.params.rate_hz, a.params.slow_span_interval_ms > 0))

    def must_retreat(self, ctx: DecisionContext) -> bool:
        """Whether the bank is spent (average over the budget) or bytes were over. Once
        spent, it stays so until the average is back under :data:`REFILL` budgets
        (hysteresis: no flapping between the retreat and a burst-prone action)."""
        budget = ctx.budget.cpu_fraction
        if self.average > budget:
            self.retreating = True
        elif self.average < REFILL * budget:
            self.retreating = False
        return self.retreating or bytes_over(ctx)

    def cpu_room(self, ctx: DecisionContext) -> float:
        """Most expected CPU one more window may cost and keep the average in budget."""
        return self.burst_room(ctx, windows=1)

    def burst_room(self, ctx: DecisionContext, windows: int = BURST_WINDOWS) -> float:
        """Most expected CPU per window a burst of ``windows`` windows may cost and keep
        the average in budget (:meth:`cpu_room` for one window)."""
        cap = ctx.budget.cpu_fraction * self.margin
        room = self.bank.room(cap, windows * self.window_s, ctx.goal.cost_horizon_s)
        return max(0.0, min(room, ctx.budget.cpu_fraction * MAX_BURST_FACTOR))

    def estimate(
        self, action: Action, ctx: DecisionContext, *, bursts: bool = True
    ) -> CostEstimate:
        """Expected cost of ``action`` in the situation of ``ctx`` (``bursts``: with
        its reflex's bursts at the measured :attr:`burst_share`)."""
        spans, active = situation(ctx)
        terms = self._terms.get(action.name) or CostTerms.of(action.params, backend=self.backend)
        est = terms.estimate(spans, active, self.calibration)
        i = self.catalog.index(action.name) if action.name in self.catalog.names else None
        if i is None or not bursts:
            return est
        burst = self.burst_share * float(self._burst_extra[i]) * self.calibration
        return CostEstimate(est.cpu_fraction + burst, est.bytes_per_s)

    def allowed(self, ctx: DecisionContext) -> list[Action]:
        """Actions whose expected cost fits the budget (the cheapest always included)."""
        return [self.catalog[i] for i in self.assess_lists(ctx)[0]]

    def assess_lists(self, ctx: DecisionContext) -> tuple[list[int], list[float], list[float]]:
        """The allowed actions, ``(indices, cpu_fraction, bytes_per_s)``: catalog
        indices (ascending) and expected costs (bursts included), as plain lists.

        The arithmetic of the former numpy version, element by element in the same
        order (the same IEEE results), without a dozen numpy calls on arrays of a dozen
        values; the floor is ``argmin`` over the offerable actions (first minimum, a NaN
        wins as it does in numpy).
        """
        spans, active = situation(ctx)
        room = self.cpu_room(ctx)
        cap = (ctx.budget.bytes_per_s or math.inf) * self.margin
        share, calibration = self.burst_share, self.calibration
        cpus: list[float] = []
        datas: list[float] = []
        fits: list[bool] = []
        floor = -1
        low = math.inf
        for ratio, spy, extra, agent, rate, bps, offer in self._rows:
            kept = spans * ratio
            cpu = (spy + share * extra) * calibration + kept * agent
            data = kept * BYTES_PER_SPAN + rate * active * bps
            cpus.append(cpu)
            datas.append(data)
            fits.append(offer and cpu <= room and data <= cap)
            if floor < 0 or low == low:  # numpy's argmin stops at the first NaN
                masked = cpu if offer else math.inf
                if floor < 0 or masked < low or masked != masked:
                    floor, low = len(cpus) - 1, masked
        fits[floor] = True
        idx = [i for i, ok in enumerate(fits) if ok]
        return idx, [cpus[i] for i in idx], [datas[i] for i in idx]


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
