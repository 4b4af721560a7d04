"""The budget guard: masking, retreat to the cheapest action, static never explores,
at most one over-budget window per excursion in the simulator."""

from __future__ import annotations

import itertools

from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.controller.policy.safety import SafetyGuard
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.session_spec import Mode, OverheadBudget
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS
from otel_adaprof.sim.training import SIM_GOAL


def _ctx(
    cpu_seconds: float,
    params: Params,
    budget: OverheadBudget | None = None,
    mode: Mode = Mode.ADAPTIVE,
) -> DecisionContext:
    state = ObservedState(
        window_start=0.0,
        window_seconds=5.0,
        process_cpu=0.5,
        spans_per_s=100.0,
        markers_per_s=10.0,
        samples_per_s=params.rate_hz * 0.5,
        profiler_cpu_seconds=cpu_seconds,
    )
    return DecisionContext(
        service="s",
        initial_params=Params(),
        params_in_force=params,
        mode=mode,
        state=state,
        budget=budget or OverheadBudget(),
    )


def test_expensive_actions_are_masked_and_a_bigger_budget_unmasks_them():
    cat = load_catalog()
    guard = SafetyGuard(cat)
    ctx = _ctx(0.01, Params(sampling_interval_ms=100))
    names = {a.name for a in guard.allowed(ctx)}
    assert "off" in names and "sentinel" in names
    assert "deep-200hz" not in names and "deep-100hz" not in names
    for action in guard.allowed(ctx):
        assert guard.estimate(action, ctx).cpu_fraction <= 0.8 * 0.02 or action.name == "off"
    rich = _ctx(0.01, Params(sampling_interval_ms=100), OverheadBudget(cpu_fraction=0.5))
    assert "deep-200hz" in {a.name for a in guard.allowed(rich)}


def test_measured_overhead_raises_the_calibration():
    guard = SafetyGuard(load_catalog())
    calm = _ctx(0.02, Params(sampling_interval_ms=100))  # about what the prior says
    guard.observe(calm)
    before = {a.name for a in guard.allowed(calm)}
    heavy = _ctx(0.09, Params(sampling_interval_ms=100))  # 4x the prior
    guard.observe(heavy)
    after = {a.name for a in guard.allowed(heavy)}
    assert guard.calibration > 1.5
    assert after < before


def test_over_budget_window_retreats_to_the_cheapest_action():
    policy = VWPolicy(seed=3)
    over = _ctx(0.5, Params(sampling_interval_ms=10))  # 10 % of a core, budget 2 %
    for _ in range(20):
        d = policy.decide(over)
        assert d.action == "off" and d.probability == 1.0
        assert d.features["forced"] == "over_budget"


def test_static_mode_never_explores():
    policy = VWPolicy(seed=5)
    initial = Params(sampling_interval_ms=20, stack_depth=16)
    for cpu in (0.0, 0.05, 0.5):
        ctx = _ctx(cpu, initial, mode=Mode.STATIC)
        ctx = DecisionContext(**{**ctx.__dict__, "initial_params": initial})
        for _ in range(20):
            d = policy.decide(ctx)
            assert d.params == initial and d.probability == 1.0 and not d.explored


def test_at_most_one_over_budget_window_per_excursion(pretrained_model):
    for seed in (1, 2, 3):
        run = run_policy(
            VWPolicy(seed=seed, model=pretrained_model),
            SCENARIOS["load-spike"],
            seed=seed,
            goal=SIM_GOAL,
        )
        flags = [w.over_budget for w in run.windows]
        assert not any(a and b for a, b in itertools.pairwise(flags)), flags
