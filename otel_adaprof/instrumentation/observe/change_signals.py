"""Cheap, always-on change signals: is the service still in the regime it was in?

Three signals, each against its own slowly-updated baseline:

* **latency** — per operation (span name), the p90 of the spans that ended since the
  last observation (in log space: a step of +50 % is the same size at 2 ms and 2 s);
* **CPU per request** — the process's CPU net of the agent's own threads, per local
  root span;
* **span rate** — spans per second.

Each observation is compared with its baseline by a two-sided CUSUM (:class:`Cusum`)
in baseline standard deviations: a step of ``d`` standard deviations adds about
``d - SLACK`` (0.75) per observation, so a signal fires after ``threshold / (d - SLACK)``
observations, while noise at the baseline drifts back to 0. When a signal fires its
baseline learns the new level from a few observations, with a provisional, wider
spread until the new regime shows its own (it learns the new regime instead of firing
on, and is blind for seconds, not a warm-up: a second change soon after is seen).
When the agent itself changes what it costs the service (a burst starts or ends, the
controller changes the sampling rate), :meth:`ChangeDetector.rebase` switches the CPU
and latency baselines to the new *profiling level*, without firing: profiling at 100 Hz
raises the CPU per request by a fifth to a third on the demo service
(docs/benchmarks.md), and a detector that took that for a change of the service would
keep its own bursts going (seen in a benchmark run: the reflex burst 100 % of the time).
Each level keeps its own baselines: back at a level seen before (the controller's
watch after a burst or a window at 100 Hz), the detector compares with what the service
did there, so a change of the service that happened while the level was different is
still seen, and a level returned to takes the evidence the level left had gathered (a
change that began in a burst fires at the watch as soon as its evidence is complete,
not from 0). Only a level not seen since the last change learns its level again from a
few observations (keeping the current spread). Relearning at every switch hid the
benchmark's hot path: a window at 100 Hz began as it came on, both baselines were
learnt again under it, and nothing fired for the whole phase (docs/agent.md). With the
native profiler (its own thread, no GIL, its CPU subtracted like the agent's) profiling
costs the service's threads nothing at any rate: the fast loop then keeps one level and
never rebases (:meth:`~otel_adaprof.instrumentation.control.fast_loop.FastLoop._level`).

    >>> c = Cusum()
    >>> fired = [c.update(x, threshold=5.0) for x in [10.0, 10.2, 9.8] * 6 + [14.0] * 3]
    >>> fired.index(True)  # the step from 10 to 14 fires on its first observation
    18
    >>> round(c.statistic, 2), c.settled  # learning the new level after firing
    (0.0, False)
    >>> fired = [c.update(x, threshold=5.0) for x in [14.0, 14.3, 13.7] * 2 + [19.0] * 5]
    >>> fired.index(True)  # a second step, 5 observations on, is seen on its fourth
    9

Everything here is plain arithmetic on numbers handed in; the agent's fast loop
(:mod:`otel_adaprof.instrumentation.control.fast_loop`) reads the counters.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from otel_adaprof.protocol import ChangeSignals

#: Allowance per observation, in standard deviations: shifts smaller than this are not
#: accumulated (tuned to shifts of 1.5 std or more; it also absorbs the error of a
#: baseline mean learnt from :data:`WARMUP` observations, about 0.3 std).
SLACK = 0.75
#: Weight of one observation in the baseline's mean and variance (a slow baseline: about
#: 50 observations of memory, i.e. tens of seconds at the agent's tick).
BASELINE_ALPHA = 0.02
#: Observations that form a baseline before a signal may fire (again, after a change).
WARMUP = 16
#: The warm-up's variance is multiplied by this before use: a variance from 15
#: observations is below the true one by a third or more one time in ten, and an
#: underestimated spread is what makes a CUSUM fire on noise (about the 90 % upper
#: confidence bound of a chi-square with 15 degrees of freedom: 15 / 8.55 = 1.75).
WARMUP_VAR_FACTOR = 1.75
#: Smallest standard deviation, relative to the baseline's mean (5 %): a perfectly
#: steady signal must not fire on a 1 % wiggle.
REL_FLOOR = 0.05
#: Residuals are clipped at this many std before they move the baseline (a burst of
#: outliers does not drag it).
CLIP = 3.0
#: Observations a baseline's level is learnt again from after the agent's own profiling
#: changed, or after the signal fired (:meth:`Cusum.relevel`; its spread is kept).
RELEVEL_OBSERVATIONS = 4
#: After a firing the new regime's spread is not known yet: until :data:`WARMUP`
#: observations give its own, the spread is the old one (a relative signal's scaled to
#: the new level) but at least this many times the floor (:data:`REL_FLOOR` of the
#: level; latency's absolute floor). A firing used to restart the baseline (16
#: observations blind): a false alarm 13 s before a benchmark's hot path left the
#: reflex blind to its onset and the 60 s phase without a sample (docs/benchmarks.md,
#: session 29). A narrow old spread kept as it was fires again on noise in a wider
#: regime (the hot path triples the spread of CPU per request, :data:`CPU_MIN_REQUESTS`);
#: a wide one widened further hides the next change. ``bench/change_detector_refire.py
#: --seeds 200``
#: (``bench/output/change_detector_refire.json``; docs/agent.md, "Change signals").
PROVISIONAL_SPREAD = 3.0
#: While provisional the level follows the observations since the firing at this share
#: of their running mean's pace (1: their mean): fast enough that the level learnt from
#: :data:`RELEVEL_OBSERVATIONS` settles, slow enough not to absorb a second change
#: before the CUSUM sees it (at full pace the hot path's end 40 s after a firing was
#: seen in 59 runs of 200, at half in 139).
PROVISIONAL_MEAN_PACE = 0.5
#: Threshold at which changes are counted when the reflex is off (``burst_sensitivity``
#: 0): the signals are still reported.
REPORT_THRESHOLD = 5.0
#: Operations whose latency is followed at most (least recently seen forgotten).
MAX_OPERATIONS = 64
#: Profiling levels whose baselines are kept (least recently left forgotten).
MAX_LEVELS = 8
#: Latency: durations needed for one observation (its p90: the second largest of 16;
#: the p90 of 8 is their maximum, too heavy-tailed to compare).
LATENCY_MIN_SPANS = 16
#: Latency: durations needed for a partial observation (after :data:`MAX_OBSERVATION_S`).
LATENCY_MIN_PARTIAL = 8
#: CPU per request: requests needed for one observation. Per request, CPU varies with
#: the endpoint: with the benchmark's hot path on, one request in five costs three times
#: the others (a coefficient of variation near 0.6), so an observation of 4 requests
#: spread 0.3 around its mean and the hot path's end (−40 % CPU per request) was about
#: one standard deviation: the CUSUM drifted to −5 of 8 and back as the baseline
#: followed (session 19's benchmark, a phase with no samples). Of 12, the same drop
#: fires at 8 std in 18 of 20 simulated runs at 10 requests/s, after 16 s (median);
#: of 4, in none; of 8, 16 or 24, in 7, 19, 19, after 15, 19, 23 s; none of them fired
#: in 200 simulated minutes without a change (test_change_signals.py's mixed load). A
#: large step is still seen within two observations; at high rates a tick holds more.
CPU_MIN_REQUESTS = 12
#: Any signal: a partial observation is made after this long if it has some data (s).
MAX_OBSERVATION_S = 2.0
#: Span rate: seconds per observation.
RATE_PERIOD_S = 1.0


@dataclass
class Cusum:
    """A two-sided CUSUM against a slowly-updated baseline (mean and variance).

    ``update`` returns whether the signal fired. The first :data:`WARMUP` observations
    only build the baseline: their mean and variance without the one furthest from their
    median, so a start-up outlier does not blunt it. After a firing the baseline is
    provisional: its level is learnt again from :data:`RELEVEL_OBSERVATIONS`, its
    spread is the old one (relative to the level if the signal is: ``rel_floor`` > 0)
    but at least :data:`PROVISIONAL_SPREAD` times the floor, until :data:`WARMUP`
    observations give the new regime's own. A second change soon after the first is
    seen within a few observations.

    >>> c = Cusum()
    >>> any(c.update(100.0 + (-1) ** i, threshold=5.0) for i in range(200))
    False
    """

    slack: float = SLACK
    alpha: float = BASELINE_ALPHA
    warmup: int = WARMUP
    rel_floor: float = REL_FLOOR
    abs_floor: float = 1e-9
    n: int = 0
    mean: float = 0.0
    var: float = 0.0
    high: float = 0.0
    low: float = 0.0
    _warm: list[float] = field(default_factory=list, repr=False)
    _releveling: int = field(default=0, repr=False)
    #: After a firing: the old level (to scale the spread to the new one, 0: don't) and
    #: the residuals gathered for the new regime's own spread (``None``: not provisional).
    _old_level: float = field(default=0.0, repr=False)
    _residuals: list[float] | None = field(default=None, repr=False)

    @property
    def std(self) -> float:
        """The baseline's standard deviation (floored; widened while provisional)."""
        floor = max(self.rel_floor * abs(self.mean), self.abs_floor)
        std = max(math.sqrt(max(self.var, 0.0)), floor)
        return std if self._residuals is None else max(std, PROVISIONAL_SPREAD * floor)

    @property
    def statistic(self) -> float:
        """The larger side of the CUSUM, signed (positive: above the baseline)."""
        return self.high if self.high >= -self.low else self.low

    @property
    def settled(self) -> bool:
        """Whether the baseline has a level and spread (warmed up, not levelling again)."""
        return self.n >= self.warmup and not self._releveling

    def clone(self) -> Cusum:
        """An independent copy (its own warm-up and residual lists)."""
        residuals = None if self._residuals is None else list(self._residuals)
        return replace(self, _warm=list(self._warm), _residuals=residuals)

    @property
    def evidence(self) -> tuple[float, float]:
        """The CUSUM's two sides (``high`` ≥ 0, ``low`` ≤ 0) when the baseline is
        settled; (0, 0) while it learns a level (it has no evidence of its own)."""
        return (self.high, self.low) if self.settled else (0.0, 0.0)

    def take_evidence(self, evidence: tuple[float, float]) -> None:
        """Keep the larger of its own evidence and ``evidence`` (another baseline's of
        the same signal, in std units), on each side; a baseline learning its level
        takes none.

        >>> c = Cusum(n=WARMUP, mean=10.0, var=1.0, high=1.5)
        >>> c.take_evidence((6.0, -0.5)); c.high, c.low
        (6.0, -0.5)
        """
        if self.settled:
            self.high = max(self.high, evidence[0])
            self.low = min(self.low, evidence[1])

    def restart(self) -> None:
        """Forget the baseline (the next observations build a new one)."""
        self.n, self.mean, self.var, self.high, self.low = 0, 0.0, 0.0, 0.0, 0.0
        self._warm.clear()
        self._releveling = 0
        self._old_level, self._residuals = 0.0, None

    def relevel(self) -> None:
        """Keep the baseline's spread, learn its level again from the next
        :data:`RELEVEL_OBSERVATIONS` (their median): for a known shift of the level (the
        agent's own profiling changed), blind for a few observations, not a warm-up.
        A baseline still warming up starts over."""
        if self.n < self.warmup:
            self.restart()
            return
        self.high = self.low = 0.0
        self._warm.clear()
        self._releveling = RELEVEL_OBSERVATIONS

    def update(self, x: float, threshold: float) -> bool:
        """Add one observation; whether the CUSUM crossed ``threshold`` (std units)."""
        if not math.isfinite(x):
            return False
        if self._releveling:
            self._warm.append(x)
            self._releveling -= 1
            if not self._releveling:
                self.mean = _median(sorted(self._warm))
                self._warm.clear()
                if self._old_level and self.mean and self.rel_floor > 0:
                    self.var *= (self.mean / self._old_level) ** 2  # the same relative spread
                self._old_level = 0.0
            return False
        if self.n < self.warmup:  # the baseline's first level and spread, robustly
            self.n += 1
            self._warm.append(x)
            if self.n == self.warmup:
                self.mean, self.var = _robust_fit(self._warm)
                self._warm.clear()
            return False
        std = self.std
        z = (x - self.mean) / std
        self.high = max(0.0, self.high + z - self.slack)
        self.low = min(0.0, self.low + z + self.slack)
        if self.high > threshold or -self.low > threshold:
            old_level = self.mean
            self.relevel()
            self._old_level, self._residuals = old_level, []
            self.update(x, threshold)  # the new regime's first observation
            return True
        # A young baseline learns as a running mean; then slowly (weight ``alpha``). A
        # provisional one's level follows the observations since the firing (at
        # PROVISIONAL_MEAN_PACE), its spread becomes the residuals'.
        self.n += 1
        alpha = max(self.alpha, 1.0 / self.n)
        residuals = self._residuals
        if residuals is not None:
            alpha = max(alpha, PROVISIONAL_MEAN_PACE / (RELEVEL_OBSERVATIONS + len(residuals) + 1))
            residuals.append(x - self.mean)
        r = max(-CLIP * std, min(CLIP * std, x - self.mean))
        self.mean += alpha * r
        if residuals is None:
            self.var = (1.0 - alpha) * self.var + alpha * r * r
        elif len(residuals) >= self.warmup:
            _, self.var = _robust_fit(residuals)
            self._residuals = None
        return False


def shown_in_samples(fired: Sequence[str], profile_mode: str) -> list[str]:
    """The signals of ``fired`` that samples of ``profile_mode`` can show.

    CPU samples (``cpu``: the thread holding the GIL) cannot explain a latency change
    that costs no CPU (waiting on I/O, a lock or a busy machine), so in cpu mode a
    latency change alone is no change of the profile: the burst reflex does not burst
    for it, and the report does not count it in ``profile_changes`` (the reward's phase
    goes on). Wall samples see waiting too.

    >>> shown_in_samples(["latency"], "cpu"), shown_in_samples(["latency"], "wall")
    ([], ['latency'])
    >>> shown_in_samples(["latency", "cpu_per_request"], "cpu")
    ['cpu_per_request']
    """
    if profile_mode == "cpu":
        return [name for name in fired if name != "latency"]
    return list(fired)


def _robust_fit(values: Sequence[float]) -> tuple[float, float]:
    """Mean and variance of ``values`` without the one furthest from their median, the
    variance times :data:`WARMUP_VAR_FACTOR` (a baseline's, from a warm-up)."""
    ordered = sorted(values)
    median = _median(ordered)
    kept = sorted(ordered, key=lambda v: abs(v - median))[:-1]  # drop one outlier
    mean = sum(kept) / len(kept)
    var = sum((v - mean) ** 2 for v in kept) / max(1, len(kept) - 1)
    return mean, var * WARMUP_VAR_FACTOR


def _median(ordered: Sequence[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (nearest rank) of a non-empty sequence.

    >>> p90([float(v) for v in range(1, 11)])
    9.0
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass
class _Latency:
    cusum: Cusum = field(default_factory=lambda: Cusum(rel_floor=0.0, abs_floor=REL_FLOOR))
    pending: list[float] = field(default_factory=list)
    since: float = 0.0


@dataclass
class Inputs:
    """One reading of the agent's counters (cumulative), taken at ``now`` (monotonic s)."""

    now: float
    cpu_seconds: float
    requests: int
    spans: int
    durations: Mapping[str, Sequence[float]] = field(default_factory=dict)


class ChangeDetector:
    """The three signals, fed by :meth:`observe`; which fired, and a report per window.

    >>> d = ChangeDetector()
    >>> cpu = 0.0
    >>> for i in range(40):  # 5 ms of CPU per request, then 25 ms from i = 30
    ...     cpu += 20 * (0.005 if i < 30 else 0.025)
    ...     fired = d.observe(Inputs(now=i * 0.25, cpu_seconds=cpu, requests=20 * i,
    ...                              spans=20 * i), threshold=5.0)
    ...     if fired:
    ...         break
    >>> i, fired
    (30, ['cpu_per_request'])
    """

    def __init__(self, *, carry_evidence: bool = True) -> None:
        #: Whether a level restored by :meth:`rebase` takes the evidence the level left
        #: had gathered (:meth:`Cusum.take_evidence`; False: each level only its own).
        self.carry_evidence = carry_evidence
        self.cpu = Cusum()
        self.rate = Cusum()
        self.latency: OrderedDict[str, _Latency] = OrderedDict()
        self.changes = 0
        #: Of :attr:`changes`, those the profile mode's samples can show
        #: (:func:`shown_in_samples`), and when one last fired.
        self.profile_changes = 0
        self.last_profile_change_unix: float | None = None
        #: Baselines restarted by :meth:`rebase` (since start).
        self.rebases = 0
        self.last_change_unix: float | None = None
        #: The profiling level the baselines are for (:meth:`rebase`), and the settled
        #: baselines of the levels left since the last change: CPU, latency per operation.
        self.level: Hashable = None
        self._levels: OrderedDict[Hashable, tuple[Cusum | None, dict[str, Cusum]]] = OrderedDict()
        self._last: Inputs | None = None
        self._cpu_acc = (0.0, 0, 0.0)  # CPU s, requests, since
        self._rate_acc = (0, 0.0)  # spans, since

    def observe(
        self,
        inputs: Inputs,
        threshold: float,
        now_unix: float | None = None,
        profile_mode: str = "wall",
    ) -> list[str]:
        """Take one reading; the names of the signals that fired on it.

        ``profile_mode`` is the profile mode in force: what counts in
        :attr:`profile_changes` (:func:`shown_in_samples`).
        """
        fired: list[str] = []
        last, self._last = self._last, inputs
        if last is None:
            self._cpu_acc = (0.0, 0, inputs.now)
            self._rate_acc = (0, inputs.now)
            return fired
        # CPU per request: one observation per CPU_MIN_REQUESTS requests (or per 2 s).
        cpu_s, reqs, since = self._cpu_acc
        cpu_s += max(0.0, inputs.cpu_seconds - last.cpu_seconds)
        reqs += max(0, inputs.requests - last.requests)
        if reqs >= CPU_MIN_REQUESTS or (reqs > 0 and inputs.now - since >= MAX_OBSERVATION_S):
            if self.cpu.update(cpu_s / reqs, threshold):
                fired.append("cpu_per_request")
                self._forget()
            cpu_s, reqs, since = 0.0, 0, inputs.now
        elif reqs == 0 and inputs.now - since >= MAX_OBSERVATION_S:
            cpu_s, since = 0.0, inputs.now  # idle: nothing to divide by
        self._cpu_acc = (cpu_s, reqs, since)
        # Span rate: one observation per RATE_PERIOD_S.
        spans, since = self._rate_acc
        spans += max(0, inputs.spans - last.spans)
        if inputs.now - since >= RATE_PERIOD_S:
            if self.rate.update(spans / (inputs.now - since), threshold):
                fired.append("span_rate")
            spans, since = 0, inputs.now
        self._rate_acc = (spans, since)
        # Latency per operation: the p90 of every LATENCY_MIN_SPANS durations (log space).
        for name, durations in inputs.durations.items():
            if self._latency_update(name, durations, inputs.now, threshold):
                fired.append("latency")
        if fired:
            self.changes += len(fired)
            self.last_change_unix = now_unix
            shown = shown_in_samples(fired, profile_mode)
            if shown:
                self.profile_changes += len(shown)
                self.last_profile_change_unix = now_unix
        return fired

    def _latency_update(
        self, name: str, durations: Sequence[float], now: float, threshold: float
    ) -> bool:
        op = self.latency.get(name)
        if op is None:
            op = self.latency[name] = _Latency(since=now)
            if len(self.latency) > MAX_OPERATIONS:
                self.latency.popitem(last=False)
        else:
            self.latency.move_to_end(name)
        op.pending.extend(durations)
        enough = len(op.pending) >= LATENCY_MIN_SPANS
        partial = len(op.pending) >= LATENCY_MIN_PARTIAL and now - op.since >= MAX_OBSERVATION_S
        if not (enough or partial):
            if now - op.since >= 4 * MAX_OBSERVATION_S:  # too few to say anything: start over
                op.pending.clear()
                op.since = now
            return False
        value = math.log(max(p90(op.pending), 1e-3))
        op.pending.clear()
        op.since = now
        if op.cusum.update(value, threshold):
            self._forget(name)
            return True
        return False

    def _forget(self, operation: str | None = None) -> None:
        """A signal fired — CPU per request, or ``operation``'s latency: the other
        levels' baselines of it describe the old regime."""
        for level, (_cpu, latency) in self._levels.items():
            if operation is None:
                self._levels[level] = (None, latency)
            else:
                latency.pop(operation, None)

    def _keep(self, level: Hashable) -> None:
        """Keep the baselines of ``level``, being left: settled ones, and ones still
        warming up (their observations so far), so that levels alternating faster than
        a warm-up still settle. Dropping a warming baseline at every switch left the
        detector blind for 138 s in a benchmark run whose policy alternated the watch
        and 50 Hz bursts every 9-12 s (both baselines restarted at each switch, none
        reached :data:`WARMUP`; the hot path was found after 24.7 s, session 28)."""
        cpu = self.cpu.clone() if self.cpu.n > 0 else None
        latency = {n: op.cusum.clone() for n, op in self.latency.items() if op.cusum.n > 0}
        if cpu is None and not latency:
            return
        self._levels[level] = (cpu, latency)
        self._levels.move_to_end(level)
        while len(self._levels) > MAX_LEVELS:
            self._levels.popitem(last=False)

    def rebase(self, level: Hashable = None) -> None:
        """Switch the CPU-per-request and latency baselines to profiling ``level``, without firing.

        Called when the agent changes its own cost to the service (a burst starts or
        ends, a new sampling rate; ``level`` names what is in force, e.g. the sampling
        interval). The baselines of the level left are kept, settled or still warming
        up; a level seen since the last change gets its own back (its CUSUM evidence, or
        its warm-up so far, too; with :attr:`carry_evidence` the larger of its evidence
        and the level left's, :meth:`Cusum.take_evidence`), others learn
        their level again from the next few observations keeping the current spreads
        (:meth:`Cusum.relevel`), so a change of the service right after is seen within
        seconds. The span rate, which profiling does not move, keeps its own.

        >>> d = ChangeDetector()
        >>> d.rebase(level=10); d.rebase(level=0); d.level, d.rebases
        (0, 2)
        """
        if level is not None and level == self.level:
            return
        restored: tuple[Cusum | None, dict[str, Cusum]] = (None, {})
        if level is not None:  # (no level: learn again, keep nothing)
            restored = self._levels.pop(level, restored)
            self._keep(self.level)
        cpu, latency = restored
        if cpu is not None:
            if self.carry_evidence:
                cpu.take_evidence(self.cpu.evidence)
            self.cpu = cpu
        else:
            self.cpu.relevel()
        for name, op in self.latency.items():
            kept = latency.get(name)
            if kept is not None:
                if self.carry_evidence:
                    kept.take_evidence(op.cusum.evidence)
                op.cusum = kept
            else:
                op.cusum.relevel()
            op.pending.clear()
            if self._last is not None:
                op.since = self._last.now
        if self._last is not None:
            self._cpu_acc = (0.0, 0, self._last.now)
        self.level = level
        self.rebases += 1

    @property
    def rise(self) -> float:
        """The largest *rise* now: the upper side of CPU per request's or the span rate's
        CUSUM (work appearing; what starts a glimpse, ``glimpse_sensitivity``), in
        baseline standard deviations; 0 while both are warming up.

        >>> ChangeDetector().rise
        0.0
        """
        return max(0.0, self.cpu.high, self.rate.high)

    @property
    def latency_statistic(self) -> float:
        """The latency signal: the operation whose CUSUM is furthest from 0, signed."""
        best = 0.0
        for op in self.latency.values():
            s = op.cusum.statistic
            if abs(s) > abs(best):
                best = s
        return best

    def report(self, changes: int, profile_changes: int | None = None) -> ChangeSignals:
        """The signals now, with ``changes`` and ``profile_changes`` (fired in the
        window) for the report."""
        return ChangeSignals(
            cpu_per_request=_bounded(self.cpu.statistic),
            latency=_bounded(self.latency_statistic),
            span_rate=_bounded(self.rate.statistic),
            changes=changes,
            last_change_unix=self.last_change_unix,
            profile_changes=profile_changes,
            last_profile_change_unix=(
                self.last_profile_change_unix if profile_changes is not None else None
            ),
        )


def _bounded(value: float) -> float:
    return max(-1e6, min(1e6, value))
