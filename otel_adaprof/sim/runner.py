"""Run one policy against one scenario through the controller's real poll handling.

Each window the simulated agent sends a real :class:`PollRequest` to a
:class:`~otel_adaprof.controller.polling.ControllerCore` (in-memory SQLite store,
injected clock): the controller records it, scores it with the reward's phase memory,
credits the decision whose config version it ran under and answers the next params.
There is no copy of that loop here; this module only plays the agent and keeps the
user measures (per-phase L1 against the truth, detection delay, profiler CPU).

Usage::

    >>> from otel_adaprof.controller.policy import StaticPolicy
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> r = run_policy(StaticPolicy(), SCENARIOS["hot-path"], seed=0, windows=5,
    ...                initial=Params(sampling_interval_ms=0))
    >>> r.total_reward <= 0.0, r.violations, r.mean_cpu < 0.01
    (True, 0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Decision, Policy
from otel_adaprof.controller.policy.heuristic import ThresholdPolicy
from otel_adaprof.controller.policy.static import StaticPolicy
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.params import DEFAULT_PARAMS, Params
from otel_adaprof.protocol import PollRequest
from otel_adaprof.reward import RewardBreakdown, keyed, stack_key, union_keys
from otel_adaprof.session_spec import Mode, OverheadBudget, PolicyKind, RewardWeights, SessionSpec
from otel_adaprof.sim.agent import SimulatedAgent, stack_for
from otel_adaprof.sim.calibration import Calibration
from otel_adaprof.sim.scenario import WINDOW_SECONDS, Scenario

#: Session length of a simulated run (longer than any scenario).
SIM_SESSION_S = 7 * 24 * 3600.0
#: Unix time the simulated clock starts at.
SIM_EPOCH = 1_000_000.0


@dataclass(frozen=True)
class WindowRecord:
    """What happened in one simulated window."""

    index: int
    phase: int
    action: str
    explored: bool
    reward: RewardBreakdown
    information: float  # weighted accuracy + detection terms of the reward
    cpu_fraction: float  # measured profiler CPU, fraction of one core
    bytes_per_s: float
    samples: int
    over_budget: bool
    keyed_samples: dict[str, float] = field(default_factory=dict)
    params_changed: bool = False


@dataclass
class RunResult:
    """A policy's run over a scenario, with the user measures."""

    policy: str
    scenario: str
    seed: int
    windows: list[WindowRecord] = field(default_factory=list)
    truth: list[dict[str, float]] = field(default_factory=list)  # per phase, keyed shares
    window_s: float = WINDOW_SECONDS  # the scenario's window

    @property
    def total_reward(self) -> float:
        """Cumulative reward (a diagnostic)."""
        return sum(w.reward.total for w in self.windows)

    @property
    def information(self) -> float:
        """Cumulative weighted accuracy and detection terms."""
        return sum(w.information for w in self.windows)

    @property
    def mean_cpu(self) -> float:
        """Mean profiler CPU (fraction of one core)."""
        return sum(w.cpu_fraction for w in self.windows) / max(1, len(self.windows))

    @property
    def violations(self) -> int:
        """Windows measured over the CPU budget (the budget holds on average; see
        :attr:`budget_average_ok`)."""
        return sum(1 for w in self.windows if w.over_budget)

    @property
    def params_changes(self) -> int:
        """Windows whose params differ from the window before."""
        return sum(1 for w in self.windows if w.params_changed)

    def phase_rewards(self, phases: int) -> list[float]:
        """Cumulative reward per phase."""
        out = [0.0] * phases
        for w in self.windows:
            out[w.phase] += w.reward.total
        return out

    def phase_l1(self) -> list[float | None]:
        """Per phase: L1 distance of the phase's sampled function shares to the truth
        (``None`` without samples) — the benchmark's headline measure."""
        out: list[float | None] = []
        for i, truth in enumerate(self.truth):
            got: dict[str, float] = {}
            for w in self.windows:
                if w.phase == i:
                    for k, v in w.keyed_samples.items():
                        got[k] = got.get(k, 0.0) + v
            total = sum(got.values())
            if total <= 0:
                out.append(None)
                continue
            keys = union_keys(got, truth)
            out.append(sum(abs(got.get(k, 0.0) / total - truth.get(k, 0.0)) for k in keys))
        return out

    def detection_s(self) -> list[float | None]:
        """Per phase after the first: seconds from its start until a function the phase
        before did not run (its new hot path, at least 5 % of it) holds at least half
        its share of the phase's samples, as ``adaprof bench`` measures the hot path
        (``None`` if never, or if the phase brings no new function)."""
        out: list[float | None] = []
        for i in range(1, len(self.truth)):
            before, after = self.truth[i - 1], self.truth[i]
            new = {k: v for k, v in after.items() if before.get(k, 0.0) <= 0.0 and v >= 0.05}
            if not new:
                out.append(None)
                continue
            key = max(new, key=lambda k: new[k])
            got: dict[str, float] = {}
            found = None
            windows = [w for w in self.windows if w.phase == i]
            for j, w in enumerate(windows):
                for k, v in w.keyed_samples.items():
                    got[k] = got.get(k, 0.0) + v
                total = sum(got.values())
                if total > 0 and got.get(key, 0.0) / total >= after[key] / 2.0:
                    found = (j + 1) * self.window_s
                    break
            out.append(found)
        return out


def _truth(scenario: Scenario) -> list[dict[str, float]]:
    out = []
    for phase in scenario.phases:
        total = sum(phase.functions.values())
        shares: dict[str, float] = {}
        for fn, w in phase.functions.items():
            key = stack_key(stack_for(fn, 0, phase.frames))
            shares[key] = shares.get(key, 0.0) + w / total
        out.append(shares)
    return out


def _kind(policy: Policy, mode: Mode) -> PolicyKind:
    if mode is Mode.STATIC or isinstance(policy, StaticPolicy):
        return PolicyKind.STATIC
    if isinstance(policy, ThresholdPolicy):
        return PolicyKind.HEURISTIC
    return PolicyKind.ADAPTIVE


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
    calib: Calibration | None = None,
) -> RunResult:
    """Run ``policy`` for ``windows`` windows (default: the whole scenario) through a
    fresh :class:`ControllerCore` whose service policy is ``policy``, in ``calib``'s
    world (default: py-spy's; :func:`~otel_adaprof.sim.physics.calibration`).

    ``on_credit`` sees every credited decision with its reward (as the controller
    stored it: params, action, probability and logged features)."""
    goal = goal or RewardWeights()
    budget = budget or OverheadBudget()
    kind = _kind(policy, mode)
    if kind is PolicyKind.STATIC:
        mode = Mode.STATIC
    total = windows if windows is not None else scenario.total_windows
    clock = [SIM_EPOCH]
    store = Store(":memory:")
    core = ControllerCore(
        ControllerConfig(),
        store,
        adaptive_factory=lambda _service: policy,
        heuristic=policy if kind is PolicyKind.HEURISTIC else None,
        clock=lambda: clock[0],
    )
    service = scenario.name
    core.open_session(
        SessionSpec(
            service=service,
            duration_s=SIM_SESSION_S,
            mode=mode,
            policy=kind,
            goal=goal,
            budget=budget,
            initial_params=initial,
        )
    )
    window_s = scenario.window_s
    agent = SimulatedAgent(service, np.random.default_rng(seed), window_s=window_s, calib=calib)
    result = RunResult(
        label or policy.name, scenario.name, seed, truth=_truth(scenario), window_s=window_s
    )
    answer = core.poll(PollRequest(agent=agent.identity))
    params, version = answer.params, answer.config_version
    previous = params
    try:
        for i in range(total):
            phase_i = scenario.phase_index(i)
            start = SIM_EPOCH + i * window_s
            req = agent.report(params, version, scenario.phases[phase_i], start)
            clock[0] = start + window_s
            row = store.get_decision(agent.identity.instance_id, version)
            answer = core.poll(req)
            reward = core.last_reward[service]
            state = req.window
            assert state is not None
            hist = req.stacks.as_dict() if req.stacks is not None else {}
            if on_credit is not None and row is not None:
                on_credit(
                    Decision(
                        params=Params.parse(row["params"]),
                        probability=row["probability"],
                        action=row["action"],
                        features=row["features"] or {},
                    ),
                    reward,
                )
            result.windows.append(
                WindowRecord(
                    index=i,
                    phase=phase_i,
                    action=row["action"] if row is not None else "",
                    explored=False,
                    reward=reward,
                    information=goal.accuracy * reward.accuracy + goal.detection * reward.detection,
                    cpu_fraction=state.profiler_cpu_fraction,
                    bytes_per_s=state.bytes_exported_per_s,
                    samples=req.stacks.total_samples if req.stacks is not None else 0,
                    over_budget=state.profiler_cpu_fraction > budget.cpu_fraction,
                    keyed_samples=keyed(hist),
                    params_changed=i > 0 and params != previous,
                )
            )
            previous = params
            params, version = answer.params, answer.config_version
    finally:
        store.close()
    return result


def mean_or_none(values: list[float | None]) -> float | None:
    """Mean of the values that are not ``None`` (``None`` if there are none).

    >>> mean_or_none([1.0, None, 3.0]), mean_or_none([None])
    (2.0, None)
    """
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None
