"""One agent poll: record → credit → decide.

Jaeger's adaptive sampling has an aggregator, a calculator and a provider; here a poll
is *recorded* (report → store, stacks → the service's in-memory profile), *credited*
(the window's reward goes to the decision whose config version it ran under, and only
to it) and *answered* (the service's policy decides the next params, logged with its
probability). The store sees one read (:meth:`ControllerStore.poll_context`) and one
write transaction (:meth:`ControllerStore.record_poll`) per poll.

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.policy_registry import PolicyRegistry
    >>> from otel_adaprof.controller.sessions import Sessions
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.protocol import AgentIdentity, PollRequest
    >>> config, store = ControllerConfig(), Store(":memory:")
    >>> handler = PollHandler(config, store, Sessions(config, store), PolicyRegistry(config, store))
    >>> first = PollRequest(agent=AgentIdentity(service="shop", instance_id="i-1"))
    >>> handler.poll(first).config_version
    1
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy_registry import PolicyRegistry
from otel_adaprof.controller.sessions import Sessions
from otel_adaprof.controller.store_api import (
    ControllerStore,
    DecisionWrite,
    PollContext,
    PollWrite,
    RewardWrite,
)
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest, PollResponse
from otel_adaprof.reward import compute_reward
from otel_adaprof.session_spec import Mode, SessionSpec

log = logging.getLogger(__name__)

#: Decisions whose context is kept in memory for learning (older ones are only stored).
MAX_PENDING_DECISIONS = 10_000
#: Stacks kept per in-memory service profile (the least counted are dropped beyond it).
MAX_PROFILE_STACKS = 5_000


class PollHandler:
    """Answers agent polls. Not async: the HTTP layer calls it (off the event loop)."""

    def __init__(
        self,
        config: ControllerConfig,
        store: ControllerStore,
        sessions: Sessions,
        policies: PolicyRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.sessions = sessions
        self.policies = policies
        self.clock = clock
        self._pending: OrderedDict[tuple[str, int], tuple[DecisionContext, Decision]] = (
            OrderedDict()
        )
        self._profiles: dict[str, dict[str, float]] = {}
        self.decisions_made = 0
        self.rewards_credited = 0

    def poll(self, request: PollRequest) -> PollResponse:
        """Record the report, credit the decision it ran under, answer the next params."""
        now = self.clock()
        agent = request.agent
        service = agent.service
        known = self.store.poll_context(agent.instance_id, service, request.config_version)
        session = known.session
        spec = SessionSpec.parse(session["spec"]) if session else None
        session_id: str | None = session["id"] if session else None
        window = request.window
        stacks = request.stacks.as_dict() if request.stacks else None

        prior = dict(self._profiles.get(service, {}))
        reward: RewardWrite | None = None
        if window is not None:
            reward = self._credit(request, known, prior, stacks or {})
            if stacks:
                self._fold(service, stacks)

        in_force = (
            Params.parse(known.ran_under)
            if known.ran_under is not None
            else self.config.params_for(service)
        )
        mode = spec.mode if spec else Mode.STATIC
        ctx = DecisionContext(
            service=service,
            initial_params=(
                self.sessions.initial_params(spec) if spec else self.config.params_for(service)
            ),
            params_in_force=in_force,
            session_id=session_id,
            mode=mode,
            goal=spec.goal if spec else self.config.policy.goal,
            budget=spec.budget if spec else self.config.policy.budget,
            state=window,
            stacks=request.stacks,
            profile=prior,
        )
        policy = self.policies.for_mode(service, mode)
        decision = self._decide(policy, ctx)
        outcome = self.store.record_poll(
            PollWrite(
                instance_id=agent.instance_id,
                service=service,
                host=agent.host,
                pid=agent.pid,
                backend=agent.profiler_backend.value,
                sdk_version=agent.sdk_version,
                now=now,
                state=window.model_dump(mode="json") if window else None,
                session_id=session_id,
                reported_version=request.config_version,
                window=window.model_dump(mode="json") if window else None,
                stacks=stacks,
                report_session_id=request.session_id if request.session_id else session_id,
                reward=reward,
                decision=DecisionWrite(
                    policy=policy.name,
                    action=decision.action,
                    probability=decision.probability,
                    features=dict(decision.features),
                    params=decision.params.to_json(),
                ),
            )
        )
        if outcome.credited:
            self.rewards_credited += 1
        version = outcome.config_version
        self.decisions_made += 1
        if session_id:
            self.sessions.decided(session_id, decision.params)
        self._remember(agent.instance_id, version, ctx, decision)
        return PollResponse(
            config_version=version,
            params=decision.params,
            session_id=session_id,
            poll_interval_s=self.config.agents.poll_interval_s,
        )

    def _decide(self, policy: Policy, ctx: DecisionContext) -> Decision:
        try:
            return policy.decide(ctx)
        except ContractError:
            raise
        except Exception:  # a policy bug must not take the agents down: fall back
            log.exception(
                "policy %s failed for %s; answering initial params", policy.name, ctx.service
            )
            return Decision(params=ctx.initial_params, probability=1.0, action="fallback")

    def _credit(
        self,
        request: PollRequest,
        known: PollContext,
        prior: dict[str, float],
        window_stacks: dict[str, int],
    ) -> RewardWrite | None:
        """The reward of the decision this window ran under (delayed credit by version);
        the policy learns from it when the decision's context is still in memory."""
        window = request.window
        if window is None or request.config_version == 0 or not known.awaiting_reward:
            return None
        pending = self._pending.pop((request.agent.instance_id, request.config_version), None)
        if pending is not None:
            ctx, decision = pending
            goal, budget = ctx.goal, ctx.budget
        else:  # decided before a restart, or by another replica: the session's terms
            ctx, decision = None, None
            spec = SessionSpec.parse(known.session["spec"]) if known.session else None
            goal = spec.goal if spec else self.config.policy.goal
            budget = spec.budget if spec else self.config.policy.budget
        reward = compute_reward(
            prior=prior,
            window=window_stacks,
            profiler_cpu_fraction=window.profiler_cpu_fraction,
            bytes_per_s=window.bytes_exported_per_s,
            markers_per_s=window.markers_per_s,
            goal=goal,
            budget=budget,
        )
        if ctx is not None and decision is not None and ctx.mode is Mode.ADAPTIVE:
            try:
                self.policies.adaptive(ctx.service).learn(ctx, decision, reward.total)
            except Exception:
                log.exception("policy failed to learn for %s", ctx.service)
        return RewardWrite(total=reward.total, terms=reward.to_json())

    def _fold(self, service: str, stacks: dict[str, int]) -> None:
        profile = self._profiles.setdefault(service, {})
        for stack, count in stacks.items():
            profile[stack] = profile.get(stack, 0.0) + count
        if len(profile) > MAX_PROFILE_STACKS:
            keep = sorted(profile.items(), key=lambda kv: kv[1], reverse=True)[:MAX_PROFILE_STACKS]
            self._profiles[service] = dict(keep)

    def _remember(
        self, instance_id: str, version: int, ctx: DecisionContext, decision: Decision
    ) -> None:
        self._pending[(instance_id, version)] = (ctx, decision)
        while len(self._pending) > MAX_PENDING_DECISIONS:
            self._pending.popitem(last=False)
