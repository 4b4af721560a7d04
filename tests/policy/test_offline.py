"""IPS and doubly-robust estimates on logs whose true values are known."""

from __future__ import annotations

import random

import pytest

from otel_adaprof.controller.policy.offline import LoggedDecision, evaluate, ips, on_policy


def _log(n: int = 4000, p_a: float = 0.8, seed: int = 0) -> list[LoggedDecision]:
    """A logger that takes "a" with probability p_a; reward depends on state and action:
    r(a) = 1 + x, r(b) = 2 - x with x uniform in [0, 1] (both worth 1.5 on average)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = rng.random()
        action = "a" if rng.random() < p_a else "b"
        prob = p_a if action == "a" else 1 - p_a
        reward = (1 + x if action == "a" else 2 - x) + rng.gauss(0, 0.1)
        rows.append(LoggedDecision({"x": x}, ["a", "b"], action, prob, reward, {}))
    return rows


def test_ips_and_dr_recover_the_value_of_each_fixed_action():
    rows = _log()
    est = evaluate(
        rows,
        {
            "a": lambda r: {"a": 1.0},
            "b": lambda r: {"b": 1.0},
            "best": lambda r: {"a": 1.0} if r.state["x"] > 0.5 else {"b": 1.0},
        },
    )
    assert est["a"].ips == pytest.approx(1.5, abs=0.05)
    assert est["b"].ips == pytest.approx(1.5, abs=0.1)
    assert est["a"].dr == pytest.approx(1.5, abs=0.03)
    assert est["b"].dr == pytest.approx(1.5, abs=0.05)
    # the state-aware policy is worth 1.75, and DR is tighter than IPS on it
    assert est["best"].dr == pytest.approx(1.75, abs=0.05)
    assert est["best"].dr_se < est["best"].ips_se
    # the logger itself earns 0.8 * 1.5 + 0.2 * 1.5
    assert on_policy(rows).ips == pytest.approx(1.5, abs=0.03)


def test_ips_by_hand():
    rows = [
        LoggedDecision({}, ["a", "b"], "a", 0.5, 2.0, {}),
        LoggedDecision({}, ["a", "b"], "b", 0.25, 4.0, {}),
    ]
    assert ips(rows, lambda r: {"b": 1.0}) == pytest.approx((0 + 4.0 / 0.25) / 2)
