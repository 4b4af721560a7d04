"""Offline (counterfactual) evaluation of policies from logged decisions.

Every decision the controller logs carries the state features the policy saw, the
actions it offered, the action taken, the probability it had of being taken, and (once
credited) the reward of the window that ran it. From such a log we estimate what
*another* policy would have earned, without running it:

* **IPS** (inverse propensity scoring): ``V = mean(π(a|x) / p · r)``; unbiased when the
  logging probabilities are right and every action π takes had a chance of being
  logged; high variance when ``p`` is small.
* **DR** (doubly robust): ``V = mean(Σ_a π(a|x)·r̂(x,a) + π(a|x)/p · (r − r̂(x,a)))`` with a
  reward model ``r̂`` (ridge regression over state × action features, cross-fitted on
  two halves so no row is scored by a model that saw it); unbiased if either the
  propensities or the model are right, and lower variance than IPS.

Usage::

    >>> rows = [LoggedDecision({"drift": 0.0}, ["a", "b"], "a", 0.5, 1.0, {}),
    ...         LoggedDecision({"drift": 0.0}, ["a", "b"], "b", 0.5, 0.0, {})]
    >>> ips(rows, lambda row: {"a": 1.0})
    1.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: A target policy: logged decision -> probability of each offered action.
TargetPolicy = Callable[["LoggedDecision"], Mapping[str, float]]

#: Ridge penalty of the reward model.
RIDGE = 1.0


@dataclass(frozen=True)
class LoggedDecision:
    """One credited decision read back from the log."""

    state: Mapping[str, float]
    offered: Sequence[str]
    action: str
    probability: float
    reward: float
    context: Mapping[str, Mapping[str, float]]
    #: The policy's rule that chose the action, if one did (``forced``, ``settled``,
    #: ``learning``, ``saving``: logged with probability 1), else ``""`` (the model drew).
    rule: str = ""


@dataclass(frozen=True)
class Estimate:
    """A policy's estimated mean reward per window, with its standard error."""

    ips: float
    ips_se: float
    dr: float
    dr_se: float
    match: float  # share of logged decisions where the target gives the logged action p>0
    n: int


def _se(values: Sequence[float]) -> float:
    return statistics.pstdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def ips(rows: Sequence[LoggedDecision], target: TargetPolicy) -> float:
    """Inverse-propensity estimate of ``target``'s mean reward per decision."""
    if not rows:
        return 0.0
    return statistics.fmean(
        target(r).get(r.action, 0.0) / max(r.probability, 1e-6) * r.reward for r in rows
    )


class RewardModel:
    """Ridge regression of reward on (state, action, state×action-context) features."""

    def __init__(
        self, state_keys: Sequence[str], actions: Sequence[str], context_keys: Sequence[str]
    ) -> None:
        self.state_keys = list(state_keys)
        self.actions = list(actions)
        self.context_keys = list(context_keys)
        self.weights: np.ndarray | None = None

    def vector(self, row: LoggedDecision, action: str) -> np.ndarray:
        """Feature vector of ``action`` in the logged state of ``row``."""
        s = np.array([1.0] + [float(row.state.get(k, 0.0)) for k in self.state_keys])
        a = np.array([1.0 if action == name else 0.0 for name in self.actions])
        ctx = row.context.get(action, {})
        c = np.array([float(ctx.get(k, 0.0)) for k in self.context_keys])
        return np.concatenate([s, a, c, np.outer(s, c).ravel()])

    def fit(self, rows: Sequence[LoggedDecision]) -> RewardModel:
        """Fit on the logged (state, action, reward) triples."""
        if not rows:
            return self
        x = np.stack([self.vector(r, r.action) for r in rows])
        y = np.array([r.reward for r in rows])
        gram = x.T @ x + RIDGE * np.eye(x.shape[1])
        self.weights = np.linalg.solve(gram, x.T @ y)
        return self

    def predict(self, row: LoggedDecision, action: str) -> float:
        """Predicted reward of ``action`` in ``row``'s state (0 before fitting)."""
        if self.weights is None:
            return 0.0
        return float(self.vector(row, action) @ self.weights)


def on_policy(rows: Sequence[LoggedDecision]) -> Estimate:
    """The logging policy's own value: the mean logged reward (no reweighting).

    >>> on_policy([LoggedDecision({}, ["a"], "a", 1.0, 2.0, {})]).dr
    2.0
    """
    rewards = [r.reward for r in rows]
    mean = statistics.fmean(rewards) if rewards else 0.0
    se = _se(rewards)
    return Estimate(ips=mean, ips_se=se, dr=mean, dr_se=se, match=1.0, n=len(rows))


def evaluate(
    rows: Sequence[LoggedDecision], targets: Mapping[str, TargetPolicy]
) -> dict[str, Estimate]:
    """IPS and DR estimates of every target policy on the same log."""
    if not rows:
        return {}
    state_keys = sorted({k for r in rows for k in r.state})
    actions = sorted({a for r in rows for a in r.offered})
    context_keys = sorted({k for r in rows for c in r.context.values() for k in c})
    halves = [rows[0::2], rows[1::2]]
    models = [
        RewardModel(state_keys, actions, context_keys).fit(halves[1]),
        RewardModel(state_keys, actions, context_keys).fit(halves[0]),
    ]
    out: dict[str, Estimate] = {}
    for name, target in targets.items():
        ips_terms: list[float] = []
        dr_terms: list[float] = []
        matched = 0
        for half, model in zip(halves, models, strict=True):
            for row in half:
                pi = target(row)
                w = pi.get(row.action, 0.0) / max(row.probability, 1e-6)
                matched += 1 if pi.get(row.action, 0.0) > 0 else 0
                direct = sum(p * model.predict(row, a) for a, p in pi.items() if p > 0)
                ips_terms.append(w * row.reward)
                dr_terms.append(direct + w * (row.reward - model.predict(row, row.action)))
        out[name] = Estimate(
            ips=statistics.fmean(ips_terms),
            ips_se=_se(ips_terms),
            dr=statistics.fmean(dr_terms),
            dr_se=_se(dr_terms),
            match=matched / len(rows),
            n=len(rows),
        )
    return out
