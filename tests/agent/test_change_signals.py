"""Change signals, the burst reflex and the params override, pinned by hand-made numbers."""

from __future__ import annotations

import random
import time

import pytest

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.reflex import BurstReflex
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.observe.change_signals import (
    REPORT_THRESHOLD,
    WARMUP,
    ChangeDetector,
    Cusum,
    Inputs,
)
from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.params import Params
from tests.support.bench_scripts import load

#: bench/change_detector_refire.py: the benchmark service's load, request by request.
REFIRE = load("change_detector_refire")
#: bench/change_across_levels.py: a change begun at one profiling level, seen at another.
ACROSS = load("change_across_levels")


def _noise(seed: int, n: int, mean: float, sd: float) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for _ in range(n)]


def _first_fire(c: Cusum, values: list[float], threshold: float) -> int | None:
    for i, x in enumerate(values):
        if c.update(x, threshold):
            return i
    return None


# Cusum ---------------------------------------------------------------------------------


def test_a_step_of_three_std_fires_within_three_observations():
    # Baseline 10 ± 1 (std 1, above the 5 % floor); a step to 13 adds 2.5 per observation.
    c = Cusum()
    assert _first_fire(c, _noise(1, 40, 10.0, 1.0), threshold=5.0) is None
    fired_at = _first_fire(c, [13.0] * 10, threshold=5.0)
    assert fired_at is not None and fired_at <= 2  # 2.5, 5.0, 7.5: fires at the third


def test_a_drop_fires_too_and_the_statistic_is_negative_before():
    c = Cusum()
    for x in _noise(2, 40, 10.0, 1.0):
        c.update(x, threshold=8.0)
    c.update(7.5, threshold=8.0)
    assert c.statistic < -1.5
    assert _first_fire(c, [7.0] * 10, threshold=8.0) is not None


def test_noise_at_the_baseline_does_not_fire():
    c = Cusum()
    assert _first_fire(c, _noise(3, 2000, 10.0, 1.0), threshold=8.0) is None
    assert abs(c.statistic) < 8.0


def test_a_perfectly_steady_signal_does_not_fire_on_a_one_percent_move():
    # A constant baseline has no spread: the 5 % floor keeps a 1 % move at z = 0.2.
    c = Cusum()
    values = [100.0] * WARMUP + [101.0] * 200
    assert _first_fire(c, values, threshold=REPORT_THRESHOLD) is None
    assert _first_fire(c, [115.0] * 5, threshold=REPORT_THRESHOLD) is not None


def test_a_startup_outlier_does_not_blunt_the_baseline():
    # The first observation of a process is often far off (imports, warm-up).
    c = Cusum()
    values = [80.0, *_noise(4, WARMUP - 1 + 20, 10.0, 1.0)]
    assert _first_fire(c, values, threshold=5.0) is None
    assert c.std < 2.0
    assert _first_fire(c, [14.0] * 5, threshold=5.0) is not None


def test_after_firing_the_new_level_becomes_the_baseline():
    c = Cusum()
    _first_fire(c, _noise(5, 30, 10.0, 1.0), threshold=5.0)
    assert _first_fire(c, [20.0] * 3, threshold=5.0) == 0
    assert _first_fire(c, _noise(6, 300, 20.0, 1.0), threshold=8.0) is None


def test_a_second_change_soon_after_a_firing_is_seen_within_a_few_observations():
    # A firing used to restart the baseline: 16 observations blind. A false alarm 13 s
    # before a benchmark's hot path hid its onset (session 29, a phase without samples).
    c = Cusum()
    assert _first_fire(c, _noise(10, 40, 10.0, 0.5), threshold=8.0) is None
    assert _first_fire(c, [12.5] * 5, threshold=8.0) is not None  # the first change
    assert not c.settled  # its level is learnt again (the spread is kept)
    fired_at = _first_fire(c, _noise(11, 6, 12.5, 0.5) + [17.0] * 12, threshold=8.0)
    assert fired_at is not None and fired_at - 6 < 8  # +36 %: 2.4 provisional std (3 floors)


def test_after_a_firing_the_spread_is_provisional_until_the_new_regime_shows_its_own():
    c = Cusum()
    assert _first_fire(c, _noise(12, 40, 10.0, 0.2), threshold=8.0) is None
    narrow = c.std  # the 5 % floor: 0.5
    assert _first_fire(c, [14.0] * 3, threshold=8.0) is not None
    # A wider regime (0.15 of its level where the old was floored at 0.05): the old
    # spread as it was fires on its noise; the provisional one does not, and the
    # regime's own spread replaces it after a warm-up's worth of observations.
    assert _first_fire(c, _noise(14, 60, 14.0, 2.1), threshold=8.0) is None
    assert c.settled and c.std > 2.5 * narrow * 14.0 / 10.0


def test_no_observation_before_the_warmup_fires():
    c = Cusum()
    assert _first_fire(c, [1.0, 100.0, 1.0, 100.0, 1.0, 100.0, 1.0], threshold=0.1) is None


# ChangeDetector ------------------------------------------------------------------------


def _run(detector: ChangeDetector, ticks: list[tuple[float, int, dict[str, list[float]]]]):
    """Feed ticks of (CPU s, requests, durations) 0.25 s apart; (tick, fired) of each."""
    cpu, reqs, spans, out = 0.0, 0, 0, []
    for i, (d_cpu, d_reqs, durations) in enumerate(ticks):
        cpu, reqs, spans = cpu + d_cpu, reqs + d_reqs, spans + 3 * d_reqs
        inputs = Inputs(now=i * 0.25, cpu_seconds=cpu, requests=reqs, spans=spans,
                        durations=durations)  # fmt: skip
        out.append(detector.observe(inputs, threshold=5.0, now_unix=1000.0 + i))
    return out


def test_cpu_per_request_step_fires_within_two_ticks_and_is_reported():
    rng = random.Random(7)
    steady = [(15 * rng.uniform(0.0045, 0.0055), 15, {}) for _ in range(40)]
    step = [(15 * rng.uniform(0.0095, 0.0105), 15, {}) for _ in range(8)]
    d = ChangeDetector()
    fired = _run(d, steady + step)
    assert not any(fired[:40])
    first = next(i for i, f in enumerate(fired) if f)
    assert first - 40 <= 1 and "cpu_per_request" in fired[first]
    report = d.report(changes=d.changes)
    assert report.changes >= 1 and report.last_change_unix == 1000.0 + first


def test_steady_load_with_jitter_fires_nothing():
    rng = random.Random(8)
    ticks = [
        (rng.randint(4, 6) * 0.005 * rng.uniform(0.9, 1.1), 5,
         {"GET /a": [rng.uniform(8.0, 12.0) for _ in range(5)]})
        for _ in range(400)
    ]  # fmt: skip
    d = ChangeDetector()
    assert not any(_run(d, ticks))
    assert d.changes == 0


def test_latency_step_of_one_operation_fires():
    # 16 durations per tick: one p90 observation per operation per tick.
    rng = random.Random(9)
    d = ChangeDetector()
    before = [(0.025, 5, {"GET /a": [rng.uniform(8, 12) for _ in range(16)],
                          "GET /b": [rng.uniform(1, 2) for _ in range(16)]})
              for _ in range(WARMUP + 14)]  # fmt: skip
    after = [(0.025, 5, {"GET /a": [rng.uniform(8, 12) for _ in range(16)],
                         "GET /b": [rng.uniform(4, 8) for _ in range(16)]})
             for _ in range(4)]  # fmt: skip
    fired = _run(d, before + after)
    n = len(before)
    assert not any(fired[:n])
    assert any("latency" in f for f in fired[n : n + 2])


@pytest.mark.parametrize("mode, shown", [("cpu", 0), ("wall", 1)])
def test_a_latency_change_alone_is_a_profile_change_only_in_wall_mode(mode, shown):
    # cpu samples cannot show time spent waiting: counted as a change, not a profile one
    rng = random.Random(9)
    d = ChangeDetector()
    cpu, reqs, fired_at = 0.0, 0, None
    for i in range(WARMUP + 20):
        slow = i >= WARMUP + 14
        cpu, reqs = cpu + 0.025, reqs + 5
        durations = {"GET /a": [rng.uniform(20, 30) if slow else rng.uniform(8, 12)
                                for _ in range(16)]}  # fmt: skip
        inputs = Inputs(now=i * 0.25, cpu_seconds=cpu, requests=reqs, spans=3 * reqs,
                        durations=durations)  # fmt: skip
        fired = d.observe(inputs, threshold=5.0, now_unix=1000.0 + i, profile_mode=mode)
        if fired and fired_at is None:
            fired_at = i
            assert fired == ["latency"]
    assert fired_at is not None and d.changes >= 1
    report = d.report(d.changes, d.profile_changes)
    assert (report.profile_changes or 0) >= shown and bool(report.profile_changes) == bool(shown)
    assert report.last_change_unix == 1000.0 + fired_at
    assert report.last_profile_change_unix == (1000.0 + fired_at if shown else None)


def test_a_profiling_level_change_rebases_instead_of_firing():
    # A burst raises the CPU per request by a third (the profiler's own cost): after
    # rebase() the new level is the baseline, not a change; a real step later still fires.
    rng = random.Random(10)
    d = ChangeDetector()
    steady = [(15 * rng.uniform(0.0045, 0.0055), 15, {}) for _ in range(40)]
    assert not any(_run(d, steady))
    d.rebase()
    cpu, reqs, spans = 40 * 0.075, 40 * 15, 40 * 45
    fired = []
    for i in range(40, 40 + WARMUP + 30):  # the burst's level: 6.7 ms per request
        cpu, reqs, spans = cpu + 15 * rng.uniform(0.0062, 0.0072), reqs + 15, spans + 45
        fired.append(d.observe(Inputs(now=i * 0.25, cpu_seconds=cpu, requests=reqs,
                                      spans=spans), threshold=5.0))  # fmt: skip
    assert not any(fired) and d.rebases == 1
    for i in range(40 + WARMUP + 30, 40 + WARMUP + 34):  # the service changes: 13 ms
        cpu, reqs, spans = cpu + 15 * 0.013, reqs + 15, spans + 45
        fired.append(d.observe(Inputs(now=i * 0.25, cpu_seconds=cpu, requests=reqs,
                                      spans=spans), threshold=5.0))  # fmt: skip
    assert any("cpu_per_request" in f for f in fired[-4:])


def test_the_same_level_change_without_rebase_fires():
    # The control for the test above: a third more CPU per request is a change.
    rng = random.Random(10)
    d = ChangeDetector()
    steady = [(15 * rng.uniform(0.0045, 0.0055), 15, {}) for _ in range(40)]
    burst = [(15 * rng.uniform(0.0062, 0.0072), 15, {}) for _ in range(10)]
    assert any(_run(d, steady + burst)[40:])


def test_span_rate_collapse_fires():
    d = ChangeDetector()
    ticks = [(0.025, 5, {}) for _ in range(60)] + [(0.0, 0, {}) for _ in range(12)]
    fired = _run(d, ticks)
    assert not any(fired[:60])
    assert any("span_rate" in f for f in fired[60:])
    assert d.report(0).span_rate == 0.0  # restarted after firing


# LiveParams override and the burst reflex ----------------------------------------------


def test_override_keeps_the_version_and_the_controllers_params_underneath():
    live = LiveParams(Params())
    seen = []
    live.on_change(lambda p: seen.append(p.params.sampling_interval_ms))
    live.apply(Params(sampling_interval_ms=100), 7, "s")
    assert live.set_override(Params(sampling_interval_ms=10), reason="burst")
    live.apply(Params(sampling_interval_ms=200), 8, "s")  # the controller answers under it
    assert (live.params.sampling_interval_ms, live.current.version) == (10, 8)
    assert live.base.params.sampling_interval_ms == 200
    assert live.set_override(None, reason="over")
    assert live.params.sampling_interval_ms == 200 and seen == [100, 10, 200]


def test_reflex_starts_and_ends_a_burst_of_fixed_length_then_rests():
    live = LiveParams(Params.parse({"sampling_interval_ms": 200, "burst_sensitivity": 3,
                                    "burst_interval_ms": 5, "burst_seconds": 2}))  # fmt: skip
    r = BurstReflex(live)
    assert r.threshold == 3
    assert not r.react([], 0.0)
    assert r.react(["span_rate"], 1.0) and live.params.sampling_interval_ms == 5
    assert not r.react(["cpu_per_request"], 2.5)  # no extension: ends at 3.0
    r.react([], 2.75)
    assert live.params.sampling_interval_ms == 5
    r.react([], 3.0)
    assert live.params.sampling_interval_ms == 200 and live.override is None
    assert (r.bursts, r.burst_seconds) == (1, 2.0)
    assert r.resting and not r.react(["span_rate"], 4.5)  # rests 2 s, until 5.0
    assert r.react(["span_rate"], 5.0) and r.bursts == 2


def test_a_fast_burst_sets_the_slow_span_capture_aside_and_the_watch_gets_it_back():
    """At 100 Hz py-spy samples the slow spans' threads itself; the watch's capture kept
    through a burst cost 0.003-0.006 of a core more (session 31's bursts). A
    burst at 10 ms removes the capture's open-span index; its end installs it again. A
    slow burst (100 ms) keeps the capture."""
    watch = Params.parse({"sampling_interval_ms": 0, "slow_span_interval_ms": 50,
                          "marker_trigger": {"latency_percentile": 90},
                          "burst_sensitivity": 8, "burst_interval_ms": 10,
                          "burst_seconds": 2})  # fmt: skip
    for burst_ms, kept in [(10, False), (100, True)]:
        live = LiveParams(watch.with_changes(burst_interval_ms=burst_ms))
        capture = SlowSpanCapture(live, SampleStore(), LatencyTracker(), enable=lambda i: True)
        r = BurstReflex(live)
        capture.tick(time.time_ns())
        assert capture.on
        assert r.react(["cpu_per_request"], 0.0)
        assert live.params.sampling_interval_ms == burst_ms
        capture.tick(time.time_ns())
        assert capture.on is kept and (live.params.slow_span_interval_ms > 0) is kept
        r.react([], 2.0)  # the burst is over: the watch's params again
        assert live.override is None
        capture.tick(time.time_ns())
        assert capture.on and live.params.slow_span_interval_ms == 50


def test_false_alarms_every_tick_keep_the_reflex_bursting_at_most_half_the_time():
    live = LiveParams(Params.parse({"burst_sensitivity": 8, "burst_seconds": 15}))
    r = BurstReflex(live)
    for tick in range(2400):  # 600 s at 0.25 s, a signal firing at every tick
        r.react(["cpu_per_request"], tick * 0.25)
    assert 0.45 <= r.burst_seconds / 600.0 <= 0.51


def test_reflex_follows_new_controller_params_and_stops_when_turned_off():
    live = LiveParams(Params.parse({"burst_sensitivity": 3, "burst_seconds": 10}))
    r = BurstReflex(live)
    r.react(["span_rate"], 0.0)
    live.apply(Params.parse({"burst_sensitivity": 3, "stack_depth": 16}), 2, None)
    r.react([], 0.25)
    assert (live.params.sampling_interval_ms, live.params.stack_depth) == (10, 16)
    live.apply(Params.parse({"burst_sensitivity": 0, "stack_depth": 16}), 3, None)
    r.react([], 0.5)
    assert live.override is None and not r.in_burst
    assert not r.react(["span_rate"], 1.0)  # reflex off: changes are counted, no burst
    assert r.threshold == REPORT_THRESHOLD


def test_a_retreat_to_a_glimpse_cuts_a_running_burst_to_the_glimpses_length():
    """The guard retreats when a burst spent the bank; since the retreats keep the reflex
    for a 3 s glimpse (session 33) the reflex stays on, and a 15 s burst ran on through
    the retreat: a 30 s demo at 0.008 of a core spent 0.026, a CI run of it at 0.016
    spent 0.0203 (session 34). New params with shorter bursts cut the running burst to
    their length; longer ones do not extend it."""
    watch = Params.parse({"burst_sensitivity": 8, "burst_seconds": 15})
    glimpse = watch.with_changes(burst_seconds=3)
    # the retreat arrives 2 s into the burst: it ends 3 s after it started
    live = LiveParams(watch)
    r = BurstReflex(live)
    assert r.react(["cpu_per_request"], 0.0)
    r.react([], 2.0)
    live.apply(glimpse, 2, None)
    r.react([], 2.5)
    assert r.in_burst and live.override is not None
    r.react([], 3.0)
    assert not r.in_burst and live.override is None
    assert r.burst_seconds == 3.0
    assert r.resting and not r.react(["cpu_per_request"], 5.5)  # rests as long (3 s)
    assert r.react(["cpu_per_request"], 6.0)  # the glimpse
    r.react([], 9.0)
    assert not r.in_burst and r.burst_seconds == 6.0
    # the retreat arrives 5 s into the burst: it ends at the next tick
    live = LiveParams(watch)
    r = BurstReflex(live)
    assert r.react(["cpu_per_request"], 0.0)
    r.react([], 5.0)
    live.apply(glimpse, 2, None)
    r.react([], 5.25)
    assert not r.in_burst and live.override is None
    assert r.burst_seconds == 5.25
    # longer bursts in new params do not extend the running one
    live = LiveParams(glimpse)
    r = BurstReflex(live)
    assert r.react(["cpu_per_request"], 0.0)
    live.apply(watch, 2, None)
    r.react([], 2.0)
    assert r.in_burst
    r.react([], 3.0)
    assert not r.in_burst and r.burst_seconds == 3.0


# params --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("slow_span_interval_ms", 1001),
        ("slow_span_interval_ms", -5),
        ("burst_sensitivity", 20.5),
        ("burst_sensitivity", -1.0),
        ("burst_interval_ms", 0),
        ("burst_seconds", 121.0),
        ("glimpse_sensitivity", 20.5),
        ("glimpse_sensitivity", -0.5),
    ],
)
def test_new_params_out_of_bounds_are_refused_naming_the_field(field, value):
    with pytest.raises(ContractError) as err:
        Params.parse({field: value})
    assert err.value.field == field and "out of bounds" in str(err.value)


def test_new_params_defaults_leave_capture_and_reflex_off():
    p = Params()
    assert (p.slow_span_interval_ms, p.burst_sensitivity, p.glimpse_sensitivity) == (0, 0.0, 0.0)
    assert (p.burst_interval_ms, p.burst_seconds) == (10, 10.0)


def test_a_new_sampling_rate_from_the_controller_rebases_without_a_burst():
    from otel_adaprof.instrumentation.control.fast_loop import FastLoop
    from otel_adaprof.instrumentation.join.samples import SampleStore
    from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
    from otel_adaprof.instrumentation.spans.latency import LatencyTracker

    live = LiveParams(Params.parse({"sampling_interval_ms": 50, "burst_sensitivity": 8}))
    latency = LatencyTracker()
    n = [0]
    loop = FastLoop(live, SlowSpanCapture(live, SampleStore(), latency), latency,
                    counts=lambda: (n[0], 3 * n[0]), agent_threads=list)  # fmt: skip
    for tick in range(10):
        n[0] += 5
        assert loop.signal_tick(tick * 0.25) == []
    assert loop.detector.rebases == 0
    live.apply(Params.parse({"sampling_interval_ms": 0, "burst_sensitivity": 8}), 2, None)
    n[0] += 5
    assert loop.signal_tick(2.5) == [] and loop.detector.rebases == 1
    assert not loop.reflex.in_burst


def test_with_a_profiler_that_costs_the_service_nothing_a_change_before_a_switch_fires():
    """The native profiler: one profiling level. The service's CPU per request triples
    a quarter of a second before the controller's watch comes in; nothing is relearnt at
    the switch, so the change fires (a rebase there relearnt the baseline from the new
    regime and nothing fired for 20 s: the benchmark's silent reflex, docs/agent.md).
    The profiler's own CPU (``profiler_cpu``) is not the service's and fires nothing."""
    from otel_adaprof.demo.workload import parse_catalog as burn_cpu_ms
    from otel_adaprof.instrumentation.control.fast_loop import FastLoop
    from otel_adaprof.instrumentation.join.samples import SampleStore
    from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
    from otel_adaprof.instrumentation.spans.latency import LatencyTracker

    def loop_at(rate_ms: int) -> tuple[FastLoop, LiveParams, list[int], list[float]]:
        live = LiveParams(Params.parse({"sampling_interval_ms": rate_ms, "burst_sensitivity": 8}))
        latency = LatencyTracker()
        n, sampler = [0], [0.0]
        loop = FastLoop(
            live, SlowSpanCapture(live, SampleStore(), latency), latency,
            counts=lambda: (n[0], 3 * n[0]), agent_threads=list,
            profiler_cpu=lambda: sampler[0], one_level=lambda: True,
        )  # fmt: skip
        return loop, live, n, sampler

    loop, live, n, sampler = loop_at(20)
    fired: list[str] = []
    for tick in range(120):  # 5 requests a tick; the baseline settles in about 50
        per_request = 0.003 if tick >= 79 else 0.001
        if tick == 80:
            live.apply(Params.parse({"sampling_interval_ms": 0, "burst_sensitivity": 8}), 2, None)
        burn_cpu_ms(5000 * per_request)
        n[0] += 5
        fired += loop.signal_tick(tick * 0.25)
    assert "cpu_per_request" in fired and loop.reflex.burst_seconds > 0
    assert loop.detector.rebases == 0

    # the profiler's CPU, told apart: its reads are no change of the service
    loop, live, n, sampler = loop_at(10)
    fired = []
    for tick in range(120):
        burn_cpu_ms(5.0)
        if tick >= 80:
            t0 = time.thread_time()
            burn_cpu_ms(10.0)  # what the sampler thread would have used meanwhile
            sampler[0] += time.thread_time() - t0
        n[0] += 5
        fired += loop.signal_tick(tick * 0.25)
    assert fired == [], fired


def test_poll_soon_wakes_the_poller_before_its_window_ends():
    import threading
    import time

    from otel_adaprof.instrumentation.control.poller import Poller

    # Only the wait between polls is under test: no controller, no window to close.
    poller = Poller(LiveParams(Params()), None, lambda: None, lambda depth, version: None,
                    controller_url=None)  # fmt: skip
    t0 = time.monotonic()
    threading.Timer(0.2, poller.poll_soon, args=(0.1,)).start()
    poller._sleep(5.0)
    assert 0.25 <= time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    poller._sleep(0.2)  # no request pending: the window's own length
    assert time.monotonic() - t0 >= 0.19


def test_a_report_asked_for_after_a_due_poll_is_kept_for_the_next_one():
    """A glimpse that starts 0.1 s before the window's due close asks for a report a
    second later: the due poll comes first, and the next one a second after the
    glimpse's start, not a whole window later. One asked for within half a second of
    the due poll is that poll's."""
    import time

    from otel_adaprof.instrumentation.control.poller import Poller

    poller = Poller(LiveParams(Params()), None, lambda: None, lambda depth, version: None,
                    controller_url=None)  # fmt: skip
    t0 = time.monotonic()
    poller.poll_soon(1.0)
    poller._sleep(0.1)  # the window's due close comes first
    assert time.monotonic() - t0 < 0.5
    poller._sleep(5.0)  # the next window: cut at the glimpse's report
    assert 0.95 <= time.monotonic() - t0 < 2.5
    t0 = time.monotonic()
    poller._sleep(0.3)  # asked for once: no report pending any more
    assert time.monotonic() - t0 >= 0.29
    # asked for just after the due poll (0.1 s): that poll's, no near-empty window after
    t0 = time.monotonic()
    poller.poll_soon(0.2)
    poller._sleep(0.1)
    poller._sleep(0.4)
    assert time.monotonic() - t0 >= 0.49


def test_a_report_asked_for_while_an_earlier_one_waits_is_made_after_it():
    """Two glimpses a second apart each ask for a report: the first is made at its time
    and the second is kept for its own (only the earliest was kept, so the second
    waited a whole window: fails with a single pending time)."""
    import time

    from otel_adaprof.instrumentation.control.poller import Poller

    poller = Poller(LiveParams(Params()), None, lambda: None, lambda depth, version: None,
                    controller_url=None)  # fmt: skip
    t0 = time.monotonic()
    poller.poll_soon(1.2)
    poller.poll_soon(0.2)  # asked for later, due sooner
    poller._sleep(5.0)
    assert 0.15 <= time.monotonic() - t0 < 0.9
    poller._sleep(5.0)  # the report asked for first, at its own time
    assert 1.15 <= time.monotonic() - t0 < 3.0
    t0 = time.monotonic()
    poller._sleep(0.3)  # both made: none pending
    assert time.monotonic() - t0 >= 0.29


def test_after_a_rebase_a_change_of_the_service_is_seen_within_a_few_observations():
    # Relevel, not a new warm-up: the spread is kept, the level is the median of the
    # next RELEVEL_OBSERVATIONS; a step right after still fires at once.
    from otel_adaprof.instrumentation.observe.change_signals import RELEVEL_OBSERVATIONS

    c = Cusum()
    assert _first_fire(c, _noise(11, 40, 10.0, 1.0), threshold=8.0) is None
    c.relevel()
    assert _first_fire(c, _noise(12, RELEVEL_OBSERVATIONS, 13.0, 1.0), threshold=8.0) is None
    assert _first_fire(c, _noise(13, 30, 13.0, 1.0), threshold=8.0) is None  # new level
    assert _first_fire(c, [20.0] * 3, threshold=8.0) is not None


@pytest.mark.parametrize(("mode", "bursts"), [("cpu", False), ("wall", True)])
def test_a_latency_change_alone_bursts_only_in_wall_mode(mode, bursts):
    # CPU samples cannot explain time spent waiting: in cpu mode latency alone is news
    # for the report, not a reason to burst.
    live = LiveParams(Params.parse({"burst_sensitivity": 8, "profile_mode": mode}))
    r = BurstReflex(live)
    assert r.react(["latency"], 0.0) is bursts
    assert r.react(["latency", "cpu_per_request"], 0.25) or bursts


class _Feed:
    """One detector fed tick after tick (0.25 s apart, 15 requests a tick)."""

    def __init__(self, detector: ChangeDetector) -> None:
        self.d, self.cpu, self.reqs, self.i = detector, 0.0, 0, 0

    def ticks(self, n: int, ms_per_request: float, seed: int) -> list[list[str]]:
        rng, out = random.Random(seed), []
        for _ in range(n):
            self.i += 1
            self.cpu += 15 * ms_per_request / 1000 * rng.uniform(0.9, 1.1)
            self.reqs += 15
            inputs = Inputs(now=self.i * 0.25, cpu_seconds=self.cpu, requests=self.reqs,
                            spans=3 * self.reqs)  # fmt: skip
            out.append(self.d.observe(inputs, threshold=8.0))
        return out


def test_a_change_while_profiling_at_another_level_is_seen_back_at_the_first():
    # The benchmark's hot path came on as the controller chose a window at 100 Hz: that
    # level's baseline was learnt under the hot path, and on return to watch the watch
    # baseline was learnt again too, so nothing ever fired. Each level keeps its own.
    d = ChangeDetector()
    d.level = 0
    feed = _Feed(d)
    assert not any(feed.ticks(40, 5.0, seed=1))  # watch: 5 ms per request
    d.rebase(10)  # 100 Hz, and the service changes at the same moment: 8 ms (+ profiling)
    assert not any(feed.ticks(12, 8.0 * 1.3, seed=2))  # a level not seen: learnt, no alarm
    d.rebase(0)  # watch again: compared with what watch saw before, 5 ms
    fired = feed.ticks(3, 8.0, seed=3)
    assert any("cpu_per_request" in f for f in fired)
    # Without levels (the old rebase: learn again at every switch) the change is lost.
    old = ChangeDetector()
    feed = _Feed(old)
    feed.ticks(40, 5.0, seed=1)
    old.rebase()
    feed.ticks(12, 8.0 * 1.3, seed=2)
    old.rebase()
    assert not any(feed.ticks(30, 8.0, seed=3))


def test_evidence_gathered_at_one_level_fires_at_a_level_seen_before_the_change():
    # At 100 Hz first (6.5 ms), then watch (5 ms); the hot path starts in watch and the
    # CUSUM has only begun to rise when the controller asks for 100 Hz again: the 100 Hz
    # baseline from before the change sees it at once.
    d = ChangeDetector()
    d.level = 10
    feed = _Feed(d)
    assert not any(feed.ticks(40, 6.5, seed=4))
    d.rebase(0)
    assert not any(feed.ticks(30, 5.0, seed=5))
    assert not any(feed.ticks(1, 5.6, seed=6))  # +12 %: under the threshold yet
    assert d.cpu.statistic > 0
    d.rebase(10)
    fired = feed.ticks(2, 5.6 * 1.3 * 1.3, seed=7)  # the hot path under 100 Hz
    assert any("cpu_per_request" in f for f in fired)


def _change_building_at_the_burst_level(carry: bool) -> tuple[float, list[list[str]]]:
    """A +12 % change that starts during a burst at 100 Hz and has not fired when the
    burst ends: (the CPU statistic as the burst ends, what fired on each watch tick)."""
    d = ChangeDetector(carry_evidence=carry)
    d.level = 0
    feed = _Feed(d)
    assert not any(feed.ticks(40, 5.0, seed=21))  # watch
    d.rebase(10)
    assert not any(feed.ticks(30, 6.5, seed=22))  # 100 Hz: its own baseline
    d.rebase(0)
    assert not any(feed.ticks(20, 5.0, seed=23))
    d.rebase(10)  # a burst, and the service's CPU per request rises 12 %
    assert not any(feed.ticks(4, 6.5 * 1.12, seed=24))
    building = d.cpu.statistic
    d.rebase(0)  # the burst ends: the watch's baseline is from before the change
    return building, feed.ticks(12, 5.0 * 1.12, seed=25)


def test_evidence_building_at_one_level_goes_with_the_agent_to_the_next():
    # Session 30's seed 3: the CPU statistic stood at 8.0 of 8 in a 50 Hz window as the
    # hot path came on, the next params went back to the watch, and the watch's
    # baseline, with no evidence of its own yet, fired 6 s later.
    building, fired = _change_building_at_the_burst_level(carry=True)
    assert 5.0 < building < 8.0
    assert "cpu_per_request" in fired[0] + fired[1]
    # each level with only its own evidence: the watch starts from nothing
    _, per_level = _change_building_at_the_burst_level(carry=False)
    first = next(i for i, f in enumerate(per_level) if f)
    assert first >= 4


def test_carried_evidence_shortens_the_delay_of_a_change_begun_in_a_burst_and_stays_quiet():
    # bench/change_across_levels.py: the benchmark service's load, request by request;
    # CPU per request +15 % starting in a burst that ends 1-8 s later (40 seeds).
    per_level = sorted(ACROSS.change_in_a_burst(s, False, 1.15)[0] for s in range(40))
    carried = sorted(ACROSS.change_in_a_burst(s, True, 1.15)[0] for s in range(40))
    assert carried[20] <= per_level[20] - 1.5  # the median, in seconds (7.9 and 5.5)
    assert carried[36] < per_level[36]  # the p90
    # 40 x 300 s of a steady service, the level switching every 3-12 s: false alarms
    assert sum(ACROSS.steady_switching(s, True) for s in range(40)) <= 2  # (1; per level 0)


def test_switching_levels_back_and_forth_on_a_steady_service_never_fires():
    d = ChangeDetector()
    d.level = 0
    feed = _Feed(d)
    fired = feed.ticks(40, 5.0, seed=8)
    for k in range(20):  # watch ↔ 100 Hz every 3 s, for 2 minutes
        d.rebase(10)
        fired += feed.ticks(12, 5.0 * 1.3, seed=100 + k)
        d.rebase(0)
        fired += feed.ticks(12, 5.0, seed=200 + k)
    assert not any(fired)
    assert d.rebases == 40


def test_after_a_change_the_other_levels_baselines_are_forgotten():
    d = ChangeDetector()
    d.level = 0
    feed = _Feed(d)
    feed.ticks(40, 5.0, seed=9)
    d.rebase(10)
    feed.ticks(30, 6.5, seed=10)
    assert any("cpu_per_request" in f for f in feed.ticks(3, 13.0, seed=11))  # a change
    feed.ticks(30, 13.0, seed=12)  # the new regime's baseline at 100 Hz
    d.rebase(0)  # watch's baseline from before the change is not restored: learnt again
    assert not any(feed.ticks(30, 10.0, seed=13))


def test_the_hot_path_ending_fires_despite_the_spread_of_cpu_per_request():
    # With the hot path on, one request in five costs three times the others: CPU per
    # request observed over too few requests is so spread that the hot path's end (40 %
    # less per request) drifted the CUSUM to -5 of 8 and back (a benchmark phase went
    # without samples). Twelve requests an observation see it within 30 s at 10 req/s
    # (at the watch action's threshold, 8 std; with 4 it never fired).
    for seed in range(5):
        rng = random.Random(seed)
        ticks = REFIRE.mixed_load(rng, 60, hot=True) + REFIRE.mixed_load(rng, 30, hot=False)
        d = ChangeDetector()
        cpu, reqs, fired = 0.0, 0, []
        for i, (c, r) in enumerate(ticks):
            cpu, reqs = cpu + c, reqs + r
            inputs = Inputs(now=i * 0.25, cpu_seconds=cpu, requests=reqs, spans=reqs)
            fired.append(d.observe(inputs, threshold=8.0))
        assert not any(fired[:240]), seed  # the hot regime's spread is no change
        assert any("cpu_per_request" in f for f in fired[240:]), seed


def test_a_change_twelve_seconds_after_another_is_seen_and_the_new_regime_stays_quiet():
    # bench/change_detector_refire.py's scenarios on the benchmark service's load (10
    # requests/s, watch sensitivity): a 25 % rise, then the hot path 12 s later; and the
    # hot path alone, whose threefold spread must not fire again once it has fired.
    # (Before, when a firing restarted the baseline: seen in 3 runs of 200, after 28 s.)
    delays = [REFIRE.second_change(seed, restart=False) for seed in range(10)]
    seen = sorted(d for d in delays if d is not None)
    assert len(seen) >= 9 and seen[len(seen) // 2] <= 10.0, delays
    assert sum(REFIRE.after_a_change(seed, restart=False) for seed in range(20)) <= 1
    assert sum(REFIRE.no_change(seed, restart=False) for seed in range(5)) == 0


def test_the_hot_path_ending_after_a_firing_and_two_bursts_is_seen_in_most_runs():
    # The hot path's regime is wide (its end is about 1.5 of its std); after a firing
    # the agent bursts at another level twice before it ends. A restarted baseline saw
    # the end in no run of 200, the provisional one widening its old spread 2.5 times
    # in 13; at least three times the floor, its level at half pace: 139 of 200
    # (bench/change_detector_refire.py).
    delays = [REFIRE.end_after_a_change(seed, restart=False) for seed in range(10)]
    assert sum(d is not None for d in delays) >= 5, delays
    assert all(d is None or d <= 30.0 for d in delays), delays


def test_a_change_while_the_reflex_rests_bursts_when_the_rest_ends():
    # The hot path's end came 2 s into a 15 s rest in a benchmark run (4x phases): the
    # change was dropped and its phase got 75 samples. Now it waits for the rest's end.
    live = LiveParams(Params.parse({"sampling_interval_ms": 0, "burst_sensitivity": 8,
                                    "burst_interval_ms": 10, "burst_seconds": 2}))  # fmt: skip
    r = BurstReflex(live)
    assert r.react(["span_rate"], 1.0)
    r.react([], 3.0)  # the burst ends; rests until 5.0
    assert not r.react(["cpu_per_request"], 3.5) and r.resting
    assert not r.react([], 4.75) and live.params.sampling_interval_ms == 0
    assert r.react([], 5.0) and live.params.sampling_interval_ms == 10 and r.bursts == 2
    r.react([], 7.0)  # this burst ends too; nothing more was deferred
    assert not r.react([], 9.0) and r.bursts == 2
    # Turned off while a change waits: no burst when the rest ends.
    assert not r.react(["span_rate"], 8.0)
    live.apply(Params.parse({"sampling_interval_ms": 0}), 2, None)
    assert not r.react([], 9.5) and r.bursts == 2


def test_levels_alternating_faster_than_a_warm_up_still_settle_and_see_a_change():
    # A policy alternating the watch and 50 Hz bursts every 9-12 s: about eight
    # observations a visit, half a warm-up. Each level's warm-up resumes where it left
    # off, so both settle and a change of the service is seen.
    d = ChangeDetector()
    d.level = 0
    feed = _Feed(d)
    fired = []
    for k in range(6):
        fired += feed.ticks(8, 5.0, seed=300 + k)
        d.rebase(20)
        fired += feed.ticks(8, 5.0 * 1.3, seed=400 + k)
        d.rebase(0)
    assert not any(fired)
    assert d.cpu.settled
    assert any("cpu_per_request" in f for f in feed.ticks(8, 8.0, seed=500))


# The glimpse: the reflex's first stage --------------------------------------------------

#: bench/glimpse_threshold.py: the fast loop on the benchmark services' request cycle.
GLIMPSE = load("glimpse_threshold")
WATCH_GLIMPSE = Params.parse({"sampling_interval_ms": 0, "burst_sensitivity": 8,
                              "burst_interval_ms": 10, "burst_seconds": 15,
                              "glimpse_sensitivity": 3})  # fmt: skip


def test_a_rise_starts_one_glimpse_of_one_py_spy_run_and_one_per_rise():
    live = LiveParams(WATCH_GLIMPSE)
    r = BurstReflex(live)
    assert not r.react([], 0.0, rise=2.9)
    assert r.react([], 0.25, rise=3.1)  # the glimpse: 100 Hz, reported as such
    assert live.params.sampling_interval_ms == 10 and live.override_reason == "glimpse"
    assert not r.react([], 1.0, rise=5.0)
    r.react([], 2.25, rise=5.0)  # its 2 s are over: the watch again, resting as long
    assert live.override is None and r.resting
    assert (r.glimpses, r.glimpse_seconds, r.burst_seconds) == (1, 2.0, 2.0)
    # the same rise, well after the rest: no second glimpse
    assert not any(r.react([], 5.0 + k, rise=4.0 + k / 10) for k in range(10))
    # it falls below half the sensitivity and rises again: a glimpse, once 30 s have
    # passed since the last (GLIMPSE_SPACING_S)
    assert not r.react([], 20.0, rise=1.4)
    assert not r.react([], 20.25, rise=3.0)
    assert r.react([], 30.25, rise=3.0) and r.glimpses == 2


def test_a_change_that_fires_during_a_glimpse_makes_it_the_burst():
    live = LiveParams(WATCH_GLIMPSE)
    r = BurstReflex(live)
    assert r.react([], 0.0, rise=3.5)
    assert r.react(["cpu_per_request"], 1.0, rise=0.0)  # fired (the CUSUM restarts)
    assert live.override_reason == "burst" and r.in_burst
    r.react([], 14.75)
    assert r.in_burst  # 15 s from the glimpse's start
    r.react([], 15.0)
    assert not r.in_burst and live.override is None
    assert (r.bursts, r.glimpses, r.glimpse_seconds, r.burst_seconds) == (1, 1, 1.0, 15.0)


def test_no_glimpse_when_it_is_off_or_the_params_already_sample_as_fast():
    for params in (WATCH_GLIMPSE.with_changes(glimpse_sensitivity=0),
                   WATCH_GLIMPSE.with_changes(sampling_interval_ms=10)):  # fmt: skip
        r = BurstReflex(LiveParams(params))
        assert not any(r.react([], k * 0.25, rise=10.0) for k in range(40))
        assert r.glimpses == 0 and r.glimpse_seconds == 0.0
    # new params turning the glimpse off end a running one at the next tick
    live = LiveParams(WATCH_GLIMPSE)
    r = BurstReflex(live)
    assert r.react([], 0.0, rise=3.5)
    live.apply(WATCH_GLIMPSE.with_changes(glimpse_sensitivity=0), 2, None)
    r.react([], 0.5, rise=3.5)
    assert not r.in_burst and live.override is None and r.glimpse_seconds == 0.5


def test_the_ledgers_subtle_hot_path_is_glimpsed_long_before_a_burst_and_steady_load_is_not():
    """The benchmark ledger's hot path (+18 % CPU a request, on one request in ten) with
    the watch's params, on its request cycle (bench/glimpse_threshold.py): the rise
    reaches 3 std within 15 s in most runs, and before 8 std whenever that comes; 10
    minutes of the steady cycle start no glimpse."""
    ledger = GLIMPSE.SHAPES["ledger"]
    glimpse, burst = [], []
    for seed in range(6):
        got = GLIMPSE.run(ledger, 3.0, 5000 + seed, 60.0, 90.0)
        glimpse.append(next((t - 60.0 for t in got["glimpses"] if t >= 60.0), None))
        burst.append(next((t - 60.0 for t in got["bursts"] if t >= 60.0), None))
    assert sum(1 for g in glimpse if g is not None and g <= 15.0) >= 4, glimpse
    pairs = [(g, b) for g, b in zip(glimpse, burst, strict=True) if b is not None]
    assert all(g is not None and g < b for g, b in pairs), (glimpse, burst)
    steady = GLIMPSE.run(ledger, 3.0, 1000, None, 640.0)
    assert [t for t in steady["glimpses"] if t >= 40.0] == []
