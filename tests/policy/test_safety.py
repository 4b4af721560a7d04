"""The budget guard: masking, retreat to the cheapest action, static never explores,
the budget held on average in the simulator."""

from __future__ import annotations

from dataclasses import replace

from otel_adaprof.budget_bank import BudgetBank
from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.controller.policy.safety import SafetyGuard
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.session_spec import Mode, OverheadBudget
from otel_adaprof.sim.runner import RunResult, run_policy
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
    tiny = OverheadBudget(cpu_fraction=0.002)  # a burst may reach 10 budgets: 0.02
    ctx = _ctx(0.0, Params(sampling_interval_ms=100), tiny)
    guard.bank = BudgetBank(0.0, seen_s=300.0)  # saved for a burst: only the cap limits it
    names = {a.name for a in guard.allowed(ctx)}
    assert "learn-100hz" not in names  # 0.0325 of a core in cpu mode
    assert "maintain-1hz-reflex" in names  # 0.0117
    assert "off" not in names  # the retreat is never offered to the learner
    for action in guard.allowed(ctx):
        assert guard.estimate(action, ctx).cpu_fraction <= 10 * 0.002
    rich = _ctx(0.0, Params(sampling_interval_ms=100), OverheadBudget(cpu_fraction=0.5))
    assert "learn-100hz" in {a.name for a in guard.allowed(rich)}


def test_a_burst_is_allowed_while_the_bank_holds_and_refused_once_it_is_spent():
    guard = SafetyGuard(load_catalog())
    budget = OverheadBudget(cpu_fraction=0.01)  # learn-100hz: 0.0325 of a core, 3.3 budgets
    quiet = _ctx(0.0, Params(sampling_interval_ms=0), budget)
    guard.observe(quiet)
    # one window seen, no credit for the time before it: a window may cost two margins
    assert guard.cpu_room(quiet) < 0.02
    assert "learn-100hz" not in {a.name for a in guard.allowed(quiet)}
    for _ in range(59):  # 300 s at no cost: the bank has saved for a burst
        guard.observe(quiet)
    assert "learn-100hz" in {a.name for a in guard.allowed(quiet)}
    # a sustained 0.05 of a core spends the bank: the average passes the budget
    heavy = _ctx(0.05 * 5.0, Params(sampling_interval_ms=10), budget)
    for _ in range(25):  # 125 s of a 300 s horizon
        guard.observe(heavy)
    assert guard.average > 0.01
    assert "learn-100hz" not in {a.name for a in guard.allowed(heavy)}
    assert guard.must_retreat(heavy)


def test_measured_overhead_raises_the_calibration():
    guard = SafetyGuard(load_catalog())
    calm = _ctx(0.068, Params(sampling_interval_ms=100))  # 0.0136 of a core: the cost model
    guard.observe(calm)
    assert 0.7 < guard.calibration < 1.3
    heavy = _ctx(0.34, Params(sampling_interval_ms=100))  # 5x the model
    guard.observe(heavy)
    assert guard.calibration > 1.5
    est = guard.estimate(load_catalog().get("learn-20hz"), heavy).cpu_fraction  # type: ignore[arg-type]
    assert (
        est
        > 2
        * SafetyGuard(load_catalog())
        .estimate(
            load_catalog().get("learn-20hz"),
            calm,  # type: ignore[arg-type]
        )
        .cpu_fraction
    )


def test_a_spent_bank_retreats_to_a_fallback_that_keeps_the_capture():
    policy = VWPolicy(seed=3)
    policy.guard.bank = BudgetBank(0.0, seen_s=300.0)  # five minutes at no cost
    over = _ctx(0.5 * 5.0, Params(sampling_interval_ms=10))  # half a core, budget 2 %
    decisions = [policy.decide(over) for _ in range(24)]
    # one window at half a core fits what the bank saved; by the second it is spent:
    # the retreat keeps slow-span capture (no py-spy but the reflex's glimpse), which
    # costs under half the budget
    assert decisions[0].action not in ("off", "fallback-capture")
    for d in decisions[1:]:
        assert d.action == "fallback-capture" and d.probability == 1.0
        assert d.features["forced"] == "over_budget"
    # a budget too small for the capture: the retreat is off
    tiny = _ctx(0.5 * 5.0, Params(sampling_interval_ms=10), OverheadBudget(cpu_fraction=0.002))
    assert policy.decide(tiny).action == "off"


def test_a_retreat_right_after_a_burst_keeps_the_capture_and_a_glimpse_of_a_change():
    """Session 33's seed 1: a reflex burst spent the bank, the retreat disarmed the
    reflex, and the hot path that came on then went unsampled for 60 s (detection 70 s,
    7.3x static-100's). The retreat now keeps the reflex for one short burst, and the
    burst share measured in the burst that spent the bank (the reflex's cost for the
    watch's 15 s bursts) does not price the capture out of the retreat."""
    policy = VWPolicy(seed=3)
    policy.guard.bank = BudgetBank(0.0, seen_s=300.0)
    watch = load_catalog().get("watch-reflex")
    assert watch is not None
    over = _ctx(0.5 * 5.0, watch.params)  # half a core: the bank is spent
    assert over.state is not None
    # every window all burst: the measured burst share goes to 1
    bursting = replace(over, state=over.state.model_copy(update={"burst_seconds": 5.0}))
    decisions = [policy.decide(bursting) for _ in range(4)]
    assert policy.guard.burst_share > 0.9
    retreat = decisions[-1]
    assert retreat.features["forced"] == "over_budget"
    assert retreat.action == "fallback-capture"
    p = retreat.params
    assert p.slow_span_interval_ms > 0 and not p.profiling_enabled
    assert p.burst_sensitivity > 0 and 0 < p.burst_seconds <= 3 and p.burst_interval_ms <= 10


def test_static_mode_never_explores():
    policy = VWPolicy(seed=5)
    initial = Params(sampling_interval_ms=20, stack_depth=16)
    for cpu in (0.0, 0.05, 0.5):
        ctx = _ctx(cpu, initial, mode=Mode.STATIC)
        ctx = DecisionContext(**{**ctx.__dict__, "initial_params": initial})
        for _ in range(20):
            d = policy.decide(ctx)
            assert d.params == initial and d.probability == 1.0 and not d.explored


def _sim_runs(model: bytes, scenario: str, budget: OverheadBudget) -> list[RunResult]:
    """The packaged model through the real poll handling, seeds 1 and 2."""
    return [
        run_policy(
            VWPolicy(seed=seed, model=model),
            SCENARIOS[scenario],
            seed=seed,
            goal=SIM_GOAL,
            budget=budget,
        )
        for seed in (1, 2)
    ]


def test_the_budget_holds_on_average_under_a_load_spike(pretrained_model):
    budget = OverheadBudget(cpu_fraction=0.1)
    for seed, run in enumerate(_sim_runs(pretrained_model, "load-spike", budget), 1):
        # the budget holds as the guard defines it: averaged over the goal's horizon
        # (300 s); the agent's reflex bursts without asking, so the average may pass the
        # budget by what one burst adds before the guard retreats
        bank, peak = BudgetBank(), 0.0
        for w in run.windows:
            bank = bank.add(w.cpu_fraction, 5.0, SIM_GOAL.cost_horizon_s)
            peak = max(peak, bank.average)
        assert peak <= 1.25 * budget.cpu_fraction, (seed, peak)


def test_a_window_too_short_to_move_the_average_does_not_break_the_guard():
    """A reported window of 1e-300 s keeps the horizon average where it is (its weight
    rounds to 0): the guard offers by the average, it does not divide by zero (the
    controller's fuzzing found it: the policy failed and fell back)."""
    guard = SafetyGuard(load_catalog())
    state = ObservedState(window_start=0.0, window_seconds=1e-300)
    ctx = DecisionContext(
        service="s", initial_params=Params(), params_in_force=Params(),
        mode=Mode.ADAPTIVE, state=state,
    )  # fmt: skip
    guard.observe(ctx)
    assert guard.average == 0.0
    assert 0.0 < guard.cpu_room(ctx) <= OverheadBudget().cpu_fraction * 10  # the burst cap
    guard.bank = BudgetBank(1.0, seen_s=guard.bank.seen_s)  # spent: no room
    assert guard.cpu_room(ctx) == 0.0
    assert VWPolicy(seed=1).decide(ctx).action != "fallback"


def test_a_session_shorter_than_its_horizon_keeps_its_budget_on_average(pretrained_model):
    """The demo scenario (240 s, the benchmark's phases) is shorter than the goal's
    300 s horizon: the whole run's profiler CPU stays within the budget. A bank that
    counted the time before the first window as spent at no cost let such runs burst
    on credit never saved (0.019-0.024 of a core against 0.016 in the real benchmark,
    session 27; this policy on that bank here: 0.029 and 0.031)."""
    budget = OverheadBudget(cpu_fraction=0.016)
    for seed, run in enumerate(_sim_runs(pretrained_model, "demo", budget), 1):
        assert run.window_s * len(run.windows) < SIM_GOAL.cost_horizon_s  # 240 s
        average = sum(w.cpu_fraction for w in run.windows) / len(run.windows)
        assert average <= budget.cpu_fraction, (seed, average)


def test_a_native_agent_is_priced_with_the_native_profilers_cost_and_calibrated_afresh():
    """The guard prices each action with the measured cost of the agent's profiler: a
    native agent's 100 Hz is about a tenth of py-spy's. The calibration learnt against
    py-spy's prior starts again when the backend changes (it corrected another prior)."""
    guard = SafetyGuard(load_catalog())
    learn = load_catalog().get("learn-100hz")
    assert learn is not None
    spy_ctx = _ctx(0.34, Params(sampling_interval_ms=100))  # 5x py-spy's model
    guard.observe(spy_ctx)
    assert guard.backend == "py-spy" and guard.calibration > 1.5
    spy_price = SafetyGuard(load_catalog()).estimate(learn, spy_ctx).cpu_fraction
    native_ctx = replace(_ctx(0.0, Params(sampling_interval_ms=0)), profiler_backend="native")
    guard.observe(native_ctx)
    assert guard.backend == "native" and guard.calibration == 1.0
    native_price = guard.estimate(learn, native_ctx).cpu_fraction
    assert native_price < spy_price / 5, (native_price, spy_price)
    # a native window at the native model's cost keeps the calibration near 1
    measured = native_price * 5.0  # CPU seconds of a 5 s window at 100 Hz
    window = _ctx(measured, Params(sampling_interval_ms=10))
    guard.observe(replace(window, profiler_backend="native"))
    assert 0.6 < guard.calibration < 1.6, guard.calibration
