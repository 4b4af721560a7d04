"""Each reward term on hand-made histograms."""

from __future__ import annotations

import math

import pytest

from otel_adaprof.reward import (
    capped,
    compute_reward,
    density_term,
    information_gain,
    keyed,
    noise_floor,
    novelty,
    raw_information_gain,
    stack_key,
)
from otel_adaprof.session_spec import OverheadBudget, RewardWeights

BASE = {"a": 400.0, "b": 300.0, "c": 200.0, "d": 100.0}


def test_stack_key_is_leaf_function_without_line():
    assert stack_key("main (app.py:1);work (w.py:10)") == "work (w.py)"
    assert stack_key("main (app.py:1);work (w.py:99)") == "work (w.py)"
    # depth does not change the key: a deeper setting is not "new information"
    assert stack_key("work (w.py:10)") == stack_key("x (x.py:1);y (y.py:2);work (w.py:10)")


def test_keyed_folds_lines_and_depths():
    hist = {"m (a.py:1);f (f.py:3)": 2, "f (f.py:4)": 3, "g (g.py:1)": 1}
    assert keyed(hist) == {"f (f.py)": 5.0, "g (g.py)": 1.0}


def test_information_gain_is_near_zero_when_window_repeats_the_profile():
    window = {k: v / 10 for k, v in BASE.items()}  # same shares, 100 samples
    assert raw_information_gain(BASE, window) > 0.0  # the smoothed estimate moves a bit
    assert information_gain(BASE, window) == pytest.approx(0.0, abs=2e-4)


def test_information_gain_grows_with_a_shift_and_with_its_size():
    small = information_gain(BASE, {"hot": 10.0, "a": 10.0})
    large = information_gain(BASE, {"hot": 100.0, "a": 100.0})
    assert 0.0 < small < large


def test_information_gain_by_hand():
    # prior {a:1}, window {b:1}, alpha 0.5: keys [a, b] + unseen bucket
    before = [1.5 / 2.5, 0.5 / 2.5, 0.5 / 2.5]
    after = [1.5 / 3.5, 1.5 / 3.5, 0.5 / 3.5]
    kl = sum(p * math.log(p / q) for p, q in zip(after, before, strict=True))
    assert raw_information_gain({"a": 1.0}, {"b": 1.0}) == pytest.approx(kl)
    floor = 2 * 1 / (2 * (1 + 0.5 * 3 + 1) ** 2)
    assert noise_floor({"a": 1.0}, {"b": 1.0}) == pytest.approx(floor)
    assert information_gain({"a": 1.0}, {"b": 1.0}) == pytest.approx(kl - floor)


def test_information_gain_of_empty_window_is_zero():
    assert information_gain(BASE, {}) == 0.0


def test_novelty_counts_new_keys_against_a_sample_floor():
    assert novelty(BASE, {"a": 30.0, "new": 10.0}) == pytest.approx(0.25)
    assert novelty(BASE, {"new": 1.0}) == pytest.approx(1 / 20)
    assert novelty(BASE, {"a": 5.0}) == 0.0
    assert novelty({}, {}) == 0.0


def test_density_saturates_at_target():
    assert density_term(2.5, 5.0) == 0.5
    assert density_term(50.0, 5.0) == 1.0
    assert density_term(0.0, 5.0) == 0.0


def test_costs_are_relative_to_budget_and_total_is_the_weighted_sum():
    goal = RewardWeights(information=2.0, novelty=1.0, cpu=3.0, bytes=0.5, density=0.25)
    budget = OverheadBudget(cpu_fraction=0.02, bytes_per_s=1000.0)
    r = compute_reward(
        prior={"m (a.py:1)": 100.0},
        window={"m (a.py:2)": 10, "n (b.py:3)": 10},
        profiler_cpu_fraction=0.01,
        bytes_per_s=500.0,
        markers_per_s=2.5,
        goal=goal,
        budget=budget,
    )
    assert r.cpu_cost == pytest.approx(0.5)
    assert r.bytes_cost == pytest.approx(0.5)
    assert r.density == pytest.approx(0.5)
    assert r.novelty == pytest.approx(0.5)
    assert r.information_gain > 0
    expected = 2.0 * r.information_gain + 0.5 - 1.5 - 0.25 + 0.125
    assert r.total == pytest.approx(expected)


def test_prior_evidence_is_capped_so_a_change_stays_visible():
    assert capped({"a": 3000.0, "b": 1000.0}, 400.0) == {"a": 300.0, "b": 100.0}
    assert capped({"a": 10.0}, 400.0) == {"a": 10.0}
    huge = {k: v * 1000 for k, v in BASE.items()}  # hours of samples
    shifted = {"hot": 30.0, "a": 70.0}
    assert information_gain(huge, shifted) == pytest.approx(
        information_gain({k: v / 2 for k, v in BASE.items()}, shifted)
    )  # both count as 500 samples
    assert information_gain(huge, shifted) > 0.05
