"""The reward's properties, pinned on hand-made windows (docs/policy.md, "Reward")."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from otel_adaprof.reward import (
    PhaseState,
    WindowObservation,
    accuracy_gain,
    expected_l1,
    key_appeared,
    key_moving,
    key_vanished,
    keyed,
    samples_for_error,
    shares_differ,
    stack_key,
    step,
)
from otel_adaprof.session_spec import OverheadBudget, RewardWeights

GOAL = RewardWeights()
BUDGET = OverheadBudget(cpu_fraction=0.05)
STEADY = {"main;a (a.py:1)": 0.5, "main;b (b.py:1)": 0.3, "main;c (c.py:1)": 0.2}
HOT = {"main;a (a.py:1)": 0.3, "main;b (b.py:1)": 0.1, "main;hot (h.py:1)": 0.6}


def _split(shares: dict[str, float], n: int) -> dict[str, float]:
    return {k: v * n for k, v in shares.items()}


def _run(windows: list[WindowObservation], state: PhaseState | None = None):
    state = state or PhaseState()
    out = []
    for obs in windows:
        state, r = step(state, obs, GOAL, BUDGET)
        out.append(r)
    return state, out


def _windows(shares: dict[str, float], total: int, count: int, t0: float = 0.0, cpu=0.0):
    secs = 150.0 / count
    return [
        WindowObservation(
            end_unix=t0 + (i + 1) * secs,
            seconds=secs,
            samples=_split(shares, total // count),
            profiler_cpu_fraction=cpu,
        )
        for i in range(count)
    ]


def test_stack_key_is_leaf_function_without_line():
    assert stack_key("main (app.py:1);work (w.py:10)") == "work (w.py)"
    assert stack_key("work (w.py:10)") == stack_key("x (x.py:1);y (y.py:2);work (w.py:10)")
    assert keyed({"m (a.py:1);f (f.py:3)": 2, "f (f.py:4)": 3}) == {"f (f.py)": 5.0}


def test_same_samples_earn_the_same_in_one_window_or_thirty():
    one = sum(r.accuracy for r in _run(_windows(STEADY, 300, 1))[1])
    thirty = sum(r.accuracy for r in _run(_windows(STEADY, 300, 30))[1])
    assert one > 1.0
    assert thirty == pytest.approx(one, rel=1e-9)
    # cost is additive in CPU-seconds too: the same CPU over the same time costs the same
    c1 = sum(r.cpu_cost for r in _run(_windows(STEADY, 300, 1, cpu=0.1))[1])
    c30 = sum(r.cpu_cost for r in _run(_windows(STEADY, 300, 30, cpu=0.1))[1])
    assert c30 == pytest.approx(c1)


def test_accuracy_saturates_at_the_target():
    needed = samples_for_error(GOAL.accuracy_target, GOAL.functions)
    state, rs = _run(_windows(STEADY, int(needed) + 50, 1))
    full = rs[0].accuracy
    assert full == pytest.approx(math.log(2.0 / GOAL.accuracy_target))
    # more samples in the same phase earn nothing more
    _, more = _run(_windows(STEADY, 1000, 10, t0=200.0), state)
    assert sum(r.accuracy for r in more) == 0.0
    assert accuracy_gain(needed + 1, 500, GOAL.functions, GOAL.accuracy_target) == 0.0


def test_expected_l1_formula():
    assert expected_l1(0, 8) == 2.0
    assert expected_l1(400, 8) == pytest.approx(math.sqrt(16 / (math.pi * 400)))


def test_a_detected_change_makes_the_new_phase_worth_sampling_again():
    state, _ = _run(_windows(STEADY, 1000, 10))  # steady phase learned to the target
    assert state.accuracy_reached(GOAL.functions) <= GOAL.accuracy_target
    # the hot path: the first window's samples differ from the phase -> a new phase
    state, rs = _run(_windows(HOT, 400, 4, t0=200.0), state)
    assert rs[0].change
    assert sum(r.accuracy for r in rs) > 1.0
    # a returning steady profile is a change again, and earns again
    _, back = _run(_windows(STEADY, 400, 4, t0=400.0), state)
    assert back[0].change and sum(r.accuracy for r in back) > 1.0


def test_a_signalled_change_restarts_the_phase_and_is_credited_once_confirmed():
    state, _ = _run(_windows(STEADY, 1000, 10))
    signal = WindowObservation(
        end_unix=205.0, seconds=5.0, changes=1, last_change_unix=202.0, samples={}
    )
    state, r0 = step(state, signal, GOAL, BUDGET)
    assert r0.change and state.samples == 0.0 and r0.detection == 0.0  # not confirmed yet
    confirm = WindowObservation(end_unix=210.0, seconds=5.0, samples=_split(HOT, 40))
    state, r1 = step(state, confirm, GOAL, BUDGET)
    assert r1.detection == pytest.approx(math.exp(-8.0 / GOAL.detection_tau_s))
    assert r1.accuracy > 0.5
    _, r2 = step(state, confirm, GOAL, BUDGET)
    assert r2.detection == 0.0  # credited once


def test_noise_is_not_a_change():
    assert not shares_differ(_split(STEADY, 30), _split(STEADY, 600), 8)
    assert shares_differ(_split(HOT, 30), _split(STEADY, 600), 8)


def test_markers_without_samples_earn_nothing():
    obs = WindowObservation(end_unix=5.0, seconds=5.0, markers_per_s=50.0)
    _, r = step(PhaseState(), obs, GOAL, BUDGET)
    assert r.density == 0.0 and r.total == 0.0
    with_samples = WindowObservation(
        end_unix=5.0, seconds=5.0, markers_per_s=50.0, samples=_split(STEADY, 50)
    )
    assert step(PhaseState(), with_samples, GOAL, BUDGET)[1].density == 1.0


def test_cost_is_held_on_average_a_burst_inside_the_bank_pays_only_its_cpu():
    # one 5 s burst at 4 budgets after a quiet stretch: the horizon average stays under
    quiet = [WindowObservation(end_unix=5.0 * (i + 1), seconds=5.0) for i in range(10)]
    state, _ = _run(quiet)
    burst = WindowObservation(end_unix=55.0, seconds=5.0, profiler_cpu_fraction=0.2)
    state, r = step(state, burst, GOAL, BUDGET)
    assert r.cpu_cost == pytest.approx(4.0) and r.over_budget == 0.0
    # sustained, the average passes the budget and the over-budget term starts
    over = []
    for i in range(60):
        obs = WindowObservation(end_unix=60.0 + 5 * i, seconds=5.0, profiler_cpu_fraction=0.2)
        state, r = step(state, obs, GOAL, BUDGET)
        over.append(r.over_budget)
    assert over[0] == 0.0 and over[-1] > 1.0
    assert state.cpu_average > BUDGET.cpu_fraction


def test_bytes_cost_only_with_a_bytes_budget():
    obs = WindowObservation(end_unix=5.0, seconds=5.0, bytes_per_s=1e6)
    assert step(PhaseState(), obs, GOAL, BUDGET)[1].bytes_cost == 0.0
    capped = OverheadBudget(cpu_fraction=0.05, bytes_per_s=1e5)
    assert step(PhaseState(), obs, GOAL, capped)[1].bytes_cost == pytest.approx(10.0)


def test_slow_span_coverage_and_switch_terms():
    obs = WindowObservation(
        end_unix=5.0, seconds=5.0, slow_spans=10, slow_span_samples=4, params_changed=True
    )
    _, r = step(PhaseState(), obs, GOAL, BUDGET)
    assert r.coverage == pytest.approx(0.4)
    assert r.switch == 1.0
    assert r.total == pytest.approx(GOAL.coverage * 0.4 - GOAL.switch)
    # An agent that counts the slow spans carrying any sample: their share, whatever the
    # capture took (py-spy at 100 Hz samples 9 of 10 slow spans with no capture at all)
    obs = WindowObservation(end_unix=5.0, seconds=5.0, slow_spans=10, slow_spans_sampled=9)
    _, r = step(PhaseState(), obs, GOAL, BUDGET)
    assert r.coverage == pytest.approx(0.9)
    # many repeat captures on one slow span do not cover the others
    obs = WindowObservation(
        end_unix=5.0, seconds=5.0, slow_spans=10, slow_spans_sampled=1, slow_span_samples=30
    )
    _, r = step(PhaseState(), obs, GOAL, BUDGET)
    assert r.coverage == pytest.approx(0.1)


def test_the_signalling_windows_samples_stay_with_the_old_phase_and_the_change_confirms():
    # The window that signals holds samples from before the change (the old shares); the
    # burst's samples after it hold a new function at 40 %: the change is confirmed.
    state, _ = _run(_windows(STEADY, 1000, 10))
    signal = WindowObservation(end_unix=205.0, seconds=5.0, changes=1, last_change_unix=204.0,
                               samples={k: 30 * v for k, v in STEADY.items()})  # fmt: skip
    state, _ = step(state, signal, GOAL, BUDGET)
    assert state.samples == 0.0 and state.pending_change_unix == 204.0
    hot = {**{k: 0.6 * v for k, v in STEADY.items()}, "compress_report (r.py:3)": 0.4}
    state, rs = _run(_windows(hot, 120, 2, t0=210.0), state)
    assert state.pending_change_unix is None and state.false_alarms == 0
    assert sum(r.detection for r in rs) > 0.0


def test_a_signalled_change_the_samples_do_not_confirm_is_a_false_alarm():
    state, _ = _run(_windows(STEADY, 1000, 10))  # steady phase at the target
    signal = WindowObservation(end_unix=205.0, seconds=5.0, changes=1, last_change_unix=202.0)
    state, r0 = step(state, signal, GOAL, BUDGET)
    assert r0.change and state.samples == 0.0
    # the same shares keep coming: once FALSE_ALARM_SAMPLES say so, the phases merge again
    state, rs = _run(_windows(STEADY, 240, 3, t0=210.0), state)
    assert state.pending_change_unix is None and state.false_alarms == 1
    assert state.samples == pytest.approx(1000 + 240)
    assert state.accuracy_reached(GOAL.functions) <= GOAL.accuracy_target
    assert sum(r.detection for r in rs) == 0.0
    assert sum(r.accuracy for r in rs) == 0.0  # a false alarm earns nothing
    # and a converged phase earns nothing more
    _, more = _run(_windows(STEADY, 300, 3, t0=300.0), state)
    assert sum(r.accuracy for r in more) == 0.0


def test_a_subtle_new_function_confirms_a_signalled_change_not_a_false_alarm():
    """Session 48's ledger runs: a signalled hot path whose new function holds 15 % of
    the samples moves the profile's total variation by 0.15, under the bar of
    :func:`shares_differ` at a few hundred samples, and the change was merged back into
    the phase before it as a false alarm: the phase looked learnt, so the policy stopped
    learning its hot path. A function that was never sampled and now holds 15 % of 200
    samples confirms it (:func:`key_appeared`). (Fails with ``shares_differ`` alone:
    one false alarm, no detection.)"""
    state, _ = _run(_windows(STEADY, 900, 10))
    signal = WindowObservation(end_unix=155.0, seconds=5.0, changes=1, last_change_unix=152.0)
    state, _ = step(state, signal, GOAL, BUDGET)
    subtle = {**{k: 0.85 * v for k, v in STEADY.items()}, "main;compress (c.py:9)": 0.15}
    state, rs = _run(_windows(subtle, 240, 6, t0=160.0), state)
    assert state.false_alarms == 0 and state.pending_change_unix is None
    assert sum(r.detection for r in rs) > 0.0
    assert state.samples == pytest.approx(240)  # the new phase's own, not merged
    assert not shares_differ(_split(subtle, 200), _split(STEADY, 900), 8)  # the old bar
    assert key_appeared(_split(subtle, 200), _split(STEADY, 900))


HOT_14 = {**{k: 0.86 * v for k, v in STEADY.items()}, "main;compress (c.py:9)": 0.14}


def test_a_function_gone_confirms_a_signalled_change_not_a_false_alarm():
    """Sessions 48-49's ledger runs: the hot path's end takes its 13-16 % of the profile
    away, under the bar of :func:`shares_differ`, and 5.4-6.1 standard errors after the
    200 samples that judged a false alarm (fewer after a short phase): the phase after
    the hot path merged back into it in four of nine ledger runs replayed, and the
    policy stopped learning it. While the function is on its way out (3 standard
    errors), the change stays pending; at 300 samples its absence confirms it. (Fails
    without: one false alarm at 200 samples, no detection.)"""
    state, _ = _run(_windows(HOT_14, 900, 10))
    signal = WindowObservation(end_unix=155.0, seconds=5.0, changes=1, last_change_unix=152.0)
    state, _ = step(state, signal, GOAL, BUDGET)
    state, rs = _run(_windows(STEADY, 200, 4, t0=160.0), state)
    assert not key_vanished(_split(STEADY, 200), _split(HOT_14, 900))  # not yet
    assert key_moving(_split(STEADY, 200), _split(HOT_14, 900))
    assert state.false_alarms == 0 and state.pending_change_unix is not None
    state, more = _run(_windows(STEADY, 100, 2, t0=320.0), state)
    assert state.false_alarms == 0 and state.pending_change_unix is None
    assert sum(r.detection for r in rs + more) > 0.0
    assert state.samples == pytest.approx(300)  # the new phase's own, not merged


def test_a_function_still_moving_is_a_false_alarm_at_twice_the_samples():
    """A function at 5 % gone stays 3-4.5 standard errors away: undecided, the change is
    judged a false alarm at :data:`UNDECIDED_MAX_SAMPLES` (400) samples, not never."""
    small = {**{k: 0.95 * v for k, v in STEADY.items()}, "main;rare (r.py:9)": 0.05}
    state, _ = _run(_windows(small, 900, 10))
    signal = WindowObservation(end_unix=155.0, seconds=5.0, changes=1, last_change_unix=152.0)
    state, _ = step(state, signal, GOAL, BUDGET)
    state, _ = _run(_windows(STEADY, 300, 6, t0=160.0), state)
    assert state.false_alarms == 0 and state.pending_change_unix is not None
    state, _ = _run(_windows(STEADY, 100, 2, t0=320.0), state)
    assert state.false_alarms == 1 and state.pending_change_unix is None
    assert state.samples == pytest.approx(1300)  # merged back


def test_new_code_starts_a_phase_with_its_own_window():
    """New code (a function of the service's own never sampled before) restarts the
    phase from its window's start, and that window's samples, which hold the new
    function, are the new phase's: with the CUSUM's straddling rule they went to the
    phase before, which then looked like the new one (session 48's ledger runs).
    (Fails without it: no change, and the window's samples in the steady phase.)"""
    state, _ = _run(_windows(STEADY, 900, 10))
    subtle = {**{k: 0.85 * v for k, v in STEADY.items()}, "main;compress (c.py:9)": 0.15}
    seen = WindowObservation(end_unix=155.0, seconds=5.0, new_code=1, samples=_split(subtle, 40))
    state, r = step(state, seen, GOAL, BUDGET)
    assert r.change and state.phase_started_unix == 150.0
    assert state.samples == 40 and state.previous_samples == 900
    assert "compress (c.py)" in state.profile and "compress (c.py)" not in state.previous
    # six of its 40 samples in a function never sampled before: confirmed at once
    assert r.detection > 0.0 and state.pending_change_unix is None
    state, _ = _run(_windows(subtle, 200, 5, t0=160.0), state)
    assert state.false_alarms == 0 and state.samples == 240


def _with_tail(shares: dict[str, float], n: int, tail_keys: int = 100, tail: float = 0.15):
    """A real service's shape: the named functions, then ``tail_keys`` frames of
    framework code sharing ``tail`` of the samples (the demo service: ~100 leaf keys,
    95 of them under 1 % each)."""
    out = {k: v * (1.0 - tail) * n for k, v in shares.items()}
    out.update({f"main;framework{i} (fw.py:1)": tail * n / tail_keys for i in range(tail_keys)})
    return out


def test_a_hot_path_behind_a_long_tail_of_framework_keys_is_confirmed_in_one_window():
    # Session 18's benchmark: a signalled hot path (a new 40 % share) was never confirmed
    # by the 70 samples of a window at 100 Hz, because each of ~100 rare keys counted as a
    # function to resolve: the noise bar stood above the change, so profiling after a
    # change earned nothing and the policy went back to watch.
    steady = {"main;a (a.py:1)": 0.5, "main;b (b.py:1)": 0.3, "main;c (c.py:1)": 0.2}
    hot = {"main;a (a.py:1)": 0.3, "main;b (b.py:1)": 0.18, "main;c (c.py:1)": 0.12,
           "main;hot (h.py:1)": 0.4}  # fmt: skip
    assert shares_differ(keyed(_with_tail(hot, 70)), keyed(_with_tail(steady, 1500)), 8)
    # ... and the same tail is no change by itself, nor is noise on the named functions.
    assert not shares_differ(keyed(_with_tail(steady, 70)), keyed(_with_tail(steady, 1500)), 8)
    wobble = {"main;a (a.py:1)": 0.56, "main;b (b.py:1)": 0.27, "main;c (c.py:1)": 0.17}
    assert not shares_differ(keyed(_with_tail(wobble, 70)), keyed(_with_tail(steady, 1500)), 8)
    # The reward then pays the new phase's samples at once (confirmed in its first window).
    state, _ = _run([WindowObservation(end_unix=150.0, seconds=150.0,
                                       samples=_with_tail(steady, 1500))])  # fmt: skip
    signalled = WindowObservation(end_unix=153.0, seconds=3.0, samples=_with_tail(steady, 10),
                                  changes=1, last_change_unix=151.0)  # fmt: skip
    state, _ = step(state, signalled, GOAL, BUDGET)
    burst = WindowObservation(end_unix=156.0, seconds=3.0, samples=_with_tail(hot, 70))
    state, r = step(state, burst, GOAL, BUDGET)
    assert r.detection > 0.5 and r.accuracy > 0.5 and state.pending_change_unix is None


def test_a_window_nothing_announced_needs_the_higher_bar_to_be_a_change():
    # A 30 % shift in one 3 s window: enough to confirm a change the agent signalled,
    # not enough to declare one by itself (a steady benchmark phase "changed" every 20 s
    # when it was).
    steady = {"main;a (a.py:1)": 0.5, "main;b (b.py:1)": 0.3, "main;c (c.py:1)": 0.2}
    shifted = {"main;a (a.py:1)": 0.85, "main;b (b.py:1)": 0.05, "main;c (c.py:1)": 0.1}
    phase = WindowObservation(end_unix=150.0, seconds=150.0, samples=_with_tail(steady, 1500))
    state, _ = _run([phase])
    window = WindowObservation(end_unix=153.0, seconds=3.0, samples=_with_tail(shifted, 70))
    _, r = step(state, window, GOAL, BUDGET)
    assert not r.change
    signalled = WindowObservation(end_unix=153.0, seconds=3.0, samples=_with_tail(steady, 10),
                                  changes=1, last_change_unix=151.0)  # fmt: skip
    state, r = step(state, signalled, GOAL, BUDGET)
    assert r.change and state.pending_change_unix is not None
    window = WindowObservation(end_unix=156.0, seconds=3.0, samples=_with_tail(shifted, 70))
    state, r = step(state, window, GOAL, BUDGET)
    assert state.pending_change_unix is None and r.detection > 0.5  # confirmed


def _loaded(shares: dict[str, float], total: int, count: int, t0: float, load: float):
    """``_windows`` whose agent reports the service's own CPU at ``load`` cores."""
    return [replace(w, app_cpu_fraction=load) for w in _windows(shares, total, count, t0)]


def test_a_phase_busier_than_usual_is_gathered_to_as_many_more_samples():
    """Half an hour at 0.1 of a core makes the usual load; a hot path at twice that load
    starts a phase whose target needs about twice the samples (what a fixed-rate
    profiler takes there): it pays ½·ln 2 nats more than the goal's fixed target and
    stops at about twice the samples. At the usual load the target is the goal's, and
    ``load_horizon_s: 0`` keeps it fixed. (Fails with a fixed target: no more paid.)"""
    needed = samples_for_error(GOAL.accuracy_target, GOAL.functions)
    fixed = RewardWeights(load_horizon_s=0.0)
    usual = [w for i in range(12) for w in _loaded(STEADY, 600, 1, 150.0 * i, 0.1)]
    busy = _loaded(HOT, int(3 * needed), 12, 1800.0, 0.2)
    paid = {}
    for name, goal in (("scaled", GOAL), ("fixed", fixed)):
        state = PhaseState()
        for obs in usual:
            state, _ = step(state, obs, goal, BUDGET)
        if name == "scaled":
            assert state.usual_load == pytest.approx(0.1) and state.load_factor == 1.0
            assert state.target(goal) == goal.accuracy_target
        gains = []
        for obs in busy:
            state, r = step(state, obs, goal, BUDGET)
            gains.append(r.accuracy)
        paid[name] = gains
        if name == "scaled":
            assert 1.5 < state.load_factor < 2.0  # 150 s moved the usual load towards 0.2
            assert state.target(fixed) == fixed.accuracy_target
        else:  # no usual load kept: the factor the features see is the target's, 1
            assert state.usual_load == 0.0 and state.load_factor == 1.0
    per_window = 3 * needed / 12
    past = math.ceil(needed / per_window) + 1  # the first window wholly past `needed`
    # the fixed target stops paying once the phase holds its samples ...
    assert all(g == 0.0 for g in paid["fixed"][past:])
    # ... the scaled one pays on, to about twice them, and no further
    assert paid["scaled"][past] > 0.0
    assert all(g == 0.0 for g in paid["scaled"][math.ceil(2 * needed / per_window) :])
    extra = sum(paid["scaled"]) - sum(paid["fixed"])
    assert 0.2 < extra <= 0.5 * math.log(2.0) + 1e-9


def test_the_same_samples_in_a_busy_phase_earn_the_same_however_batched():
    """The load-scaled target keeps the accuracy term additive while the load factor
    holds (a day's horizon: the usual load stays at 0.1 while the phase runs at 0.2)."""
    goal = RewardWeights(load_horizon_s=86_400.0)
    state = PhaseState()
    days = replace(_loaded(STEADY, 600, 1, 0.0, 0.1)[0], seconds=3 * 86_400.0)
    for obs in [days, *_loaded(HOT, 60, 1, 3 * 86_400.0, 0.2)]:
        state, _ = step(state, obs, goal, BUDGET)
    assert state.load_factor == pytest.approx(2.0, rel=0.01)
    totals = []
    for count in (1, 30):
        after, paid = state, 0.0
        for obs in _loaded(HOT, 1500, count, 3 * 86_400.0 + 150.0, 0.2):
            after, r = step(after, obs, goal, BUDGET)
            paid += r.accuracy
        totals.append(paid)
    assert totals[0] > 1.0
    assert totals[1] == pytest.approx(totals[0], rel=1e-3)


def test_a_first_window_at_a_low_load_does_not_make_the_service_busier_than_usual():
    """A service's first window, its start (a fifth of its load), then two and a half
    minutes at its load: the usual load is the mean of its windows so far, so the phase
    is as busy as usual, not 2.5 times (an average seeded by the first window)."""
    state = PhaseState()
    first = replace(_loaded(STEADY, 20, 1, 0.0, 0.02)[0], seconds=5.0, end_unix=5.0)
    for obs in [first, *_loaded(STEADY, 300, 10, 5.0, 0.1)]:
        state, _ = step(state, obs, GOAL, BUDGET)
    assert state.load_factor < 1.1, state
