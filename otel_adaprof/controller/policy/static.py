"""The static policy: always the session's initial params (the fixed baselines)."""

from __future__ import annotations

from typing import ClassVar

from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy


class StaticPolicy(Policy):
    """Never explores: every decision is the context's initial params, probability 1.

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.params import Params
    >>> StaticPolicy().decide(DecisionContext.initial("s", Params())).probability
    1.0
    """

    name: ClassVar[str] = "static"

    def decide(self, ctx: DecisionContext) -> Decision:
        return Decision(params=ctx.initial_params, probability=1.0, action="static")
