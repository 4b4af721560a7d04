"""The budget bank: profiler CPU averaged over a horizon, as it was actually spent.

A session's CPU budget holds *on average over the goal's horizon*
(``goal.cost_horizon_s``): bursts are allowed as long as the average stays in it. The
average weighs each reported window by ``exp(−age / horizon)``, over the windows seen
so far only. A plain exponential average started at zero counts the time before the
first window as spent at zero cost: a session younger than its horizon then looks
cheaper than it was (a 240 s run averaged 0.019–0.024 of a core against a 0.016 budget
its bank said it kept, docs/benchmarks.md, session 28). Dividing by the weight seen,
``1 − exp(−seen / horizon)``, removes that start credit: after one window the average
is that window's cost, and in a long session it is the plain exponential average.

The guard (:mod:`~otel_adaprof.controller.policy.safety`) masks what one more window
may cost with :meth:`BudgetBank.room`; the reward's over-budget term reads
:attr:`BudgetBank.average`.

Usage::

    >>> bank = BudgetBank().add(0.04, seconds=3.0, horizon_s=300.0)
    >>> round(bank.average, 4)  # one window: its own cost, no credit for the time before
    0.04
    >>> bank = bank.add(0.0, seconds=3.0, horizon_s=300.0)
    >>> round(bank.average, 4)  # two windows of equal length, equal weight (almost)
    0.0199
    >>> round(bank.room(0.016, seconds=3.0, horizon_s=300.0), 4)  # keeps the average <= 0.016
    0.0083
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def horizon_average(average: float, value: float, seconds: float, horizon_s: float) -> float:
    """Exponential average of ``value`` over ``horizon_s`` after ``seconds`` more.

    >>> round(horizon_average(0.0, 1.0, 60.0, 60.0), 3)
    0.632
    """
    keep = math.exp(-max(0.0, seconds) / horizon_s)
    return keep * average + (1.0 - keep) * value


def _weight(seen_s: float, horizon_s: float) -> float:
    """Total weight of ``seen_s`` seconds of windows in the exponential average."""
    return -math.expm1(-max(0.0, seen_s) / horizon_s)


@dataclass(frozen=True)
class BudgetBank:
    """Profiler CPU (fraction of a core) averaged over a horizon, windows seen only.

    ``average`` is the weighted mean of the windows' costs (weights ``exp(−age /
    horizon)``); ``seen_s`` the seconds of windows behind it.
    """

    average: float = 0.0
    seen_s: float = 0.0

    def add(self, value: float, seconds: float, horizon_s: float) -> BudgetBank:
        """The bank after one more window of ``seconds`` at ``value`` of a core."""
        seconds = max(0.0, seconds)
        if seconds == 0.0:
            return self
        before = _weight(self.seen_s, horizon_s)
        after = _weight(self.seen_s + seconds, horizon_s)
        if after <= 0.0:
            return self
        raw = horizon_average(self.average * before, value, seconds, horizon_s)
        return BudgetBank(raw / after, self.seen_s + seconds)

    def room(self, cap: float, seconds: float, horizon_s: float) -> float:
        """Most one more window of ``seconds`` may cost and keep :attr:`average` at or
        under ``cap`` (``inf`` for a window too short to move it while under ``cap``,
        else never negative)."""
        seconds = max(0.0, seconds)
        own = _weight(seconds, horizon_s)  # the new window's weight
        if own <= 0.0:
            return math.inf if cap > self.average else 0.0
        before = _weight(self.seen_s, horizon_s) * math.exp(-seconds / horizon_s)
        after = _weight(self.seen_s + seconds, horizon_s)
        return max(0.0, (cap * after - before * self.average) / own)
