"""The reward of one window: information gain − overhead cost + marker density.

Pure functions over plain values, shared by the controller and the simulator, so the
same report always earns the same reward. ``docs/policy.md`` writes the formula with
units.

Usage::

    >>> from otel_adaprof.reward import compute_reward
    >>> from otel_adaprof.session_spec import RewardWeights, OverheadBudget
    >>> r = compute_reward(prior={"main;work": 90.0}, window={"main;work": 5, "main;new": 5},
    ...                    profiler_cpu_fraction=0.01, bytes_per_s=1000.0, markers_per_s=5.0,
    ...                    goal=RewardWeights(), budget=OverheadBudget())
    >>> r.novelty, round(r.cpu_cost, 3), r.density
    (0.25, 0.5, 1.0)

Stack key: stacks are compared at *function level of the leaf frame* (where the CPU
time is spent, with line numbers stripped). That key does not change when the
controller changes ``stack_depth``, so a deeper setting does not look like "new
information", and it is what the benchmark's ground truth (function CPU shares) is
stated in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache

from otel_adaprof.session_spec import OverheadBudget, RewardWeights

#: Dirichlet pseudo-count added to every key (and to one "unseen" bucket).
DIRICHLET_ALPHA = 0.5
#: Most samples' worth of evidence the prior profile counts for (see :func:`capped`).
PRIOR_MAX_SAMPLES = 500.0
#: Fewest samples a novelty share is counted against (see :func:`novelty`).
NOVELTY_MIN_SAMPLES = 20.0

_LINE = re.compile(r"\s*\([^()]*:\d+\)$")


@lru_cache(maxsize=65536)
def stack_key(stack: str) -> str:
    """Key of a collapsed stack for the reward: the leaf function without its line.

    >>> stack_key("main (app.py:3);handler (app.py:10);burn_cpu (work.py:42)")
    'burn_cpu (work.py)'
    """
    leaf = stack.rsplit(";", 1)[-1].strip()
    match = re.match(r"^(.*)\(([^()]*):\d+\)$", leaf)
    if match:
        return f"{match.group(1).strip()} ({match.group(2)})"
    return _LINE.sub("", leaf) or leaf


def keyed(histogram: Mapping[str, float]) -> dict[str, float]:
    """Fold a ``{stack: count}`` histogram onto reward keys (see :func:`stack_key`)."""
    out: dict[str, float] = {}
    for stack, count in histogram.items():
        key = stack_key(stack)
        out[key] = out.get(key, 0.0) + float(count)
    return out


def smoothed(counts: Mapping[str, float], keys: list[str], alpha: float) -> list[float]:
    """Posterior-mean distribution over ``keys`` + one unseen bucket (Dirichlet(alpha))."""
    total = sum(counts.get(k, 0.0) for k in keys) + alpha * (len(keys) + 1)
    probs = [(counts.get(k, 0.0) + alpha) / total for k in keys]
    probs.append(alpha / total)
    return probs


def kl_divergence(p: list[float], q: list[float]) -> float:
    """KL(p‖q) in nats; both must be strictly positive and of equal length."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0.0)


def capped(prior: Mapping[str, float], max_samples: float = PRIOR_MAX_SAMPLES) -> dict[str, float]:
    """The prior scaled down to at most ``max_samples`` counts, shares unchanged.

    The profile is a belief about what the service does *now*. Counted at full weight,
    hours of samples would make any window's KL vanish, so a new hot path would earn
    next to nothing; capping the evidence (not forgetting the shares) keeps the gain
    of a real change visible, while a window that repeats the profile still earns ~0
    and re-sampling an unchanged service earns nothing however long it was not sampled.

    >>> capped({"a": 900.0, "b": 100.0}, 500.0)
    {'a': 450.0, 'b': 50.0}
    """
    mass = sum(prior.values())
    if mass <= max_samples:
        return dict(prior)
    scale = max_samples / mass
    return {k: v * scale for k, v in prior.items()}


def noise_floor(
    prior: Mapping[str, float], window: Mapping[str, float], alpha: float = DIRICHLET_ALPHA
) -> float:
    """Expected KL(after‖before) in nats when the window is pure sampling noise.

    With ``N`` smoothed prior counts over ``K`` keys and ``n`` window samples drawn from
    the prior's own distribution, each share moves by about ``n/(N+n)`` times the
    sampling error of the window, so ``E[KL] ≈ K·n / (2·(N+n)²)`` (second-order
    expansion of KL). Subtracting it keeps a handful of noisy samples from looking
    like information.

    >>> round(noise_floor({"a": 50.0, "b": 50.0}, {"a": 10.0}), 5)
    0.0008
    """
    n = sum(window.values())
    if n <= 0:
        return 0.0
    keys = len(set(prior) | set(window))
    mass = sum(prior.values()) + alpha * (keys + 1)
    return keys * n / (2.0 * (mass + n) ** 2)


def raw_information_gain(
    prior: Mapping[str, float], window: Mapping[str, float], alpha: float = DIRICHLET_ALPHA
) -> float:
    """KL(after‖before) in nats between the smoothed distributions, keys already folded."""
    if not window or sum(window.values()) <= 0:
        return 0.0
    keys = sorted(set(prior) | set(window))
    before = smoothed(prior, keys, alpha)
    after_counts = dict(prior)
    for key, count in window.items():
        after_counts[key] = after_counts.get(key, 0.0) + count
    after = smoothed(after_counts, keys, alpha)
    return kl_divergence(after, before)


def information_gain(
    prior: Mapping[str, float], window: Mapping[str, float], alpha: float = DIRICHLET_ALPHA
) -> float:
    """Information gain in nats: KL(after‖before) beyond the sampling-noise floor, ≥ 0.

    Keys already folded (see :func:`keyed`). A window that only repeats what the
    profile says earns about 0; one that shifts the profile earns its KL.

    >>> information_gain({"a": 500.0, "b": 500.0}, {"a": 50.0, "b": 50.0}) < 1e-3
    True
    >>> round(information_gain({"a": 500.0, "b": 500.0}, {"new": 100.0}), 3)
    0.703
    """
    prior = capped(prior)
    raw = raw_information_gain(prior, window, alpha)
    return max(0.0, raw - noise_floor(prior, window, alpha))


def novelty(
    prior: Mapping[str, float],
    window: Mapping[str, float],
    min_samples: float = NOVELTY_MIN_SAMPLES,
) -> float:
    """Share of the window's samples on keys never seen before (0..1), counted against
    at least ``min_samples`` samples.

    The floor keeps a window of one or two samples from scoring a full share on one
    lucky rare key: below ``min_samples`` a share cannot be told from noise.

    >>> novelty({"a": 10.0}, {"a": 10.0, "b": 30.0})
    0.75
    >>> novelty({"a": 10.0}, {"b": 1.0})  # one sample is 1/20 of a share, not all of it
    0.05
    """
    total = sum(window.values())
    if total <= 0:
        return 0.0
    new = sum(c for k, c in window.items() if prior.get(k, 0.0) <= 0.0)
    return new / max(total, min_samples)


def density_term(markers_per_s: float, target: float) -> float:
    """Saturating marker-density reward: ``min(1, markers_per_s / target)``."""
    return min(1.0, max(0.0, markers_per_s) / target)


@dataclass(frozen=True)
class RewardBreakdown:
    """Every term of one window's reward, before and after weighting."""

    information_gain: float  # nats
    novelty: float  # share of samples, 0..1
    cpu_cost: float  # profiler CPU / budget
    bytes_cost: float  # bytes per second / budget
    density: float  # 0..1
    total: float  # weighted sum

    def to_json(self) -> dict[str, float]:
        """Plain dict for storage and the timeline."""
        return asdict(self)


def compute_reward(
    *,
    prior: Mapping[str, float],
    window: Mapping[str, float],
    profiler_cpu_fraction: float,
    bytes_per_s: float,
    markers_per_s: float,
    goal: RewardWeights,
    budget: OverheadBudget,
    alpha: float = DIRICHLET_ALPHA,
) -> RewardBreakdown:
    """Reward of one window. ``prior`` and ``window`` are raw ``{stack: count}`` histograms:
    the service's accumulated profile before the window, and the window's samples."""
    prior_k = keyed(prior)
    window_k = keyed(window)
    gain = information_gain(prior_k, window_k, alpha)
    new = novelty(prior_k, window_k)
    cpu = max(0.0, profiler_cpu_fraction) / budget.cpu_fraction
    data = max(0.0, bytes_per_s) / budget.bytes_per_s
    dens = density_term(markers_per_s, goal.target_markers_per_s)
    total = (
        goal.information * gain
        + goal.novelty * new
        - goal.cpu * cpu
        - goal.bytes * data
        + goal.density * dens
    )
    return RewardBreakdown(gain, new, cpu, data, dens, total)
