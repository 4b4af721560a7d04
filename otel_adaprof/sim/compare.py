"""The policy benchmark: adaptive vs every static catalog action vs the threshold
heuristic, on every scenario and seed, with regret against the best fixed action in
hindsight per phase.

Regret of a policy in one phase of one seed = the cumulative reward, in that phase, of
the best static action *for that phase* (chosen in hindsight, per seed) minus the
policy's. Summed over phases it compares a policy with an oracle that knows each
phase's best fixed setting.

Usage::

    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> from otel_adaprof.controller.policy.catalog import load_catalog
    >>> cat = load_catalog()
    >>> small = type(cat)([cat.get("off"), cat.get("sentinel")])
    >>> report = compare(
    ...     [SCENARIOS["hot-path"]], seeds=[1], windows=12, catalog=small, pretrain_scenarios=1
    ... )
    >>> [p.name for p in report.scenarios[0].policies][:2]
    ['adaptive', 'heuristic']
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_adaprof.controller.policy.catalog import Catalog, load_catalog
from otel_adaprof.controller.policy.heuristic import ThresholdPolicy
from otel_adaprof.controller.policy.static import StaticPolicy
from otel_adaprof.controller.policy.vw import DEFAULT_GAMMA_SCALE, VWPolicy
from otel_adaprof.session_spec import OverheadBudget, RewardWeights
from otel_adaprof.sim.runner import RunResult, run_policy
from otel_adaprof.sim.scenario import Scenario
from otel_adaprof.sim.training import DEFAULT_TRAIN_SCENARIOS, SIM_GOAL, pretrain


@dataclass
class PolicySummary:
    """One policy on one scenario, averaged over seeds (totals are per run)."""

    name: str
    kind: str  # adaptive | heuristic | static
    reward: float
    reward_sd: float
    information: float
    cpu: float  # mean profiler CPU, fraction of one core
    violations: float  # windows over budget per run
    phase_reward: list[float]
    regret: list[float]  # per phase, against the per-phase best fixed action

    def to_json(self) -> dict[str, Any]:
        """Plain dict for ``--json``."""
        return {
            "name": self.name,
            "kind": self.kind,
            "reward": self.reward,
            "reward_sd": self.reward_sd,
            "information": self.information,
            "cpu": self.cpu,
            "violations": self.violations,
            "phase_reward": self.phase_reward,
            "regret": self.regret,
            "regret_total": sum(self.regret),
        }


@dataclass
class ScenarioReport:
    """All policies on one scenario."""

    name: str
    phases: list[str]
    policies: list[PolicySummary] = field(default_factory=list)

    def get(self, name: str) -> PolicySummary:
        """The summary of policy ``name``."""
        return next(p for p in self.policies if p.name == name)

    @property
    def best_static(self) -> PolicySummary:
        """The static action with the highest mean cumulative reward."""
        return max((p for p in self.policies if p.kind == "static"), key=lambda p: p.reward)

    @property
    def adaptive_wins(self) -> bool:
        """Adaptive ahead of every static action and the heuristic on reward."""
        adaptive = self.get("adaptive")
        return all(adaptive.reward > p.reward for p in self.policies if p is not adaptive)

    @property
    def violations_ok(self) -> bool:
        """Adaptive's budget violations no worse than the heuristic's."""
        return self.get("adaptive").violations <= self.get("heuristic").violations

    def to_json(self) -> dict[str, Any]:
        """Plain dict for ``--json``."""
        return {
            "name": self.name,
            "phases": self.phases,
            "policies": [p.to_json() for p in self.policies],
            "best_static": self.best_static.name,
            "adaptive_wins": self.adaptive_wins,
            "violations_ok": self.violations_ok,
        }


@dataclass
class BenchmarkReport:
    """The whole benchmark."""

    seeds: list[int]
    goal: RewardWeights
    budget: OverheadBudget
    scenarios: list[ScenarioReport]

    @property
    def ok(self) -> bool:
        """Adaptive wins with no more violations than the heuristic, everywhere."""
        return all(s.adaptive_wins and s.violations_ok for s in self.scenarios)

    def to_json(self) -> dict[str, Any]:
        """Plain dict for ``--json``."""
        return {
            "seeds": self.seeds,
            "goal": self.goal.model_dump(),
            "budget": self.budget.model_dump(),
            "scenarios": [s.to_json() for s in self.scenarios],
            "ok": self.ok,
        }


def _summary(
    name: str, kind: str, runs: list[RunResult], best: list[list[float]], phases: int
) -> PolicySummary:
    rewards = [r.total_reward for r in runs]
    per_phase = [r.phase_rewards(phases) for r in runs]
    return PolicySummary(
        name=name,
        kind=kind,
        reward=statistics.fmean(rewards),
        reward_sd=statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        information=statistics.fmean(r.information for r in runs),
        cpu=statistics.fmean(r.mean_cpu for r in runs),
        violations=statistics.fmean(r.violations for r in runs),
        phase_reward=[statistics.fmean(p[i] for p in per_phase) for i in range(phases)],
        regret=[
            statistics.fmean(best[s][i] - per_phase[s][i] for s in range(len(runs)))
            for i in range(phases)
        ],
    )


def compare(
    scenarios: Sequence[Scenario],
    *,
    seeds: Sequence[int],
    windows: int | None = None,
    catalog: Catalog | None = None,
    goal: RewardWeights = SIM_GOAL,
    budget: OverheadBudget | None = None,
    model: bytes | None = None,
    pretrain_scenarios: int = DEFAULT_TRAIN_SCENARIOS,
    gamma_scale: float = DEFAULT_GAMMA_SCALE,
    progress: Callable[[str], None] | None = None,
) -> BenchmarkReport:
    """Run every policy on every scenario and seed; ``model`` seeds the adaptive policy
    (else it is pretrained on ``pretrain_scenarios`` random scenarios first)."""
    catalog = catalog if catalog is not None else load_catalog()
    budget = budget or OverheadBudget()
    if model is None:
        model = pretrain(
            scenarios=pretrain_scenarios,
            catalog=catalog,
            goal=goal,
            budget=budget,
            gamma_scale=gamma_scale,
        ).snapshot()
        if progress is not None:
            progress("pretrained")
    reports: list[ScenarioReport] = []
    for scenario in scenarios:
        phases = len(scenario.phases)
        statics: dict[str, list[RunResult]] = {a.name: [] for a in catalog}
        adaptive: list[RunResult] = []
        heuristic: list[RunResult] = []
        for seed in seeds:
            kw: dict[str, Any] = {"seed": seed, "windows": windows, "goal": goal, "budget": budget}
            for action in catalog:
                statics[action.name].append(
                    run_policy(StaticPolicy(), scenario, initial=action.params, **kw)
                )
            heuristic.append(run_policy(ThresholdPolicy(catalog), scenario, **kw))
            learner = VWPolicy(catalog, seed=seed, model=model, gamma_scale=gamma_scale)
            adaptive.append(run_policy(learner, scenario, **kw))
            if progress is not None:
                progress(f"{scenario.name} seed {seed}")
        best = [
            [max(statics[a][s].phase_rewards(phases)[i] for a in statics) for i in range(phases)]
            for s in range(len(seeds))
        ]
        report = ScenarioReport(scenario.name, [p.name for p in scenario.phases])
        report.policies.append(_summary("adaptive", "adaptive", adaptive, best, phases))
        report.policies.append(_summary("heuristic", "heuristic", heuristic, best, phases))
        for name, runs in statics.items():
            report.policies.append(_summary(name, "static", runs, best, phases))
        reports.append(report)
    return BenchmarkReport(list(seeds), goal, budget, reports)
