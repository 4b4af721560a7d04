"""The threshold heuristic: hold profiler CPU just under the budget with a rate ladder.

The baseline every adaptive profiler should beat, and what a session with
``policy: heuristic`` runs server side: raise the rate one step while the measured
profiler CPU is under ``low`` times the budget, lower it one step when a window is over
the budget, hold in between. It steps along a fixed ladder of plain rates
(:data:`RATE_LADDER_HZ`, full depth, every trace), or along a catalog's profiling
ladder when given one (:meth:`Catalog.profiling_ladder`).

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.params import Params
    >>> h = ThresholdPolicy()
    >>> h.decide(DecisionContext.initial("shop", Params(sampling_interval_ms=100))).action
    'rate-10hz'
"""

from __future__ import annotations

from typing import ClassVar

from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy.catalog import Catalog, parse_catalog

#: Raise the rate while profiler CPU is under this share of the budget.
DEFAULT_LOW_WATERMARK = 0.6
#: The heuristic's own rate ladder (Hz; 0 = off).
RATE_LADDER_HZ = (0, 1, 2, 5, 10, 20, 50, 100)


def rate_ladder() -> Catalog:
    """Plain rates, full depth, every trace: the heuristic's default ladder.

    >>> rate_ladder().names[:3]
    ['rate-0hz', 'rate-1hz', 'rate-2hz']
    """
    return parse_catalog(
        {
            "actions": [
                {
                    "name": f"rate-{hz}hz",
                    "params": {
                        "sampling_interval_ms": 1000 // hz if hz else 0,
                        "stack_depth": 128,
                        "trace_ratio": 1.0,
                    },
                }
                for hz in RATE_LADDER_HZ
            ]
        }
    )


class ThresholdPolicy(Policy):
    """Rate ladder driven by measured profiler CPU against the budget (never explores)."""

    name: ClassVar[str] = "heuristic"

    def __init__(self, catalog: Catalog | None = None, low: float = DEFAULT_LOW_WATERMARK) -> None:
        self.catalog = catalog if catalog is not None else rate_ladder()
        self.ladder = self.catalog.profiling_ladder()
        self.rates = [a.params.rate_hz for a in self.ladder]
        self.low = low

    def _step_of(self, rate_hz: int) -> int:
        """Ladder step closest to ``rate_hz`` (at or below it when possible)."""
        below = [i for i, r in enumerate(self.rates) if r <= rate_hz]
        return below[-1] if below else 0

    def decide(self, ctx: DecisionContext) -> Decision:
        state = ctx.state
        # An agent's first poll starts from the session's initial params.
        start = ctx.initial_params if state is None else ctx.params_in_force
        step = self._step_of(start.rate_hz)
        if state is not None:
            used = state.profiler_cpu_fraction / ctx.budget.cpu_fraction
            data = state.bytes_exported_per_s / (ctx.budget.bytes_per_s or float("inf"))
            if used > 1.0 or data > 1.0:
                step = max(0, step - 1)
            elif used < self.low and data < self.low:
                step = min(len(self.ladder) - 1, step + 1)
        action = self.ladder[step]
        return Decision(params=action.params, probability=1.0, action=action.name)
