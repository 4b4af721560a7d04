"""The simulated agent charges what the real one spends: a fast reflex burst sets the
slow-span capture aside (``reflex.burst_params``), so a window spent in such a burst
costs the same with or without the capture in the params; a window at the watch
costs the capture's share more."""

from __future__ import annotations

import numpy as np

from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.sim.agent import SimulatedAgent
from otel_adaprof.sim.scenario import demo_scenario


def _cpu_by_window(capture_ms: int) -> list[tuple[float, float]]:
    """(profiler CPU s, burst s) of four windows of the catalog's watch (capture every
    ``capture_ms``): one steady, then a change that bursts for 15 s."""
    watch = next(a for a in load_catalog() if a.name == "watch-reflex").params
    params = watch.with_changes(slow_span_interval_ms=capture_ms)
    scenario = demo_scenario()
    agent = SimulatedAgent(scenario.name, np.random.default_rng(7), window_s=3.0)
    out = []
    for k, phase in enumerate([scenario.phases[0]] + [scenario.phases[1]] * 3):
        state = agent.report(params, 1, phase, 1000.0 + 3.0 * k).window
        assert state is not None
        out.append((state.profiler_cpu_seconds, state.burst_seconds))
    return out


def test_a_window_in_a_fast_burst_costs_no_capture():
    with_capture, without = _cpu_by_window(50), _cpu_by_window(0)
    # the same draws: the windows differ only by the capture's cost
    assert [b for _c, b in with_capture] == [b for _c, b in without]
    steady, _start, full, _ = range(4)
    assert with_capture[full][1] == 3.0  # a whole window of burst
    assert with_capture[steady][0] > without[steady][0] * 1.01  # the watch pays for it
    assert abs(with_capture[full][0] - without[full][0]) < 1e-12  # the burst does not


def test_a_retreat_cuts_the_simulated_burst_as_it_cuts_the_agents():
    """As ``BurstReflex``: the guard's retreat (``fallback-capture``, a 3 s glimpse)
    after a window of the watch's 15 s burst ends the burst 3 s after it started: the
    retreat's later windows hold no burst time, where the watch's keep bursting."""
    catalog = load_catalog()
    watch = next(a for a in catalog if a.name == "watch-reflex").params
    retreat = next(a for a in catalog if a.name == "fallback-capture").params
    assert retreat.burst_seconds < watch.burst_seconds
    scenario = demo_scenario()
    steady, changed = scenario.phases[0], scenario.phases[1]
    bursts = {}
    for later in (watch, retreat):
        agent = SimulatedAgent(scenario.name, np.random.default_rng(7), window_s=3.0)
        windows = [(watch, steady), (watch, changed), (later, changed), (later, changed)]
        states = [agent.report(p, 1, ph, 1000.0 + 3.0 * k).window for k, (p, ph) in
                  enumerate(windows)]  # fmt: skip
        bursts[later.burst_seconds] = [s.burst_seconds for s in states if s is not None]
    kept, cut = bursts[watch.burst_seconds], bursts[retreat.burst_seconds]
    assert kept[1] > 0 and kept[2] == 3.0 and kept[3] == 3.0  # 15 s: it runs on
    assert cut[:2] == kept[:2]  # the same draws until the retreat
    assert abs(cut[1] + cut[2] - retreat.burst_seconds) < 1e-9 and cut[3] == 0.0
