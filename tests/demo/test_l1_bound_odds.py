"""``bench/l1_bound_odds.py``: the odds of the L1 bound for ideal samplers, checked
against the exact binomial sum on a two-function truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.bench_scripts import load

odds = load("l1_bound_odds")


def _exact(p: float, n_static: int, n_other: int) -> float:
    """P(L1 of n_other ≤ 1.5 × L1 of n_static) over two functions, summed exactly."""

    def pmf(n: int) -> list[float]:
        return [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]

    def l1(k: int, n: int) -> float:
        return 2 * abs(k / n - p)

    ps, po = pmf(n_static), pmf(n_other)
    return sum(
        a * b
        for i, a in enumerate(ps)
        for j, b in enumerate(po)
        if l1(j, n_other) <= 1.5 * l1(i, n_static) + 1e-12
    )


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_a_phases_odds_are_the_binomial_sum(ratio):
    truth = {"a": 0.3, "b": 0.7}
    got = odds.phase_odds(truth, 40, ratio, 40000, np.random.default_rng(3))
    assert got == pytest.approx(_exact(0.3, 40, int(40 * ratio)), abs=0.01)


def test_more_samples_better_odds_and_a_twin_passes_a_run_a_third_of_the_time():
    """Five functions and four phases, as the benchmark's: static-100's exact twin
    passes every phase in about a third of the runs; four times its samples in about
    five of six."""
    truth = {"a": 0.4, "b": 0.2, "c": 0.2, "d": 0.15, "e": 0.05}
    rng = np.random.default_rng(5)
    per = [odds.phase_odds(truth, 300, r, 20000, rng) for r in (1.0, 2.0, 4.0)]
    assert per[0] < per[1] < per[2]
    assert 0.25 < per[0] ** 4 < 0.4 and 0.75 < per[2] ** 4 < 0.9
