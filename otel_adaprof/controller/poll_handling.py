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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy_registry import PolicyRegistry
from otel_adaprof.controller.poll_codec import params_json
from otel_adaprof.controller.poll_timing import PollTiming
from otel_adaprof.controller.sessions import Sessions
from otel_adaprof.controller.store_api import (
    ControllerStore,
    DecisionWrite,
    PollContext,
    PollOutcome,
    PollWrite,
    RewardWrite,
)
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest, PollResponse
from otel_adaprof.reward import (
    PhaseState,
    RewardBreakdown,
    WindowObservation,
    keyed,
    stack_key,
    step,
)
from otel_adaprof.session_spec import Mode, PolicyKind, RewardWeights, SessionSpec

log = logging.getLogger(__name__)

#: Decisions whose context is kept in memory for learning (older ones are only stored).
MAX_PENDING_DECISIONS = 10_000
#: Highest config version an agent may report (the next one must fit a 64-bit integer).
MAX_CONFIG_VERSION = 2**62
#: Stacks kept per in-memory service profile (the least counted are dropped beyond it).
MAX_PROFILE_STACKS = 5_000


def _check_version(request: PollRequest) -> None:
    """A version the database can store (and store the next one of)."""
    if request.config_version > MAX_CONFIG_VERSION:
        raise ContractError(
            [("config_version", f"{request.config_version} is over {MAX_CONFIG_VERSION}")]
        )


def _phase_changes(signals: Any) -> tuple[int, float | None]:
    """The changes a window's report signals to the reward, and when the last fired.

    The profile changes (those the window's profile mode can show in samples: in cpu
    mode a latency change alone is not one, docs/protocol.md), or every change from an
    agent that does not report them. Each restarts the reward's phase, and a change the
    samples cannot confirm restarted it for nothing: in a run with 4x phases the agent's
    latency signal fired four times in 90 s of watching, each a pending change the
    bandit had no reason to sample away (docs/benchmarks.md).

    >>> from otel_adaprof.protocol import ChangeSignals
    >>> _phase_changes(ChangeSignals(changes=1, last_change_unix=5.0, profile_changes=0))
    (0, None)
    >>> _phase_changes(ChangeSignals(changes=2, last_change_unix=5.0))  # an older agent
    (2, 5.0)
    >>> _phase_changes(None)
    (0, None)
    """
    if signals is None:
        return 0, None
    profile = getattr(signals, "profile_changes", None)
    if profile is not None:
        return int(profile), getattr(signals, "last_profile_change_unix", None) if profile else None
    return int(getattr(signals, "changes", 0) or 0), getattr(signals, "last_change_unix", None)


def _uses_bandit(spec: SessionSpec | None) -> bool:
    """Whether a session decides with its service's bandit (as ``for_spec`` answers)."""
    return spec is not None and spec.mode is Mode.ADAPTIVE and spec.policy is PolicyKind.ADAPTIVE


@dataclass(frozen=True)
class _Known:
    context: PollContext
    spec: SessionSpec | None  # of context.session
    in_force: Params | None = None  # context.ran_under, when known as Params already


@dataclass(frozen=True)
class _Plan:
    write: PollWrite
    ctx: DecisionContext
    decision: Decision


class PollHandler:
    """Answers agent polls: :meth:`poll` (blocking) or :meth:`poll_async` (event loop)."""

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
        # each profile folded onto reward keys (reward.keyed), kept with it: the same
        # values (sums of whole counts) in the same key order as keyed(profile)
        self._keyed: dict[str, dict[str, float]] = {}
        self._phases: dict[str, PhaseState] = {}
        # per adaptive service: (when, session id, deciding agent, the bandit's last own
        # decision), shared with other agents' polls of the next policy.share_decision_s
        self._shared: dict[str, tuple[float, str | None, str, Decision]] = {}
        self.decisions_made = 0
        #: Polls answered with a decision shared from another poll (no prediction).
        self.decisions_shared = 0
        self.rewards_credited = 0
        #: The last window's reward per service (diagnostics; the simulator reads it).
        self.last_reward: dict[str, RewardBreakdown] = {}

    def poll(self, request: PollRequest) -> PollResponse:
        """Record the report, credit the decision it ran under, answer the next params
        (synchronously: the store's calls run on the caller's thread)."""
        _check_version(request)
        known = self._known(request) or self.fetch(request)
        plan = self._plan(request, known)
        return self._answer(plan, self.store.record_poll(plan.write))

    async def poll_async(
        self,
        request: PollRequest,
        commit: Callable[[PollWrite, PollTiming | None], Awaitable[PollOutcome]],
        run_db: Callable[..., Awaitable[Any]],
        timing: PollTiming | None = None,
    ) -> PollResponse:
        """:meth:`poll` for the event loop: reads run with ``run_db`` (a thread) and only
        when memory cannot answer; the writes go to ``commit`` (group commit). The
        policy decides and learns on the caller's thread, the only one using models.
        ``timing``, when given, gets each part's time marked."""
        _check_version(request)
        known = self._known(request)
        if known is None:
            known = await run_db(self.fetch, request)
        service = request.agent.service
        if self._needs_model(request, known) and not self.policies.is_loaded(service):
            blob = await run_db(self.store.load_model, service)
            self.policies.install(service, blob)
        if timing is not None:
            timing.mark("read")
        plan = self._plan(request, known, timing)
        outcome = await commit(plan.write, timing)
        if timing is not None:
            timing.mark("resume")
        return self._answer(plan, outcome)

    def fetch(self, request: PollRequest) -> _Known:
        """Read what a poll needs from the store (and refresh the session cache)."""
        service = request.agent.service
        generation = self.sessions.generation(service)
        ctx = self.store.poll_context(request.agent.instance_id, service, request.config_version)
        spec = self.sessions.note_open(service, ctx.session, generation)
        return _Known(ctx, spec)

    def _known(self, request: PollRequest) -> _Known | None:
        """What the poll needs, from memory; None when the store must be read."""
        fresh, session, spec = self.sessions.cached_open(request.agent.service)
        if not fresh:
            return None
        if request.config_version == 0:
            return _Known(PollContext(session, None, False), spec)
        pending = self._pending.get((request.agent.instance_id, request.config_version))
        if pending is None:  # decided before a restart, credited already, or evicted
            return None
        # decided here and not yet credited here (crediting pops it)
        params = pending[1].params
        return _Known(PollContext(session, params_json(params), True), spec, params)

    def _needs_model(self, request: PollRequest, known: _Known) -> bool:
        """Whether this poll decides or learns with the service's bandit (mirrors
        :meth:`PolicyRegistry.for_spec` and the learning rule of :meth:`_credit`)."""
        if _uses_bandit(known.spec):
            return True
        pending = self._pending.get((request.agent.instance_id, request.config_version))
        return pending is not None and "offered" in pending[1].features

    def _plan(self, request: PollRequest, known: _Known, timing: PollTiming | None = None) -> _Plan:
        """Credit and decide (in memory); the writes that make it durable."""
        now = self.clock()
        request = _with_late_cpu(request)
        agent = request.agent
        service = agent.service
        session, spec = known.context.session, known.spec
        session_id: str | None = session["id"] if session else None
        window = request.window
        stacks = _with_late(request)

        # the service's profile before this window: the live dicts (not copies, a
        # profile holds up to MAX_PROFILE_STACKS stacks), folded into after deciding
        prior = self._profiles.setdefault(service, {})
        keyed_prior = self._keyed.setdefault(service, {})
        reward: RewardWrite | None = None
        if window is not None:
            reward = self._credit(request, known.context, prior, stacks or {})
        if timing is not None:
            timing.mark("credit")

        ran_under = known.context.ran_under
        if known.in_force is not None:
            in_force = known.in_force
        elif ran_under is not None:
            in_force = Params.parse(ran_under)
        else:
            in_force = self.config.params_for(service)
        mode = spec.mode if spec else Mode.STATIC
        ctx = DecisionContext(
            service=service,
            initial_params=(
                self.sessions.initial_params(spec) if spec else self.config.params_for(service)
            ),
            params_in_force=in_force,
            session_id=session_id,
            mode=mode,
            goal=self.goal_for(spec, agent.profiler_backend.value),
            budget=spec.budget if spec else self.config.policy.budget,
            state=window,
            stacks=request.stacks,
            profile=prior,
            keyed_profile=keyed_prior,
            phase=self._phases.get(service),
            profiler_backend=agent.profiler_backend.value,
        )
        if _uses_bandit(spec):
            self.policies.pin(service)  # an open session keeps its model in memory
        else:
            self.policies.unpin(service)  # (a session closed by another controller)
            self._shared.pop(service, None)
        policy = self.policies.for_spec(spec)
        try:
            decision = self._decide(policy, ctx, agent.instance_id, now)
        finally:
            if window is not None and stacks:
                self._fold(service, stacks)
        window_json = window.model_dump(mode="json") if window else None
        write = PollWrite(
            instance_id=agent.instance_id,
            service=service,
            host=agent.host,
            pid=agent.pid,
            backend=agent.profiler_backend.value,
            sdk_version=agent.sdk_version,
            now=now,
            state=window_json,
            session_id=session_id,
            reported_version=request.config_version,
            window=window_json,
            stacks=stacks,
            report_session_id=request.session_id if request.session_id else session_id,
            reward=reward,
            decision=DecisionWrite(
                policy=policy.name,
                action=decision.action,
                probability=decision.probability,
                features=dict(decision.features),
                params=params_json(decision.params),
            ),
        )
        if timing is not None:
            timing.mark("decide")
        return _Plan(write, ctx, decision)

    def _answer(self, plan: _Plan, outcome: PollOutcome) -> PollResponse:
        """Once the writes are durable: remember the decision, answer the agent."""
        if outcome.credited:
            self.rewards_credited += 1
        self.decisions_made += 1
        session_id = plan.ctx.session_id
        if session_id:
            self.sessions.decided(session_id, plan.decision.params)
        version = outcome.config_version
        self._remember(plan.write.instance_id, version, plan.ctx, plan.decision)
        # every value already validated (the store's version, a catalog's or the
        # config's params, the session's id, the config's interval): not again
        return PollResponse.model_construct(
            config_version=version,
            params=plan.decision.params,
            session_id=session_id,
            poll_interval_s=self.config.agents.interval_for(
                settled=bool(plan.decision.features.get("settled"))
            ),
        )

    def _decide(
        self, policy: Policy, ctx: DecisionContext, instance_id: str, now: float
    ) -> Decision:
        """The policy's decision, or the service's shared one (``share_decision_s``):
        within that long of the bandit's last own decision for the same session, the
        poll of another agent gets it through :meth:`Policy.decide_shared` (no
        prediction, nothing learned). An agent's own next poll always decides."""
        hold = self.config.policy.share_decision_s
        try:
            shared = self._shared.get(ctx.service) if hold > 0 else None
            if (
                shared is not None
                and shared[1] == ctx.session_id
                and shared[2] != instance_id
                and 0 <= now - shared[0] < hold
            ):
                decision = policy.decide_shared(ctx, shared[3])
                if decision.features.get("shared"):
                    self.decisions_shared += 1
                    return decision
            else:
                decision = policy.decide(ctx)
            if hold > 0 and "offered" in decision.features:  # the bandit's own decision
                self._shared[ctx.service] = (now, ctx.session_id, instance_id, decision)
            return decision
        except ContractError:
            raise
        except Exception:  # a policy bug must not take the agents down: fall back
            log.exception(
                "policy %s failed for %s; answering initial params", policy.name, ctx.service
            )
            return Decision(params=ctx.initial_params, probability=1.0, action="fallback")

    def goal_for(self, spec: SessionSpec | None, backend: str) -> RewardWeights:
        """The goal a window is decided and scored under: its session's, else the
        controller's default, as it applies to the agent's profiler ``backend``
        (:meth:`RewardWeights.for_profiler`: each profiler its own accuracy target)."""
        return (spec.goal if spec else self.config.policy.goal).for_profiler(backend)

    def _credit(
        self,
        request: PollRequest,
        known: PollContext,
        prior: dict[str, float],
        window_stacks: dict[str, int],
    ) -> RewardWrite | None:
        """Score the window (advancing the service's phase memory, whatever the session)
        and return the reward of the decision it ran under (delayed credit by version);
        the policy learns from it when the decision's context is still in memory."""
        window = request.window
        assert window is not None
        service = request.agent.service
        awaiting = request.config_version > 0 and known.awaiting_reward
        pending = (
            self._pending.pop((request.agent.instance_id, request.config_version), None)
            if awaiting
            else None
        )
        if pending is not None:
            ctx, decision = pending
            goal, budget = ctx.goal, ctx.budget
            changed = decision.params is not ctx.params_in_force and (
                decision.params != ctx.params_in_force
            )
        else:  # decided before a restart, or by another replica: the session's terms
            ctx, decision = None, None
            spec = SessionSpec.parse(known.session["spec"]) if known.session else None
            goal = self.goal_for(spec, request.agent.profiler_backend.value)
            budget = spec.budget if spec else self.config.policy.budget
            changed = False
        signals = getattr(window, "change_signals", None)
        changes, last_change = _phase_changes(signals)
        obs = WindowObservation(
            end_unix=window.window_start + window.window_seconds,
            seconds=window.window_seconds,
            samples=window_stacks,
            profiler_cpu_fraction=window.profiler_cpu_fraction,
            bytes_per_s=window.bytes_exported_per_s,
            markers_per_s=window.markers_per_s,
            slow_spans=int(getattr(window, "slow_spans", 0) or 0),
            slow_span_samples=int(getattr(window, "slow_span_samples", 0) or 0),
            slow_spans_sampled=getattr(window, "slow_spans_sampled", None),
            changes=changes,
            last_change_unix=last_change,
            new_code=int(getattr(signals, "new_code", 0) or 0),
            params_changed=changed,
            app_cpu_fraction=window.app_cpu_fraction,
        )
        phase, reward = step(self._phases.get(service, PhaseState()), obs, goal, budget)
        self._phases[service] = phase
        self.last_reward[service] = reward
        if not awaiting:
            return None
        # Only the bandit's own decisions (they log what it offered) are learned from.
        if ctx is not None and decision is not None and "offered" in decision.features:
            try:
                self.policies.adaptive(ctx.service).learn(ctx, decision, reward.total)
            except Exception:
                log.exception("policy failed to learn for %s", ctx.service)
        terms = dict(reward.__dict__)  # the reward's terms: its fields, in order
        return RewardWrite(total=reward.total, terms=terms)

    def _fold(self, service: str, stacks: dict[str, int]) -> None:
        """Add a window's samples to the service's in-memory profile."""
        profile = self._profiles.setdefault(service, {})
        folded = self._keyed.setdefault(service, {})
        for stack, count in stacks.items():
            profile[stack] = profile.get(stack, 0.0) + count
            key = stack_key(stack)
            folded[key] = folded.get(key, 0.0) + float(count)
        if len(profile) > MAX_PROFILE_STACKS:
            keep = sorted(profile.items(), key=lambda kv: kv[1], reverse=True)[:MAX_PROFILE_STACKS]
            self._profiles[service] = dict(keep)
            self._keyed[service] = keyed(self._profiles[service])

    def _remember(
        self, instance_id: str, version: int, ctx: DecisionContext, decision: Decision
    ) -> None:
        self._pending[(instance_id, version)] = (ctx, decision)
        while len(self._pending) > MAX_PENDING_DECISIONS:
            self._pending.popitem(last=False)


#: Part of a window's ``profiler_cpu_breakdown`` that holds the CPU of earlier versions
#: reported late (:func:`_with_late_cpu`).
LATE_CPU_PART = "late"


def _with_late_cpu(request: PollRequest) -> PollRequest:
    """The report, its window's profiler CPU with the late CPU of earlier versions added.

    An agent hands each window exactly its own version's CPU; what an earlier version
    spent after its report — a cut py-spy run's tail, or the agent's threads between a
    window's close and the new params (the poll that reported it, the span join) — comes
    in a later report's ``late_stacks`` (``profiler_cpu_seconds``). It was spent in the
    wall time of the window it arrives with (that window began at the close), so it
    counts there, as its late samples do (:func:`_with_late`): in the window's CPU that
    the budget, the reward's cost and every report read, as part ``late`` of the
    breakdown. Before session 44 it was dropped: a sampling agent's CPU read about
    0.5 ms a second low (docs/benchmarks.md, "Counting a window's close").

    >>> from otel_adaprof.protocol import AgentIdentity, LateStacks, ObservedState
    >>> from otel_adaprof.protocol import StackHistogram
    >>> agent = AgentIdentity(service="s", instance_id="i", host="h", pid=1)
    >>> window = ObservedState(window_start=0.0, window_seconds=3.0, profiler_cpu_seconds=0.01,
    ...                        profiler_cpu_breakdown={"native": 0.01})
    >>> late = LateStacks(config_version=2, stacks=StackHistogram(),
    ...                   profiler_cpu_seconds=0.002)
    >>> out = _with_late_cpu(PollRequest(agent=agent, config_version=3, window=window,
    ...                                  late_stacks=[late])).window
    >>> round(out.profiler_cpu_seconds, 6), out.profiler_cpu_breakdown
    (0.012, {'native': 0.01, 'late': 0.002})
    """
    window = request.window
    late = sum(item.profiler_cpu_seconds for item in request.late_stacks or [])
    if window is None or late <= 0.0:
        return request
    breakdown = dict(window.profiler_cpu_breakdown)
    breakdown[LATE_CPU_PART] = breakdown.get(LATE_CPU_PART, 0.0) + late
    window = window.model_copy(
        update={
            "profiler_cpu_seconds": window.profiler_cpu_seconds + late,
            "profiler_cpu_breakdown": breakdown,
        }
    )
    return request.model_copy(update={"window": window})


def _with_late(request: PollRequest) -> dict[str, int] | None:
    """The report's samples, with the late ones of earlier versions added.

    An agent whose py-spy run spans a window's close reports that run's samples in a
    later report (``late_stacks``, each tagged with the version it ran under). They
    belong to the same service and session: they count in the session's profile and in
    the phase's samples in the window they arrive in (the reward of the version that
    took them was already credited).

    >>> from otel_adaprof.protocol import AgentIdentity, LateStacks, StackHistogram
    >>> agent = AgentIdentity(service="s", instance_id="i", host="h", pid=1)
    >>> h = lambda n: StackHistogram.model_validate({"stacks": [{"stack": "a", "count": n}]})
    >>> _with_late(PollRequest(agent=agent, config_version=3, stacks=h(2),
    ...                        late_stacks=[LateStacks(config_version=2, stacks=h(5))]))
    {'a': 7}
    """
    stacks = request.stacks.as_dict() if request.stacks else None
    late = getattr(request, "late_stacks", None) or []
    if not late:
        return stacks
    merged = dict(stacks or {})
    for item in late:
        for stack, count in item.stacks.as_dict().items():
            merged[stack] = merged.get(stack, 0) + count
    return merged or stacks
