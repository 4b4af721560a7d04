"""The controller's domain core: sessions, agent polls, delayed credit, decisions.

Jaeger's adaptive sampling has an aggregator, a calculator and a provider; here a poll
is *recorded* (report → store, stacks → profiles), *credited* (the window's reward goes
to the decision whose config version it ran under, and only to it) and *answered* (the
service's policy decides the next params, logged with its probability).

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.protocol import AgentIdentity, PollRequest
    >>> core = ControllerCore(ControllerConfig(), Store(":memory:"))
    >>> answer = core.poll(PollRequest(agent=AgentIdentity(service="shop", instance_id="i-1")))
    >>> answer.config_version, answer.params == ControllerConfig().default_params
    (1, True)

Config versions are per agent: each answer carries the agent's previous version + 1,
so a report names exactly one decision.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy.heuristic import ThresholdPolicy
from otel_adaprof.controller.policy.static import StaticPolicy
from otel_adaprof.controller.store import Store
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest, PollResponse
from otel_adaprof.reward import PhaseState, RewardBreakdown, WindowObservation, step
from otel_adaprof.session_spec import Mode, PolicyKind, SessionSpec

log = logging.getLogger(__name__)

#: Decisions whose context is kept in memory for learning (older ones are only stored).
MAX_PENDING_DECISIONS = 10_000
#: Stacks kept per in-memory service profile (the least counted are dropped beyond it).
MAX_PROFILE_STACKS = 5_000

PolicyFactory = Callable[[str], Policy]


class NotFound(LookupError):
    """An id that does not exist (answered with 404)."""


def default_adaptive_factory(config: ControllerConfig) -> PolicyFactory:
    """One Vowpal Wabbit policy per service, built from the config's policy section."""

    def build(service: str) -> Policy:
        from otel_adaprof.controller.policy.vw import VWPolicy

        return VWPolicy.from_config(config.policy)

    return build


class ControllerCore:
    """Sessions and polls over a :class:`Store`. Not async: the HTTP layer calls it."""

    def __init__(
        self,
        config: ControllerConfig,
        store: Store,
        *,
        adaptive_factory: PolicyFactory | None = None,
        heuristic: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._adaptive_factory = adaptive_factory or default_adaptive_factory(config)
        self._adaptive: dict[str, Policy] = {}
        self._static = StaticPolicy()
        self._heuristic: Policy | None = heuristic
        self._phases: dict[str, PhaseState] = {}
        self._pending: OrderedDict[tuple[str, int], tuple[DecisionContext, Decision]] = (
            OrderedDict()
        )
        self._profiles: dict[str, dict[str, float]] = {}
        self._last_params: dict[str, Params] = {}
        self.decisions_made = 0
        self.rewards_credited = 0
        #: The last window's reward per service (diagnostics; the simulator reads it).
        self.last_reward: dict[str, RewardBreakdown] = {}

    # sessions -------------------------------------------------------------------------

    def open_session(self, spec: SessionSpec) -> dict[str, Any]:
        """Open a session; it completes by itself after ``spec.duration_s``."""
        now = self.clock()
        session_id = self.store.create_session(
            spec.service,
            self._spec_json(spec),
            now=now,
            ends_at=now + spec.duration_s,
        )
        return self.session(session_id)

    @staticmethod
    def _spec_json(spec: SessionSpec) -> dict[str, Any]:
        data = spec.model_dump(mode="json")
        if spec.initial_params is not None:
            data["initial_params"] = spec.initial_params.to_json()
        return data

    def session(self, session_id: str) -> dict[str, Any]:
        """A session with its current params and counts; :class:`NotFound` if unknown."""
        row = self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        spec = SessionSpec.parse(row["spec"])
        params = self._last_params.get(session_id) or self._initial_params(spec)
        return {**row, "params": params.to_json(), "counts": self.store.session_counts(session_id)}

    def sessions(self) -> list[dict[str, Any]]:
        """Every session, newest first, with current params and counts."""
        return [self.session(row["id"]) for row in self.store.list_sessions()]

    def stop_session(self, session_id: str) -> dict[str, Any]:
        """Complete a session (idempotent) and snapshot its service's model."""
        row = self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        self.store.complete_session(session_id, self.clock())
        self.snapshot_models(row["service"])
        return self.session(session_id)

    def expire_sessions(self) -> list[str]:
        """Complete every session whose duration ran out; returns their ids."""
        expired = self.store.expired_sessions(self.clock())
        for session_id in expired:
            self.stop_session(session_id)
        return expired

    def _initial_params(self, spec: SessionSpec) -> Params:
        return spec.initial_params or self.config.params_for(spec.service)

    # models ---------------------------------------------------------------------------

    def adaptive_policy(self, service: str) -> Policy:
        """The service's learning policy, resumed from its last snapshot if any."""
        policy = self._adaptive.get(service)
        if policy is None:
            policy = self._adaptive_factory(service)
            blob = self.store.load_model(service)
            if blob is not None:
                try:
                    policy.restore(blob)
                except Exception:  # a corrupt snapshot must not stop the service's agents
                    log.exception("model snapshot of %s could not be restored", service)
            self._adaptive[service] = policy
        return policy

    def snapshot_models(self, service: str | None = None) -> int:
        """Write the model of one (or every) adaptive service; returns how many."""
        written = 0
        for name, policy in list(self._adaptive.items()):
            if service is not None and name != service:
                continue
            blob = policy.snapshot()
            if blob is not None:
                self.store.save_model(name, blob, self.clock())
                written += 1
        return written

    # polls ----------------------------------------------------------------------------

    def poll(self, request: PollRequest) -> PollResponse:
        """Record the report, credit the decision it ran under, answer the next params."""
        now = self.clock()
        agent = request.agent
        service = agent.service
        session = self.store.open_session_for(service)
        spec = SessionSpec.parse(session["spec"]) if session else None
        session_id = session["id"] if session else None
        window = request.window
        stacks = request.stacks.as_dict() if request.stacks else None

        self.store.upsert_agent(
            instance_id=agent.instance_id,
            service=service,
            host=agent.host,
            pid=agent.pid,
            backend=agent.profiler_backend.value,
            sdk_version=agent.sdk_version,
            now=now,
            state=window.model_dump(mode="json") if window else None,
        )
        prior = dict(self._profiles.get(service, {}))
        phase = self._phases.get(service)
        if window is not None:
            self.store.add_report(
                instance_id=agent.instance_id,
                service=service,
                session_id=request.session_id if request.session_id else session_id,
                config_version=request.config_version,
                window=window.model_dump(mode="json"),
                stacks=stacks,
                now=now,
            )
            phase = self._credit(request, stacks or {})
            if stacks:
                self._fold(service, stacks)

        previous = self.store.get_decision(agent.instance_id, request.config_version)
        in_force = Params.parse(previous["params"]) if previous else self.config.params_for(service)
        mode = spec.mode if spec else Mode.STATIC
        ctx = DecisionContext(
            service=service,
            initial_params=self._initial_params(spec) if spec else self.config.params_for(service),
            params_in_force=in_force,
            session_id=session_id,
            mode=mode,
            goal=spec.goal if spec else self.config.policy.goal,
            budget=spec.budget if spec else self.config.policy.budget,
            state=window,
            stacks=request.stacks,
            profile=prior,
            phase=phase,
        )
        policy = self._policy_for(spec, service)
        decision = self._decide(policy, ctx)
        version = max(self.store.agent_version(agent.instance_id), request.config_version) + 1
        params_json = decision.params.to_json()
        self.store.add_decision(
            service=service,
            instance_id=agent.instance_id,
            session_id=session_id,
            config_version=version,
            policy=policy.name,
            action=decision.action,
            probability=decision.probability,
            features=dict(decision.features),
            params=params_json,
            now=now,
        )
        self.store.set_agent_config(agent.instance_id, version, params_json)
        self.decisions_made += 1
        if session_id:
            self._last_params[session_id] = decision.params
        self._remember(agent.instance_id, version, ctx, decision)
        return PollResponse(
            config_version=version,
            params=decision.params,
            session_id=session_id,
            poll_interval_s=self.config.agents.poll_interval_s,
        )

    def _policy_for(self, spec: SessionSpec | None, service: str) -> Policy:
        """The session's policy: the service's bandit, the threshold heuristic or static."""
        if spec is None or spec.mode is Mode.STATIC or spec.policy is PolicyKind.STATIC:
            return self._static
        if spec.policy is PolicyKind.HEURISTIC:
            if self._heuristic is None:
                from otel_adaprof.controller.policy.catalog import load_catalog

                self._heuristic = ThresholdPolicy(load_catalog(self.config.policy.catalog))
            return self._heuristic
        return self.adaptive_policy(service)

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

    def _credit(self, request: PollRequest, window_stacks: dict[str, int]) -> PhaseState:
        """Score the window (advancing the service's phase memory) and reward the
        decision it ran under (delayed credit by version); returns the new phase state."""
        window = request.window
        assert window is not None
        service = request.agent.service
        instance = request.agent.instance_id
        pending = None
        decision_row = None
        if request.config_version > 0:
            decision_row = self.store.get_decision(instance, request.config_version)
            if decision_row is not None and decision_row["reward"] is None:
                pending = self._pending.pop((instance, request.config_version), None)
        if pending is not None:
            ctx, decision = pending
            goal, budget = ctx.goal, ctx.budget
            changed = decision.params != ctx.params_in_force
        else:  # decided before a restart, or already credited: score with the defaults
            ctx, decision = None, None
            goal, budget = self.config.policy.goal, self.config.policy.budget
            changed = False
        signals = getattr(window, "change_signals", None)
        obs = WindowObservation(
            end_unix=window.window_start + window.window_seconds,
            seconds=window.window_seconds,
            samples=window_stacks,
            profiler_cpu_fraction=window.profiler_cpu_fraction,
            bytes_per_s=window.bytes_exported_per_s,
            markers_per_s=window.markers_per_s,
            slow_spans=int(getattr(window, "slow_spans", 0) or 0),
            slow_span_samples=int(getattr(window, "slow_span_samples", 0) or 0),
            changes=int(getattr(signals, "changes", 0) or 0) if signals is not None else 0,
            last_change_unix=getattr(signals, "last_change_unix", None) if signals else None,
            params_changed=changed,
        )
        phase, reward = step(self._phases.get(service, PhaseState()), obs, goal, budget)
        self._phases[service] = phase
        self.last_reward[service] = reward
        if decision_row is None or decision_row["reward"] is not None:
            return phase
        self.store.set_reward(instance, request.config_version, reward.total, reward.to_json())
        self.rewards_credited += 1
        # Only the bandit's own decisions (they log what it offered) are learned from.
        if ctx is not None and decision is not None and "offered" in decision.features:
            try:
                self.adaptive_policy(ctx.service).learn(ctx, decision, reward.total)
            except Exception:
                log.exception("policy failed to learn for %s", ctx.service)
        return phase

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
