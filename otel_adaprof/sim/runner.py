"""Run one policy against one scenario, playing the controller's side of the loop.

Each window: the simulated agent reports (a real :class:`PollRequest`), the window is
scored with :func:`otel_adaprof.reward.compute_reward` against the service profile
accumulated so far, the decision whose config version the window ran under is
credited (and only that one), and the policy decides the next params, which get a new
config version. This is the controller's poll path without HTTP and SQLite.

Usage::

    >>> from otel_adaprof.controller.policy import StaticPolicy
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> r = run_policy(StaticPolicy(), SCENARIOS["hot-path"], seed=0, windows=5,
    ...                initial=Params(sampling_interval_ms=0))
    >>> r.total_reward <= 0.5, r.violations
    (True, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.params import DEFAULT_PARAMS, Params
from otel_adaprof.reward import RewardBreakdown, compute_reward
from otel_adaprof.session_spec import Mode, OverheadBudget, RewardWeights
from otel_adaprof.sim.agent import SimulatedAgent
from otel_adaprof.sim.scenario import WINDOW_SECONDS, Scenario


@dataclass(frozen=True)
class WindowRecord:
    """What happened in one simulated window."""

    index: int
    phase: int
    action: str
    explored: bool
    reward: RewardBreakdown
    information: float  # weighted information + novelty terms of the reward
    cpu_fraction: float  # measured profiler CPU, fraction of one core
    bytes_per_s: float
    samples: int
    over_budget: bool


@dataclass
class RunResult:
    """A policy's run over a scenario."""

    policy: str
    scenario: str
    seed: int
    windows: list[WindowRecord] = field(default_factory=list)

    @property
    def total_reward(self) -> float:
        """Cumulative reward."""
        return sum(w.reward.total for w in self.windows)

    @property
    def information(self) -> float:
        """Cumulative weighted information (KL + novelty terms)."""
        return sum(w.information for w in self.windows)

    @property
    def mean_cpu(self) -> float:
        """Mean profiler CPU (fraction of one core)."""
        return sum(w.cpu_fraction for w in self.windows) / max(1, len(self.windows))

    @property
    def violations(self) -> int:
        """Windows measured over budget."""
        return sum(1 for w in self.windows if w.over_budget)

    def phase_rewards(self, phases: int) -> list[float]:
        """Cumulative reward per phase."""
        out = [0.0] * phases
        for w in self.windows:
            out[w.phase] += w.reward.total
        return out


def run_policy(
    policy: Policy,
    scenario: Scenario,
    *,
    seed: int,
    windows: int | None = None,
    initial: Params = DEFAULT_PARAMS,
    mode: Mode = Mode.ADAPTIVE,
    goal: RewardWeights | None = None,
    budget: OverheadBudget | None = None,
    label: str | None = None,
    on_credit: Callable[[Decision, RewardBreakdown], None] | None = None,
) -> RunResult:
    """Run ``policy`` for ``windows`` windows (default: the whole scenario).

    ``on_credit`` sees every credited decision with its reward (to log decisions the
    way the controller does, e.g. for offline evaluation)."""
    goal = goal or RewardWeights()
    budget = budget or OverheadBudget()
    total = windows if windows is not None else scenario.total_windows
    agent = SimulatedAgent(scenario.name, np.random.default_rng(seed))
    profile: dict[str, float] = {}
    result = RunResult(label or policy.name, scenario.name, seed)

    ctx = DecisionContext(
        service=scenario.name,
        initial_params=initial,
        params_in_force=initial,
        mode=mode,
        goal=goal,
        budget=budget,
    )
    decision = policy.decide(ctx)
    version = 1
    pending: dict[int, tuple[DecisionContext, Decision]] = {version: (ctx, decision)}
    params = decision.params
    for i in range(total):
        phase_i = scenario.phase_index(i)
        req = agent.report(params, version, scenario.phases[phase_i], i * WINDOW_SECONDS)
        state = req.window
        assert state is not None  # a simulated agent always reports its window
        hist = req.stacks.as_dict() if req.stacks is not None else {}
        reward = compute_reward(
            prior=profile,
            window=hist,
            profiler_cpu_fraction=state.profiler_cpu_fraction,
            bytes_per_s=state.bytes_exported_per_s,
            markers_per_s=state.markers_per_s,
            goal=goal,
            budget=budget,
        )
        credited = pending.pop(req.config_version, None)
        if credited is not None:
            policy.learn(credited[0], credited[1], reward.total)
            if on_credit is not None:
                on_credit(credited[1], reward)
        result.windows.append(
            WindowRecord(
                index=i,
                phase=phase_i,
                action=decision.action,
                explored=decision.explored,
                reward=reward,
                information=goal.information * reward.information_gain
                + goal.novelty * reward.novelty,
                cpu_fraction=state.profiler_cpu_fraction,
                bytes_per_s=state.bytes_exported_per_s,
                samples=req.stacks.total_samples if req.stacks is not None else 0,
                over_budget=state.profiler_cpu_fraction > budget.cpu_fraction
                or state.bytes_exported_per_s > budget.bytes_per_s,
            )
        )
        ctx = DecisionContext(
            service=scenario.name,
            initial_params=initial,
            params_in_force=params,
            mode=mode,
            goal=goal,
            budget=budget,
            state=state,
            stacks=req.stacks,
            profile=dict(profile),
        )
        for stack, count in hist.items():
            profile[stack] = profile.get(stack, 0.0) + count
        decision = policy.decide(ctx)
        version += 1
        pending[version] = (ctx, decision)
        params = decision.params
    return result
