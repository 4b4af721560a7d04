"""The policy interface: context in, decision out, reward back later.

A policy instance serves one service (one model per service). The controller calls
:meth:`Policy.decide` on every poll and, when the report of a window that ran under a
decision's config version arrives, :meth:`Policy.learn` with that decision's reward
(delayed credit by version: reports from other versions never credit it).

Usage::

    >>> from otel_adaprof.controller.policy import StaticPolicy, DecisionContext
    >>> from otel_adaprof.params import Params
    >>> ctx = DecisionContext.initial("shop", Params(stack_depth=16))
    >>> StaticPolicy().decide(ctx).params.stack_depth
    16
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState, StackHistogram
from otel_adaprof.reward import PhaseState
from otel_adaprof.session_spec import Mode, OverheadBudget, RewardWeights


@dataclass(frozen=True)
class DecisionContext:
    """Everything a policy may look at when it chooses the next params of one agent."""

    service: str
    initial_params: Params  # the session's initial params, else the service default
    params_in_force: Params  # what the agent ran during the last window
    session_id: str | None = None
    mode: Mode = Mode.STATIC
    goal: RewardWeights = field(default_factory=RewardWeights)
    budget: OverheadBudget = field(default_factory=OverheadBudget)
    state: ObservedState | None = None  # the last window, None on an agent's first poll
    stacks: StackHistogram | None = None  # the last window's samples
    # the service profile before this window (the controller passes its live profile,
    # which later windows fold into: read it while deciding, do not keep it)
    profile: Mapping[str, float] = field(default_factory=dict)
    phase: PhaseState | None = None  # the reward's phase memory after the last window
    # ``profile`` folded onto reward keys (``reward.keyed``), when the caller keeps it up
    # to date; None: the features compute it from ``profile``
    keyed_profile: Mapping[str, float] | None = None
    # the agent's profiler backend (``AgentIdentity.profiler_backend``): the budget
    # guard prices actions with that backend's measured cost
    profiler_backend: str = "py-spy"

    @classmethod
    def initial(cls, service: str, params: Params) -> DecisionContext:
        """Context of an agent's first poll: nothing observed yet."""
        return cls(service=service, initial_params=params, params_in_force=params)


@dataclass(frozen=True)
class Decision:
    """A policy's choice, logged with the probability it had of being chosen.

    ``features`` is what the policy saw (as it would log it), so that the decision can
    be learned from later and evaluated offline (inverse propensity, doubly robust).
    """

    params: Params
    probability: float = 1.0
    action: str = "static"
    explored: bool = False
    features: Mapping[str, Any] = field(default_factory=dict)


class Policy(abc.ABC):
    """Chooses params for one service. Implementations must be fast (sub-millisecond)
    and must never raise on odd input: the serving path depends on them."""

    name: ClassVar[str]

    @abc.abstractmethod
    def decide(self, ctx: DecisionContext) -> Decision:
        """The params the agent should run next."""

    def decide_shared(self, ctx: DecisionContext, shared: Decision) -> Decision:
        """The params for a poll that may take ``shared``, the decision this service's
        policy made for another agent's poll moments ago (the poll handler's rule,
        ``policy.share_decision_s``). This default decides afresh; a policy whose
        decisions cost more than a poll's other work (the bandit) answers ``shared``
        unless something of this agent's own (its budget) asks for another answer.
        """
        return self.decide(ctx)

    def learn(self, ctx: DecisionContext, decision: Decision, reward: float) -> None:  # noqa: B027
        """Credit ``decision`` (taken in ``ctx``) with the reward of the window it ran."""

    def snapshot(self) -> bytes | None:
        """The model as bytes for the database, or ``None`` when there is nothing to keep."""
        return None

    def restore(self, blob: bytes) -> None:  # noqa: B027
        """Load a model written by :meth:`snapshot`."""
