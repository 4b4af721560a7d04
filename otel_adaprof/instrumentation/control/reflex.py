"""The burst reflex: a change signal starts a burst in the agent, with no round trip.

A decision from the controller reaches the agent at its next poll, seconds after a
change; a burst that waits for it comes too late. So the agent acts by itself: when a
change signal (:mod:`~otel_adaprof.instrumentation.observe.change_signals`) crosses
``burst_sensitivity`` (CUSUM, in baseline standard deviations; 0 = reflex off), the
reflex puts ``sampling_interval_ms = burst_interval_ms`` in force at once, as a local
override of the controller's params (:meth:`LiveParams.set_override`), for
``burst_seconds``; then the controller's params again. A burst has a fixed length (a
change during it does not extend it; new params with shorter bursts cut it to their
length: the guard's retreat, whose glimpse is 3 s, ends a 15 s burst that spent the
bank), and after it the reflex rests as long as the burst
lasted (:data:`REST_FACTOR`): whatever the signals do, bursts take at most half of the
time. A change that fires while the reflex rests is not dropped: its burst starts when
the rest ends (the hot path's end came 2 s into a rest in a benchmark run, and its phase
got 75 samples). The change signals switch to the burst's profiling level, and back,
without firing when a burst starts or ends (:meth:`ChangeDetector.rebase`): a burst
raises the service's CPU per request itself.
With ``profile_mode: cpu`` a latency change alone starts no burst: CPU samples cannot
explain time spent waiting (on I/O, a lock, or a busy machine), and on a shared machine
latency moves with the neighbours.
The controller sets the three knobs — how sensitive each service's trigger is and how
big its bursts are — and learns them from the reports (``burst_seconds``,
``change_signals``).

**A glimpse: the reflex's first stage.** A subtle change takes the CUSUM many
observations to bring to ``burst_sensitivity`` (the benchmark ledger's hot path, +18 %
CPU a request: 10-25 s at 8 std), while the samples that would show it are cheap to
take at once. With ``glimpse_sensitivity`` set, a *rise* of CPU per request or of the
span rate (their CUSUM statistic, positive: work appearing) above it starts a glimpse:
one py-spy run at ``burst_interval_ms`` (:data:`GLIMPSE_SECONDS`), reported as soon as it
is in (the agent polls early after any burst starts), then the rest as after a burst.
One glimpse per rise: the next waits until the statistic has fallen below
:data:`REARM_SHARE` of the sensitivity, or a signal fired, and at least
:data:`GLIMPSE_SPACING_S` after the last. A glimpse does not fire the
change signals (their evidence goes on building to ``burst_sensitivity``, whose burst
follows the rest), and its seconds are counted in ``burst_seconds`` and, apart, in
``glimpse_seconds``. Not when the params in force already sample as fast.

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> live = LiveParams(Params.parse({"burst_sensitivity": 4, "burst_seconds": 2}))
    >>> reflex = BurstReflex(live)
    >>> reflex.react(["cpu_per_request"], now=100.0)
    True
    >>> live.params.sampling_interval_ms, live.override_reason
    (10, 'burst')
    >>> reflex.react([], now=101.0), reflex.react([], now=102.5)
    (False, False)
    >>> live.params.sampling_interval_ms, reflex.burst_seconds
    (50, 2.0)
    >>> reflex.react(["latency"], now=103.0)  # resting as long as the burst lasted
    False

A glimpse on a rise of 3 std, before any signal fires:

    >>> live = LiveParams(Params.parse({"burst_sensitivity": 8, "glimpse_sensitivity": 3}))
    >>> reflex = BurstReflex(live)
    >>> reflex.react([], now=10.0, rise=3.2), live.params.sampling_interval_ms
    (True, 10)
    >>> reflex.react([], now=12.0, rise=4.0), live.params.sampling_interval_ms
    (False, 50)
    >>> reflex.react([], now=15.0, rise=4.5)  # the same rise: no second glimpse
    False
    >>> reflex.glimpses, reflex.glimpse_seconds, reflex.burst_seconds
    (1, 2.0, 2.0)

**New code.** A function of the service's own its CPU samples never had, now seen
again and again (:mod:`~otel_adaprof.instrumentation.observe.new_code`: the slow requests that run
a new hot path show it at once), starts a glimpse too, with no rise, within its own
allowance (:data:`NEW_CODE_GLIMPSES`, one more every :data:`NEW_CODE_GLIMPSE_EVERY_S`),
apart from the rise's spacing. New code met while the reflex rests after a burst or a
glimpse is looked at when the rest ends; met while one runs (its samples show it), or
with the allowance spent, it starts nothing (the function is known from then on).

    >>> reflex.react([], now=20.0, new_code=["compress (app.py)"])
    True
    >>> reflex.in_glimpse, reflex.new_code_glimpses
    (True, 1)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.observe.change_signals import REPORT_THRESHOLD, shown_in_samples
from otel_adaprof.params import Params

log = logging.getLogger("otel_adaprof.agent")

#: The override reason while a burst runs.
REASON = "burst"
#: After a burst, the reflex rests this many times the burst's length before another
#: may start (bursts then take at most 1 / (1 + REST_FACTOR) of the time).
REST_FACTOR = 1.0
#: A burst this fast or faster (ms between samples) sets the slow-span capture aside while
#: it runs: py-spy then samples the slow spans' threads itself, as the catalog's learning
#: actions (50-100 Hz, no capture) rely on. With the watch's capture kept, the agent's
#: fast loop took 7.4-11.1 ms of CPU a second in session 31's bursts against static
#: 100 Hz's 4.3-5.2 (bench/output/cpu_by_action_s31.json): 0.003-0.006 of a core, up
#: to a sixth of a burst's cost, for samples py-spy took anyway (docs/benchmarks.md,
#: session 32).
CAPTURE_ASIDE_MS = 20
#: How long a glimpse lasts (s): one py-spy run at 100 Hz (planned for 200 samples,
#: :data:`~otel_adaprof.instrumentation.profiler.supervisor.SEGMENT_S`), cut when it
#: ends, so its samples are in for the early report.
GLIMPSE_SECONDS = 2.0
#: After a glimpse the next one waits until the rise that started it has fallen below
#: this share of ``glimpse_sensitivity`` (or a signal fired): one glimpse per rise.
REARM_SHARE = 0.5
#: Seconds from a glimpse's start before the next may start, whatever the rise does: a
#: small lasting shift that never fires walks the statistic up and down around the
#: sensitivity (in ``bench/glimpse_threshold.py``'s ledger, glimpses every 7 s, a quarter
#: of the time at 100 Hz, without it).
GLIMPSE_SPACING_S = 30.0
#: The override reason while a glimpse runs.
GLIMPSE_REASON = "glimpse"
#: Glimpses on new code allowed at once, and seconds for one more to be allowed (a token
#: bucket; a glimpse on a rise keeps its own :data:`GLIMPSE_SPACING_S`: new code seen
#: first does not silence the rise that follows, nor the reverse). New code is rare once
#: the process's functions are known (a few false ones in a four-minute benchmark run,
#: ``bench/new_code_signal.py``), but one a few seconds before a real change must not
#: silence it (with a 10 s spacing instead, a false one 5 s before the shop's hot path
#: did, session 46); the allowance bounds what a service that keeps showing new
#: functions pays: a 2 s glimpse every 20 s at most, a tenth of the time at 100 Hz.
NEW_CODE_GLIMPSES = 2
NEW_CODE_GLIMPSE_EVERY_S = 20.0


class BurstReflex:
    """Starts, extends and ends bursts; counts the seconds spent in them."""

    def __init__(self, live: LiveParams) -> None:
        self.live = live
        #: Bursts started, and seconds spent in bursts (since start; monotonic counters;
        #: glimpses included).
        self.bursts = 0
        self.burst_seconds = 0.0
        #: Of those, the glimpses, and their seconds.
        self.glimpses = 0
        self.glimpse_seconds = 0.0
        self._glimpse = False
        self._armed = True
        self._glimpsed_at: float | None = None
        self._new_code_allowance = float(NEW_CODE_GLIMPSES)
        self._allowance_at: float | None = None
        self._new_code_deferred: list[str] = []
        #: Glimpses started on new code (:mod:`~otel_adaprof.instrumentation.observe.new_code`).
        self.new_code_glimpses = 0
        #: When the last burst started (monotonic s), if one did.
        self.started_at: float | None = None
        self._until: float | None = None
        self._rest_until = float("-inf")
        self._last: float | None = None
        self._base: Params | None = None
        #: Signals that fired while the reflex rested: a burst when the rest ends.
        self._deferred: list[str] = []

    @property
    def threshold(self) -> float:
        """The CUSUM threshold in force: ``burst_sensitivity``, or the report's default."""
        sensitivity = self.live.base.params.burst_sensitivity
        return sensitivity if sensitivity > 0 else REPORT_THRESHOLD

    @property
    def resting(self) -> bool:
        """Whether the reflex rests after a burst (at the last tick)."""
        return self._until is None and self._last is not None and self._last < self._rest_until

    @property
    def in_burst(self) -> bool:
        """Whether a burst runs now."""
        return self._until is not None

    @property
    def in_glimpse(self) -> bool:
        """Whether the burst running now is a glimpse (a rise's short look)."""
        return self._until is not None and self._glimpse

    def react(
        self, fired: list[str], now: float, rise: float = 0.0, new_code: Sequence[str] = ()
    ) -> bool:
        """One tick (``now``: monotonic s): account, end or start a burst or a glimpse;
        whether one started. ``rise``: the largest rise of CPU per request or span rate
        now (their CUSUM statistics, std; for the glimpse). ``new_code``: functions that
        became new code since the last tick (:class:`~otel_adaprof.instrumentation.
        observe.new_code.NewCode`): a glimpse too, within its own allowance (apart from
        the rise's spacing), at the end of a rest it meets."""
        if self._until is not None and self._last is not None:
            spent = max(0.0, min(now, self._until) - self._last)
            self.burst_seconds += spent
            if self._glimpse:
                self.glimpse_seconds += spent
        self._last = now
        base = self.live.base.params
        on = base.burst_sensitivity > 0 and base.burst_seconds > 0
        glimpse_on = base.glimpse_sensitivity > 0 and not _as_fast(base)
        if self._until is not None and self.started_at is not None:
            # New params with shorter bursts (the guard's retreat: a glimpse of 3 s) cut
            # the running burst to their length; longer ones do not extend it.
            length = GLIMPSE_SECONDS if self._glimpse else base.burst_seconds
            self._until = min(self._until, self.started_at + length)
        running_on = glimpse_on if self._glimpse else on
        if self._until is not None and (not running_on or now >= self._until):
            if self.started_at is not None:
                self._rest_until = now + REST_FACTOR * (now - self.started_at)
            self._end()
        # Re-armed by a firing, or by the rise falling back, read at the params' own
        # level (in a burst or its rest the statistic is another level's, or relearning),
        # and GLIMPSE_SPACING_S after the last glimpse at the soonest.
        if fired or (
            self._until is None
            and now >= self._rest_until
            and rise < REARM_SHARE * base.glimpse_sensitivity
        ):
            self._armed = True
        spaced = self._glimpsed_at is None or now - self._glimpsed_at >= GLIMPSE_SPACING_S
        if self._allowance_at is not None:
            regained = (now - self._allowance_at) / NEW_CODE_GLIMPSE_EVERY_S
            self._new_code_allowance = min(
                float(NEW_CODE_GLIMPSES), self._new_code_allowance + max(0.0, regained)
            )
        self._allowance_at = now
        # New code met while the reflex rests is looked at when the rest ends (a false
        # glimpse's rest held the shop's hot path back 3 s, session 46); met in a burst
        # or a glimpse, whose samples show it, it starts nothing.
        if self._until is not None:
            new_code, self._new_code_deferred = [], []
        elif now < self._rest_until:
            self._new_code_deferred = sorted({*self._new_code_deferred, *new_code})
            new_code = []
        elif self._new_code_deferred:
            new_code = sorted({*self._new_code_deferred, *new_code})
            self._new_code_deferred = []
        on_rise = self._armed and spaced and rise >= base.glimpse_sensitivity
        on_new_code = bool(new_code) and glimpse_on and self._new_code_allowance >= 1.0
        started = False
        # In cpu mode a latency change alone is not one CPU samples can explain.
        fired = shown_in_samples(fired, base.profile_mode)
        until, began = self._until, self.started_at
        if fired and on and self._glimpse and until is not None and began is not None:
            # The change the glimpse looked at fired: the glimpse becomes its burst.
            started = True
            self._glimpse = False
            self._until = max(until, began + base.burst_seconds)
            self._base = None  # the override again, as a burst's
            log.info("otel-adaprof: the glimpse becomes a burst (%s changed)", ", ".join(fired))
            fired = []
        if not on:
            self._deferred = []
        elif fired and self._until is None and now < self._rest_until:
            self._deferred = sorted(set(self._deferred) | set(fired))
        if self._deferred and self._until is None and now >= self._rest_until:
            fired = sorted(set(fired) | set(self._deferred))
            self._deferred = []
        if fired and on and self._until is None and now >= self._rest_until:
            started = True
            self._until = now + base.burst_seconds
            self._glimpse = False
            self.bursts += 1
            self.started_at = now
            log.info(
                "otel-adaprof: burst at %d ms for %g s (%s changed)",
                base.burst_interval_ms, base.burst_seconds, ", ".join(fired),
            )  # fmt: skip
        elif (
            glimpse_on
            and (on_rise or on_new_code)
            and self._until is None
            and now >= self._rest_until
        ):
            started = True
            self._until = now + GLIMPSE_SECONDS
            self._glimpse = True
            self.bursts += 1
            self.glimpses += 1
            self.started_at = now
            if on_rise:
                self._armed = False
                self._glimpsed_at = now
                why = f"a rise of {rise:.1f} std"
            else:
                self._new_code_allowance -= 1.0
                self.new_code_glimpses += 1
                why = "new code: " + ", ".join(new_code)
            log.info(
                "otel-adaprof: glimpse at %d ms for %g s (%s)",
                base.burst_interval_ms, GLIMPSE_SECONDS, why,
            )  # fmt: skip
        if self._until is not None and base is not self._base:
            # A burst, or new params from the controller under it: the burst's params.
            self._base = base
            self.live.set_override(
                burst_params(base), reason=GLIMPSE_REASON if self._glimpse else REASON
            )
        return started

    def _end(self) -> None:
        self._until = None
        self._base = None
        self._glimpse = False
        if self.live.override_reason in (REASON, GLIMPSE_REASON):
            self.live.set_override(None, reason="burst over")

    def stop(self) -> None:
        """End a running burst (the agent stops)."""
        if self._until is not None:
            self._end()


def _as_fast(base: Params) -> bool:
    """Whether ``base`` samples as fast as its bursts already (a glimpse adds nothing)."""
    return 0 < base.sampling_interval_ms <= base.burst_interval_ms


def burst_params(base: Params) -> Params:
    """The params a burst puts in force over ``base``: its sampling interval, and no
    slow-span capture when the burst samples every :data:`CAPTURE_ASIDE_MS` or faster.

    >>> watch = Params.parse({"sampling_interval_ms": 0, "slow_span_interval_ms": 50,
    ...                       "burst_sensitivity": 8, "burst_interval_ms": 10})
    >>> burst = burst_params(watch)
    >>> burst.sampling_interval_ms, burst.slow_span_interval_ms
    (10, 0)
    >>> slow = burst_params(watch.with_changes(burst_interval_ms=100))
    >>> slow.sampling_interval_ms, slow.slow_span_interval_ms
    (100, 50)
    """
    interval = base.burst_interval_ms
    if interval <= CAPTURE_ASIDE_MS and base.slow_span_interval_ms > 0:
        return base.with_changes(sampling_interval_ms=interval, slow_span_interval_ms=0)
    return base.with_changes(sampling_interval_ms=interval)
