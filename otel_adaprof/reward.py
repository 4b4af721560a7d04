"""The reward of one window, in what a profiler's user values.

Pure functions over plain values, shared by the controller's poll handling and the
simulator (which drives that same poll handling), so the same report always earns the
same reward. ``docs/policy.md`` gives every term with its unit and the test that pins it.

::

    reward = accuracy · A  +  detection · D  +  coverage · S  +  density · M
             −  cpu · C  −  over_budget · O  −  bytes · B  −  switch · W

* **A, accuracy** (nats of error removed): the expected L1 error of the current phase's
  function-share estimate from ``n`` samples over ``K`` functions is
  ``e(n) = min(2, sqrt(2K / (π n)))``; a window that brings the phase from ``n₀`` to
  ``n₀ + n`` samples earns ``ln max(e(n₀), t) − ln max(e(n₀ + n), t)`` for the target
  ``t`` (the error's log falls by ``½ ln(n₁/n₀)``: the tenth sample and the three
  hundredth weigh within a factor of 30, not 1,000). It telescopes, so the same samples
  earn the same however they are batched, and it stops paying at the target. ``n``
  counts from the last detected change. A phase busier than the service's usual load
  (its own CPU, averaged over the goal's ``load_horizon_s``) has its target's samples
  scaled by the ratio, up to :data:`MAX_LOAD_FACTOR` (:meth:`PhaseState.target`): a
  fixed-rate profiler takes that many more samples there, and more CPU is at stake.
* **D, detection** (0..1): ``exp(−delay / τ)`` once, when a change signalled by the
  agent (or seen in the samples) is confirmed by samples that differ from the
  previous phase's profile. Until then the accuracy term counts the samples as if the
  phase went on, and pays the difference at confirmation; a signalled change whose
  first :data:`FALSE_ALARM_SAMPLES` samples match the previous phase was a false alarm:
  the two phases merge again (not while a function is still on its way in or out,
  :func:`key_moving`: up to :data:`UNDECIDED_MAX_SAMPLES`). So a noisy signal earns
  nothing.
* **S, slow-span coverage** (share × window/5 s): the share of the window's slow marker
  spans that carry at least one sample, py-spy's or slow-span capture's
  (:func:`slow_span_coverage`).
* **M, density** (share × window/5 s): ``min(1, markers with samples/s ÷ target)``;
  markers can carry samples only when there are samples, so a window without any
  earns nothing.
* **C, cpu** (budget × window/5 s): profiler CPU of all agent threads over the budget.
* **O, over budget** (budget × window/5 s): how far the profiler CPU *averaged over the
  horizon* (the budget bank) is above the budget. Bursts that keep the average in the
  budget pay only C.
* **B, bytes** (budget × window/5 s): only when the goal sets a bytes budget; the
  trace ratio is never bought down for bytes nobody asked to save.
* **W, switch** (0 or 1): the window ran under params that differ from the previous
  window's: calm adaptation is worth something to the person reading it.

Usage::

    >>> from otel_adaprof.reward import PhaseState, WindowObservation, step
    >>> from otel_adaprof.session_spec import RewardWeights, OverheadBudget
    >>> obs = WindowObservation(end_unix=5.0, seconds=5.0,
    ...                         samples={"main;work (w.py:3)": 50}, profiler_cpu_fraction=0.01)
    >>> state, r = step(PhaseState(), obs, RewardWeights(), OverheadBudget())
    >>> state.samples, round(r.accuracy, 3), r.cpu_cost
    (50.0, 1.835, 0.5)

Stack key: samples are compared at *function level of the leaf frame* (line numbers
stripped), what the benchmark's ground truth is stated in; the key does not change with
``stack_depth``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from otel_adaprof.budget_bank import BudgetBank
from otel_adaprof.session_spec import OverheadBudget, RewardWeights

#: Seconds a rate term is counted against (one reference window).
REFERENCE_WINDOW_S = 5.0
#: Largest L1 distance between two distributions (the error of knowing nothing).
MAX_L1 = 2.0
#: Fewest samples that can confirm (or reveal) a change of the function shares.
MIN_CONFIRM_SAMPLES = 20.0
#: Standard errors a new key's share must rise by to confirm a signalled change alone
#: (:func:`key_appeared`): twice a test's usual 2-3, since samples come in runs (a
#: request's consecutive samples share a function) that the binomial error ignores; at
#: 5.5, lumpy synthetic windows confirmed every signalled change
#: (``tests/policy/test_reward_step_reference.py``). From nothing, a key needs 11 of 200
#: new samples; the ledger's hot path (15 %) stands at about 9 after the 200 samples that
#: would otherwise merge it back, at 7 when it reads 12 %.
KEY_MOVE_Z = 6.0
#: Standard errors of a function's move between rare and common (:func:`key_moving`)
#: that keep a signalled change pending past :data:`FALSE_ALARM_SAMPLES`: the evidence
#: is building. The ledger's hot path (13-16 % of a phase of about 900 samples) gone
#: from the next phase's first 200 samples is 5.4-6.1 standard errors (fewer after a
#: shorter phase), about :data:`KEY_MOVE_Z`, and that phase was merged back into the hot
#: path's as a false alarm in four of nine ledger runs replayed
#: (``bench/output/phase_replay_s49.json``); at 300 samples it is 6.5-7.4.
KEY_MOVING_Z = 3.0
#: Samples after a signalled change that merge it back as a false alarm even while a
#: function is still moving (:func:`key_moving`): twice :data:`FALSE_ALARM_SAMPLES`.
UNDECIDED_MAX_SAMPLES = 400.0
#: Margin over the sampling noise a total-variation distance must clear to be a change.
CHANGE_MARGIN = 0.1
#: Keys under this share of two histograms' pooled shares are compared as one when
#: judging a change (:func:`shares_differ`): the demo service's profile has about 100
#: leaf keys, 95 of them under 1 % each, and counting each as a function to resolve
#: put the noise bar (about 0.45 for 70 new samples) above a 40 % hot path, so a
#: signalled change was never confirmed (session 19's benchmark, docs/policy.md).
FOLD_SHARE = 0.02
#: Samples after a signalled change that, matching the old phase, make it a false alarm
#: (with 60, a real hot path was merged back in a benchmark run: the test of a 40 % new
#: share against the noise of a few dozen samples over tens of stack keys is too weak).
FALSE_ALARM_SAMPLES = 10 * MIN_CONFIRM_SAMPLES
#: Fewest samples a novelty share is counted against (see :func:`novelty`).
NOVELTY_MIN_SAMPLES = 20.0
#: Most a phase's load can scale its target's samples by (:meth:`PhaseState.target`).
#: The benchmark's busiest phase runs at twice the base load; a service whose usual
#: level is far below a phase (a first window, a service waking from idle) would
#: otherwise ask for an unbounded profile.
MAX_LOAD_FACTOR = 4.0

_LINE = re.compile(r"\s*\([^()]*:\d+\)$")
#: The key rare keys are folded into (no stack key has this form).
_REST = "\x00rest"


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


def novelty(
    prior: Mapping[str, float],
    window: Mapping[str, float],
    min_samples: float = NOVELTY_MIN_SAMPLES,
) -> float:
    """Share of the window's samples on keys never seen before (0..1), counted against
    at least ``min_samples`` samples (a state feature, not a reward term).

    >>> novelty({"a": 10.0}, {"a": 10.0, "b": 30.0})
    0.75
    >>> novelty({"a": 10.0}, {"b": 1.0})  # one sample is 1/20 of a share, not all of it
    0.05
    """
    total = sum(window.values())
    if total <= 0:
        return 0.0
    new = sum([c for k, c in window.items() if prior.get(k, 0.0) <= 0.0])
    return new / max(total, min_samples)


def union_keys(p: Mapping[str, Any], q: Mapping[str, Any]) -> list[str]:
    """The keys of ``p`` then those of ``q`` not in ``p``, in their dicts' order.

    Sums over a ``set`` of strings run in an order that ``PYTHONHASHSEED`` picks, and
    floating-point sums depend on their order: a model pretrained with ``adaprof train``
    differed from run to run until session 31 (each window's drift feature a few ulps
    apart, compounding over 40,000 updates). Iterating in the dicts' own order makes the
    same inputs give the same bytes.

    >>> union_keys({"b": 1, "a": 2}, {"c": 3, "a": 4})
    ['b', 'a', 'c']
    """
    return [*p, *(k for k in q if k not in p)]


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance between two count histograms (normalised first), 0..1.

    >>> total_variation({"a": 1, "b": 1}, {"a": 2})
    0.5
    """
    sp = sum(p.values())
    sq = sum(q.values())
    if sp <= 0 or sq <= 0:
        return 0.0
    return 0.5 * sum([abs(p.get(k, 0.0) / sp - q.get(k, 0.0) / sq) for k in union_keys(p, q)])


def expected_l1(samples: float, functions: int) -> float:
    """Expected L1 error of a function-share estimate from ``samples`` samples over
    ``functions`` functions: ``sqrt(2K / (π n))``, at most 2 (knowing nothing).

    >>> expected_l1(0, 8), round(expected_l1(400, 8), 3)
    (2.0, 0.113)
    """
    if samples <= 0:
        return MAX_L1
    return min(MAX_L1, math.sqrt(2.0 * functions / (math.pi * samples)))


def samples_for_error(error: float, functions: int) -> float:
    """Samples the phase needs for an expected L1 error of ``error``: ``2K / (π e²)``.

    >>> round(samples_for_error(0.12, 8))
    354
    """
    return 2.0 * functions / (math.pi * error * error)


def accuracy_gain(before: float, added: float, functions: int, target: float) -> float:
    """Log of the expected L1 error removed by ``added`` samples on top of ``before`` in
    the same phase, counted only down to ``target`` (nats). Additive:
    ``gain(a, b+c) = gain(a, b) + gain(a+b, c)``.

    >>> round(accuracy_gain(0, 100, 8, 0.12), 3), accuracy_gain(1000, 100, 8, 0.12)
    (2.182, 0.0)
    """
    return accuracy_gains(before, (added,), functions, target)[0]


def accuracy_gains(
    before: float, added: Sequence[float], functions: int, target: float
) -> list[float]:
    """:func:`accuracy_gain` of each of ``added`` on top of the same ``before`` (the
    error before computed once): ``ln max(e(before), target) − ln max(e(before + n),
    target)``, at least 0, with ``e`` :func:`expected_l1`.

    >>> accuracy_gains(0, [0, 100], 8, 0.12) == [accuracy_gain(0, n, 8, 0.12) for n in [0, 100]]
    True
    """
    log0 = math.log(max(expected_l1(before, functions), target))
    out = []
    # expected_l1 and the max/min of accuracy_gain written out (``max(a, b)`` is ``b if
    # b > a else a``): the same operations on the same values, without ~30 calls
    scale = 2.0 * functions
    for n in added:
        if n <= 0:
            out.append(0.0)
            continue
        total = before + n
        if total <= 0:
            error = MAX_L1
        else:
            error = math.sqrt(scale / (math.pi * total))
            error = error if error < MAX_L1 else MAX_L1
        gain = log0 - math.log(target if target > error else error)
        out.append(gain if gain > 0.0 else 0.0)
    return out


def shares_differ(
    new: Mapping[str, float], old: Mapping[str, float], functions: int, fold: bool = True
) -> bool:
    """Whether two keyed sample histograms differ beyond sampling noise.

    Needs :data:`MIN_CONFIRM_SAMPLES` on both sides. With ``fold``, keys holding less
    than :data:`FOLD_SHARE` of the two sides' samples together are compared as one
    ("the rest"); the total-variation distance of what remains must exceed (with ``K``
    the larger of ``functions`` and the keys compared) the expected total-variation
    noise ``½·sqrt(e(n₁)² + e(n₂)²)`` plus :data:`CHANGE_MARGIN`. Without, every key
    counts in ``K``: a higher bar, for a change nothing else announced.

    >>> shares_differ({"a": 30.0, "hot": 30.0}, {"a": 300.0}, 8)
    True
    >>> shares_differ({"a": 15.0, "b": 15.0}, {"a": 150.0, "b": 140.0}, 8)
    False

    A long tail of rare keys (a real service's framework frames) does not hide a change:

    >>> tail = {f"frame{i}": 1.0 for i in range(100)}
    >>> shares_differ({"a": 30.0, "hot": 30.0, **tail}, {"a": 900.0, **tail}, 8)
    True
    """
    n_new, n_old = sum(new.values()), sum(old.values())
    if n_new < MIN_CONFIRM_SAMPLES or n_old < MIN_CONFIRM_SAMPLES:
        return False
    a, b = _fold_rare(new, old, n_new, n_old) if fold else (new, old)
    k = max(functions, len(a) if fold else len(union_keys(a, b)))
    noise = 0.5 * math.hypot(expected_l1(n_new, k), expected_l1(n_old, k))
    return total_variation(a, b) > noise + CHANGE_MARGIN


def key_appeared(new: Mapping[str, float], old: Mapping[str, float], z: float = KEY_MOVE_Z) -> bool:
    """Whether a key rare in ``old`` (under :data:`FOLD_SHARE` of its samples) holds a
    share of ``new`` at least ``z`` standard errors above its old one (a two-proportion
    test): a function that was (nearly) never sampled before and now is, often.

    :func:`shares_differ` weighs the whole profile against a margin, which a change
    concentrated in one new function can stay under: the ledger's hot path, a new
    function at 15 % of the CPU, moves the total variation by 0.15 against a bar of
    about 0.18 at 270 samples, and a signalled change it had started was merged back
    into the phase before it as a false alarm (docs/benchmarks.md, session 48). From
    nothing to 15 % of 200 samples is about 9.6 standard errors.

    >>> key_appeared({"a": 230.0, "hot": 40.0}, {"a": 600.0})
    True
    >>> key_appeared({"a": 150.0, "b": 120.0}, {"a": 300.0, "b": 290.0})  # moved, not new
    False
    """
    n_new, n_old = sum(new.values()), sum(old.values())
    if n_new < 2 * MIN_CONFIRM_SAMPLES or n_old < 2 * MIN_CONFIRM_SAMPLES:
        return False
    for key, count in new.items():
        before = old.get(key, 0.0)
        if before >= FOLD_SHARE * n_old or count <= before / n_old * n_new:
            continue
        pooled = (count + before) / (n_new + n_old)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_new + 1.0 / n_old))
        if count / n_new - before / n_old >= z * se:
            return True
    return False


def key_vanished(new: Mapping[str, float], old: Mapping[str, float], z: float = KEY_MOVE_Z) -> bool:
    """Whether a key that held a share of ``old`` is rare in ``new`` (under
    :data:`FOLD_SHARE`), its share at least ``z`` standard errors below: a function the
    previous phase ran, now (nearly) gone — :func:`key_appeared` the other way.

    The ledger's hot path ending takes 13-16 % of the profile away: under the bar of
    :func:`shares_differ`, as its start was (docs/benchmarks.md, session 49).

    >>> key_vanished({"a": 300.0}, {"a": 600.0, "hot": 120.0})
    True
    >>> key_vanished({"a": 300.0, "b": 2.0}, {"a": 600.0, "b": 6.0})  # rare before too
    False
    """
    return key_appeared(old, new, z)


def key_moving(new: Mapping[str, float], old: Mapping[str, float], z: float = KEY_MOVING_Z) -> bool:
    """Whether a function is on its way in or out (:func:`key_appeared` or
    :func:`key_vanished` at ``z``, :data:`KEY_MOVING_Z` standard errors): a signalled
    change whose samples show it is not judged a false alarm yet.

    >>> key_moving({"a": 200.0}, {"a": 600.0, "hot": 90.0})  # 13 % gone, 200 samples
    True
    >>> key_moving({"a": 150.0, "b": 50.0}, {"a": 450.0, "b": 150.0})
    False
    """
    return key_appeared(new, old, z) or key_vanished(new, old, z)


def _fold_rare(
    new: Mapping[str, float], old: Mapping[str, float], n_new: float, n_old: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Both histograms on the keys holding :data:`FOLD_SHARE` of their pooled shares,
    the rest summed in one key (so both have the same keys)."""
    kept = [
        key
        for key in union_keys(new, old)
        if 0.5 * (new.get(key, 0.0) / n_new + old.get(key, 0.0) / n_old) >= FOLD_SHARE
    ]
    a = {key: new.get(key, 0.0) for key in kept}
    b = {key: old.get(key, 0.0) for key in kept}
    a[_REST] = max(0.0, n_new - sum(a.values()))
    b[_REST] = max(0.0, n_old - sum(b.values()))
    return a, b


def detection_credit(delay_s: float, tau_s: float) -> float:
    """Credit of a confirmed detection ``delay_s`` after the change: ``exp(−delay/τ)``.

    >>> detection_credit(0.0, 10.0), round(detection_credit(10.0, 10.0), 3)
    (1.0, 0.368)
    """
    return math.exp(-max(0.0, delay_s) / tau_s)


def slow_span_coverage(
    slow_spans: int, slow_spans_sampled: int | None, slow_span_samples: int = 0
) -> float:
    """The share of a window's slow spans that carry samples (0..1; 0 with none).

    ``slow_spans_sampled`` counts the slow spans with at least one sample, from py-spy
    or slow-span capture alike (what a user finds on the slowest spans). An older agent
    reports only the capture's stacks (``slow_span_samples``): their ratio, capped at 1.

    >>> slow_span_coverage(10, 7), slow_span_coverage(10, None, 25), slow_span_coverage(0, 0)
    (0.7, 1.0, 0.0)
    """
    if slow_spans <= 0:
        return 0.0
    covered = slow_span_samples if slow_spans_sampled is None else slow_spans_sampled
    return min(1.0, max(0, covered) / slow_spans)


@dataclass(frozen=True)
class WindowObservation:
    """One reported window as the reward sees it (from an ``ObservedState`` + stacks)."""

    end_unix: float
    seconds: float
    samples: Mapping[str, float] = field(default_factory=dict)  # raw {stack: count}
    profiler_cpu_fraction: float = 0.0  # all agent threads, fraction of one core
    bytes_per_s: float = 0.0
    markers_per_s: float = 0.0
    slow_spans: int = 0  # slow marker spans sent on in the window
    slow_span_samples: int = 0  # stacks slow-span capture took (older agents' coverage)
    slow_spans_sampled: int | None = None  # of slow_spans, those with ≥ 1 sample (any source)
    changes: int = 0  # change signals the agent fired in the window
    last_change_unix: float | None = None
    new_code: int = 0  # functions of the service's own that became new code in the window
    params_changed: bool = False  # ran under params that differ from the window before
    app_cpu_fraction: float = 0.0  # the service's own CPU, cores, the agent's left out


@dataclass(frozen=True)
class PhaseState:
    """The reward's memory of one service: the current phase and the budget bank."""

    samples: float = 0.0  # samples since the last detected change
    profile: Mapping[str, float] = field(default_factory=dict)  # keyed, this phase
    previous: Mapping[str, float] = field(default_factory=dict)  # keyed, phase before
    pending_change_unix: float | None = None  # signalled, not yet confirmed by samples
    bank: BudgetBank = field(default_factory=BudgetBank)  # profiler CPU over the horizon
    windows: int = 0
    phase_started_unix: float | None = None
    changed: bool = False  # the last window started a new phase
    previous_samples: float = 0.0  # samples of the phase before
    pending_paid: float = 0.0  # accuracy paid since an unconfirmed signalled change
    false_alarms: int = 0  # signalled changes the samples did not confirm
    phase_load: float = 0.0  # the service's CPU (cores) over this phase's windows
    phase_load_s: float = 0.0  # seconds of windows phase_load averages
    usual_load: float = 0.0  # its CPU averaged over the goal's load horizon (0: none yet)
    usual_weight: float = 0.0  # the weight that average has seen (1 - e^(-seconds/horizon))

    @property
    def cpu_average(self) -> float:
        """Profiler CPU averaged over the horizon (fraction of a core; the bank's)."""
        return self.bank.average

    @property
    def load_factor(self) -> float:
        """How much busier than usual this phase is (1..:data:`MAX_LOAD_FACTOR`; 1
        until the agent has reported its CPU).

        >>> PhaseState(phase_load=0.3, usual_load=0.15).load_factor
        2.0
        >>> PhaseState(phase_load=0.05, usual_load=0.1).load_factor
        1.0
        """
        return load_factor(self.phase_load, self.usual_load)

    def target(self, goal: RewardWeights) -> float:
        """The expected L1 error this phase's profile is gathered to: the goal's
        ``accuracy_target`` at the service's usual load, lower in a phase busier than
        usual, so that its samples scale with the load (``e ∝ 1/√n``), as a fixed-rate
        profiler's do. A goal with ``load_horizon_s: 0`` keeps its target fixed.

        >>> from otel_adaprof.session_spec import RewardWeights
        >>> goal = RewardWeights(accuracy_target=0.12)
        >>> PhaseState().target(goal), PhaseState(phase_load=0.4, usual_load=0.1).target(goal)
        (0.12, 0.06)
        """
        return load_target(goal, self.phase_load, self.usual_load)

    def accuracy_reached(self, functions: int) -> float:
        """Expected L1 error of the current phase's profile (0..2)."""
        return expected_l1(self.samples, functions)

    def to_json(self) -> dict[str, object]:
        """Figures for logs and the timeline (not the profiles)."""
        return {
            "phase_samples": self.samples,
            "pending_change": self.pending_change_unix is not None,
            "cpu_average": self.cpu_average,
            "load_factor": self.load_factor,
        }


def load_factor(phase_load: float, usual_load: float) -> float:
    """``phase_load / usual_load`` within 1..:data:`MAX_LOAD_FACTOR` (1 with no usual load).

    >>> load_factor(0.3, 0.15), load_factor(0.05, 0.1), load_factor(0.3, 0.0)
    (2.0, 1.0, 1.0)
    """
    if usual_load <= 0.0 or phase_load <= usual_load:
        return 1.0
    return min(MAX_LOAD_FACTOR, phase_load / usual_load)


def load_target(goal: RewardWeights, phase_load: float, usual_load: float) -> float:
    """The goal's ``accuracy_target`` over ``√load_factor`` (the goal's own with
    ``load_horizon_s: 0``): :meth:`PhaseState.target` from the loads alone.

    >>> from otel_adaprof.session_spec import RewardWeights
    >>> load_target(RewardWeights(accuracy_target=0.12), 0.4, 0.1)
    0.06
    """
    if goal.load_horizon_s <= 0.0:
        return goal.accuracy_target
    return goal.accuracy_target / math.sqrt(load_factor(phase_load, usual_load))


def phase_target(phase: PhaseState | None, goal: RewardWeights) -> float:
    """The accuracy target in force for ``phase`` (the goal's before any report).

    >>> from otel_adaprof.session_spec import RewardWeights
    >>> phase_target(None, RewardWeights(accuracy_target=0.1))
    0.1
    """
    return goal.accuracy_target if phase is None else phase.target(goal)


def _loads(
    state: PhaseState, obs: WindowObservation, goal: RewardWeights, new_phase: bool
) -> tuple[float, float, float, float]:
    """The phase's load, its seconds, the usual load and its weight after ``obs``: the
    phase's a mean over its windows by their length (from this window on when it starts
    one), the usual one an exponential average over ``load_horizon_s`` divided by the
    weight it has seen, so that a service younger than the horizon has the mean of its
    windows so far, not its first window's load (a first window seeded it until session
    52's 4x run: a low one at the start made the steady phase "busier than usual" for ten
    minutes). A window with none of the service's own CPU in its report (idle, or an
    agent that reports no process CPU) leaves them as they were."""
    load, seconds = obs.app_cpu_fraction, obs.seconds
    phase_load, phase_s = state.phase_load, state.phase_load_s
    usual, weight = state.usual_load, state.usual_weight
    if load <= 0.0 or seconds <= 0.0:
        return (0.0, 0.0, usual, weight) if new_phase else (phase_load, phase_s, usual, weight)
    if goal.load_horizon_s > 0.0:  # (none: no usual load, a factor of 1 as the target's)
        decay = math.exp(-seconds / goal.load_horizon_s)
        grown = weight * decay + (1.0 - decay)
        usual = (usual * weight * decay + (1.0 - decay) * load) / grown
        weight = grown
    if new_phase or phase_s <= 0.0:
        return load, seconds, usual, weight
    total = phase_s + seconds
    return (phase_load * phase_s + load * seconds) / total, total, usual, weight


@dataclass(frozen=True)
class RewardBreakdown:
    """Every term of one window's reward, before weighting, and the weighted total."""

    accuracy: float  # nats of expected L1 error removed in the current phase
    detection: float  # 0..1, once per confirmed change
    coverage: float  # slow-span share × window/5 s
    density: float  # sampled-marker density × window/5 s
    cpu_cost: float  # profiler CPU / budget × window/5 s
    over_budget: float  # horizon average over the budget × window/5 s
    bytes_cost: float  # bytes/s over the bytes budget × window/5 s (0 without one)
    switch: float  # 1 if the params changed
    phase_error: float  # expected L1 of the phase's profile after the window
    change: bool  # a change was detected in this window (phase restarted)
    total: float  # weighted sum

    def to_json(self) -> dict[str, float | bool]:
        """Plain dict for storage and the timeline."""
        return asdict(self)


def step(
    state: PhaseState, obs: WindowObservation, goal: RewardWeights, budget: OverheadBudget
) -> tuple[PhaseState, RewardBreakdown]:
    """Score one window and advance the service's reward memory (a pure function).

    The memory's fields are advanced in local variables and the new :class:`PhaseState`
    is made once, at the end (a frozen dataclass: each copy sets every field).
    """
    k = goal.functions
    window = keyed(obs.samples)
    n = sum(window.values())
    change = False
    straddling = False
    detection = 0.0
    start = obs.end_unix - obs.seconds
    samples, profile, previous = state.samples, state.profile, state.previous
    previous_samples, pending = state.previous_samples, state.pending_change_unix
    pending_paid, phase_started = state.pending_paid, state.phase_started_unix
    false_alarms = state.false_alarms
    # 1. A change the agent signalled starts a new phase at once. The signalling window's
    #    own samples were mostly taken before the signal (it fires after the change, and
    #    a burst's samples come in the next window): they stay with the old phase, so they
    #    neither blur the new phase's profile nor make a real change look like a false alarm.
    # 2. Otherwise a window whose samples differ from the phase's is a change seen in the
    #    samples (the onset lies somewhere in this window). Nothing announced it, so the
    #    bar is the higher one (every key counted): a 3 s window's samples are few and
    #    correlated (a request's consecutive samples, a busy machine), and with rare keys
    #    folded a steady phase "changed" every 20 s in a benchmark run (session 19).
    # 1b. New code the agent saw (a function of the service's own its samples never had,
    #    now there again and again) starts one too, from the window's start, and the
    #    window's samples, which hold the new function, are the new phase's. The CPU per
    #    request of a subtle hot path takes tens of seconds to signal a change, and
    #    meanwhile the phase before it took in the hot path's samples, so the phase the
    #    signal started matched it and merged back (session 48's ledger runs).
    restart_at: float | None = None
    if obs.changes > 0:
        restart_at = obs.last_change_unix if obs.last_change_unix is not None else start
        straddling = True
    elif obs.new_code > 0 or (
        samples >= 2 * MIN_CONFIRM_SAMPLES and shares_differ(window, profile, k, fold=False)
    ):
        restart_at = start
    if restart_at is not None:  # a new phase: the current one becomes the previous one
        change = True
        if profile:
            previous_samples, previous = samples, dict(profile)
        else:
            previous = dict(previous)
        samples, profile, pending_paid = 0.0, {}, 0.0
        phase_started = pending = restart_at
    phase_load, phase_load_s, usual_load, usual_weight = _loads(state, obs, goal, change)
    target = load_target(goal, phase_load, usual_load)
    if pending is not None and previous:
        # Not confirmed yet: paid as if the phase went on (a false alarm earns nothing);
        # the difference is paid when the samples confirm the change.
        gain = accuracy_gain(previous_samples + samples, n, k, target)
        pending_paid = pending_paid + gain
    else:
        gain = accuracy_gain(samples, n, k, target)
    grown = dict(profile)
    if straddling:
        previous = dict(previous)
        for key, count in window.items():
            previous[key] = previous.get(key, 0.0) + count
        previous_samples = previous_samples + n
    else:
        for key, count in window.items():
            grown[key] = grown.get(key, 0.0) + count
        samples, profile = samples + n, grown
    # 3. A pending change is confirmed once the new phase's samples differ from the old
    #    (a function appeared, or one the old phase held is gone); a change the agent
    #    signalled whose samples, once plenty, match the old phase was a false alarm: the
    #    phases merge again (the old samples still describe it). Not while a function is
    #    on its way in or out (:func:`key_moving`): the evidence is still building, up to
    #    UNDECIDED_MAX_SAMPLES.
    if pending is not None and (
        shares_differ(grown, previous, k)
        or key_appeared(grown, previous)
        or key_vanished(grown, previous)
    ):
        detection = detection_credit(obs.end_unix - pending, goal.detection_tau_s)
        gain += max(0.0, accuracy_gain(0.0, samples, k, target) - pending_paid)
        pending, pending_paid = None, 0.0
    elif pending is not None and not previous:
        pending = None  # nothing to compare with
    elif (
        pending is not None
        and samples >= FALSE_ALARM_SAMPLES
        and (samples >= UNDECIDED_MAX_SAMPLES or not key_moving(grown, previous))
    ):
        merged = dict(previous)
        for key, count in grown.items():
            merged[key] = merged.get(key, 0.0) + count
        samples, profile = samples + previous_samples, merged
        pending, pending_paid = None, 0.0
        false_alarms += 1
    scale = obs.seconds / REFERENCE_WINDOW_S
    cpu = max(0.0, obs.profiler_cpu_fraction)
    bank = state.bank.add(cpu, obs.seconds, goal.cost_horizon_s)
    state = PhaseState(
        samples=samples,
        profile=profile,
        previous=previous,
        pending_change_unix=pending,
        bank=bank,
        windows=state.windows + 1,
        phase_started_unix=start if phase_started is None else phase_started,
        changed=change,
        previous_samples=previous_samples,
        pending_paid=pending_paid,
        false_alarms=false_alarms,
        phase_load=phase_load,
        phase_load_s=phase_load_s,
        usual_load=usual_load,
        usual_weight=usual_weight,
    )
    cpu_cost = cpu / budget.cpu_fraction * scale
    over = max(0.0, bank.average / budget.cpu_fraction - 1.0) * scale
    bytes_cost = (
        max(0.0, obs.bytes_per_s) / budget.bytes_per_s * scale
        if budget.bytes_per_s is not None
        else 0.0
    )
    coverage = slow_span_coverage(obs.slow_spans, obs.slow_spans_sampled, obs.slow_span_samples)
    coverage *= scale
    sampled_markers = min(max(0.0, obs.markers_per_s), n / obs.seconds if obs.seconds else 0.0)
    density = min(1.0, sampled_markers / goal.target_markers_per_s) * scale
    switch = 1.0 if obs.params_changed else 0.0
    total = (
        goal.accuracy * gain
        + goal.detection * detection
        + goal.coverage * coverage
        + goal.density * density
        - goal.cpu * cpu_cost
        - goal.over_budget * over
        - goal.bytes * bytes_cost
        - goal.switch * switch
    )
    breakdown = RewardBreakdown(
        accuracy=gain,
        detection=detection,
        coverage=coverage,
        density=density,
        cpu_cost=cpu_cost,
        over_budget=over,
        bytes_cost=bytes_cost,
        switch=switch,
        phase_error=expected_l1(state.samples, k),
        change=change,
        total=total,
    )
    return state, breakdown
