"""The threshold heuristic: hold profiler CPU just under the budget with a rate ladder.

The baseline every adaptive profiler should beat: raise the rate one step while the
measured profiler CPU is under ``low`` times the budget, lower it one step when a
window is over the budget, hold in between. It steps along the catalog's profiling
ladder (one ordinary action per rate, see :meth:`Catalog.profiling_ladder`).

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.params import Params
    >>> h = ThresholdPolicy()
    >>> h.decide(DecisionContext.initial("shop", Params(sampling_interval_ms=100))).action
    'balanced-10hz'
"""

from __future__ import annotations

from typing import ClassVar

from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy.catalog import Catalog, load_catalog

#: Raise the rate while profiler CPU is under this share of the budget.
DEFAULT_LOW_WATERMARK = 0.6


class ThresholdPolicy(Policy):
    """Rate ladder driven by measured profiler CPU against the budget (never explores)."""

    name: ClassVar[str] = "heuristic"

    def __init__(self, catalog: Catalog | None = None, low: float = DEFAULT_LOW_WATERMARK) -> None:
        self.catalog = catalog if catalog is not None else load_catalog()
        self.ladder = self.catalog.profiling_ladder()
        self.rates = [a.params.rate_hz for a in self.ladder]
        self.low = low

    def _step_of(self, rate_hz: int) -> int:
        """Ladder step closest to ``rate_hz`` (at or below it when possible)."""
        below = [i for i, r in enumerate(self.rates) if r <= rate_hz]
        return below[-1] if below else 0

    def decide(self, ctx: DecisionContext) -> Decision:
        step = self._step_of(ctx.params_in_force.rate_hz)
        state = ctx.state
        if state is not None:
            used = state.profiler_cpu_fraction / ctx.budget.cpu_fraction
            data = state.bytes_exported_per_s / (ctx.budget.bytes_per_s or float("inf"))
            if used > 1.0 or data > 1.0:
                step = max(0, step - 1)
            elif used < self.low and data < self.low:
                step = min(len(self.ladder) - 1, step + 1)
        action = self.ladder[step]
        return Decision(params=action.params, probability=1.0, action=action.name)
