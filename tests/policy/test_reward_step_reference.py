"""``reward.step`` advances the phase memory in locals and makes one ``PhaseState``:
the same states and rewards, field for field and bit for bit, as the step it replaced
(kept here as the reference: a copy of the state per change, session 19's code)."""

from __future__ import annotations

import random
from typing import Any

from otel_adaprof.reward import (
    FALSE_ALARM_SAMPLES,
    MIN_CONFIRM_SAMPLES,
    UNDECIDED_MAX_SAMPLES,
    PhaseState,
    RewardBreakdown,
    WindowObservation,
    accuracy_gain,
    detection_credit,
    key_appeared,
    key_moving,
    key_vanished,
    keyed,
    shares_differ,
    step,
)
from otel_adaprof.session_spec import OverheadBudget, RewardWeights


def _replace(state: PhaseState, **changes: Any) -> PhaseState:
    return PhaseState(**{**state.__dict__, **changes})


def _restart(state: PhaseState, at: float) -> PhaseState:
    return _replace(
        state,
        samples=0.0,
        previous_samples=state.samples if state.profile else state.previous_samples,
        previous=dict(state.profile) if state.profile else dict(state.previous),
        profile={},
        pending_paid=0.0,
        phase_started_unix=at,
    )


def _reference_phase(
    state: PhaseState, obs: WindowObservation, goal: RewardWeights
) -> tuple[PhaseState, float, float, bool]:
    """The phase part of the replaced step: new state, accuracy gain, detection, change."""
    k = goal.functions
    window = keyed(obs.samples)
    n = sum(window.values())
    change = straddling = False
    detection = 0.0
    start = obs.end_unix - obs.seconds
    if obs.changes > 0:
        at = obs.last_change_unix if obs.last_change_unix is not None else start
        state = _replace(_restart(state, at), pending_change_unix=at)
        change = straddling = True
    elif state.samples >= 2 * MIN_CONFIRM_SAMPLES and shares_differ(
        window, state.profile, k, fold=False
    ):
        state = _replace(_restart(state, start), pending_change_unix=start)
        change = True
    target = goal.accuracy_target
    if state.pending_change_unix is not None and state.previous:
        gain = accuracy_gain(state.previous_samples + state.samples, n, k, target)
        state = _replace(state, pending_paid=state.pending_paid + gain)
    else:
        gain = accuracy_gain(state.samples, n, k, target)
    profile = dict(state.profile)
    if straddling:
        previous = dict(state.previous)
        for key, count in window.items():
            previous[key] = previous.get(key, 0.0) + count
        state = _replace(state, previous=previous, previous_samples=state.previous_samples + n)
    else:
        for key, count in window.items():
            profile[key] = profile.get(key, 0.0) + count
        state = _replace(state, samples=state.samples + n, profile=profile)
    if state.pending_change_unix is not None and (
        shares_differ(profile, state.previous, k)
        or key_appeared(profile, state.previous)
        or key_vanished(profile, state.previous)
    ):
        detection = detection_credit(obs.end_unix - state.pending_change_unix, goal.detection_tau_s)
        gain += max(0.0, accuracy_gain(0.0, state.samples, k, target) - state.pending_paid)
        state = _replace(state, pending_change_unix=None, pending_paid=0.0)
    elif state.pending_change_unix is not None and not state.previous:
        state = _replace(state, pending_change_unix=None)
    elif (
        state.pending_change_unix is not None
        and state.samples >= FALSE_ALARM_SAMPLES
        and (state.samples >= UNDECIDED_MAX_SAMPLES or not key_moving(profile, state.previous))
    ):
        merged = dict(state.previous)
        for key, count in profile.items():
            merged[key] = merged.get(key, 0.0) + count
        state = _replace(
            state,
            samples=state.samples + state.previous_samples,
            profile=merged,
            pending_change_unix=None,
            pending_paid=0.0,
            false_alarms=state.false_alarms + 1,
        )
    state = _replace(
        state,
        windows=state.windows + 1,
        changed=change,
        phase_started_unix=start if state.phase_started_unix is None else state.phase_started_unix,
    )
    return state, gain, detection, change


def _windows(seed: int, count: int, calm: bool = False) -> list[WindowObservation]:
    """Windows whose hot functions shift now and then, some with a signalled change
    (real or a false alarm), some without samples. ``calm``: no shift, every function
    sampled in every window (signalled changes are false alarms: since session 49 a
    function moving in or out confirms a change, and the lumpy windows move one in
    nearly every one)."""
    rng = random.Random(seed)
    functions = [f"f{i} (m{i % 3}.py:{i})" for i in range(12)]
    hot, t, out = 0, 1000.0, []
    for _ in range(count):
        if not calm and rng.random() < 0.08:
            hot = rng.randrange(12)
        signalled = rng.random() < 0.1
        at = t + 5.0 - rng.uniform(0, 5) if signalled and rng.random() < 0.7 else None
        samples: dict[str, float] = {}
        if calm:
            for f in functions:
                samples[f"main (a.py:1);{f}"] = float(rng.randint(2, 6))
        for _ in range(0 if calm else rng.choice([0, 1, 3, 8])):
            f = functions[hot] if rng.random() < 0.6 else rng.choice(functions)
            stack = f"main (a.py:1);{f}"
            samples[stack] = samples.get(stack, 0.0) + rng.randint(1, 40)
        t += 5.0
        out.append(
            WindowObservation(
                end_unix=t,
                seconds=5.0,
                samples=samples,
                profiler_cpu_fraction=rng.uniform(0, 0.1),
                markers_per_s=rng.uniform(0, 20),
                changes=1 if signalled else 0,
                last_change_unix=at,
                params_changed=rng.random() < 0.2,
            )
        )
    return out


def test_step_matches_the_step_it_replaced_on_every_branch():
    goal, budget = RewardWeights(), OverheadBudget(cpu_fraction=0.05)
    branches = {"signalled": 0, "seen": 0, "confirmed": 0, "false_alarm": 0}
    for seed in range(16):
        state = reference = PhaseState()
        for obs in _windows(seed, 160, calm=seed >= 12):
            expected, gain, detection, change = _reference_phase(reference, obs, goal)
            state, reward = step(state, obs, goal, budget)
            assert isinstance(reward, RewardBreakdown)
            # every field but the budget bank, which both compute the same way after
            assert {**state.__dict__, "bank": None} == {**expected.__dict__, "bank": None}
            assert (reward.accuracy, reward.detection, reward.change) == (gain, detection, change)
            branches["signalled"] += obs.changes > 0
            branches["seen"] += change and obs.changes == 0
            branches["confirmed"] += detection > 0
            branches["false_alarm"] += expected.false_alarms > reference.false_alarms
            reference = _replace(expected, bank=state.bank)
    assert all(branches.values()), branches
