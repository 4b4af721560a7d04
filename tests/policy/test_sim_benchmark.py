"""The simulated benchmark, judged by user measures like the real one, on the scenarios
that mirror ``adaprof bench`` (1x and 4x phases), with the packaged default model
(fixed seeds; the full run is ``adaprof sim --seeds 3``).

The simulator's verdict is not the project's (that is the real benchmark's,
docs/benchmarks.md); these tests pin that the shipped model meets the bounds in it."""

from __future__ import annotations

import pytest

from otel_adaprof.sim.compare import compare
from otel_adaprof.sim.scenario import SCENARIOS


@pytest.fixture(scope="module")
def report(pretrained_model):
    return compare(
        [SCENARIOS["demo"], SCENARIOS["demo-4x"], SCENARIOS["hot-path"]],
        seeds=[1, 2],
        model=pretrained_model,
    )


def _scen(report, name):
    return next(s for s in report.scenarios if s.name == name)


@pytest.mark.xfail(
    strict=True,
    reason="session 29's calibration (the cost fit at the service's busy share, the demo's "
    "measured CPU, agent threads and change detector, py-spy's segments): adaptive at "
    "0.28x static-100's CPU and the hot path found as fast, but its phases' L1 "
    "0.080-0.105 against 0.041-0.047",
)
def test_a_new_hot_path_scenario_meets_every_bound(report):
    assert _scen(report, "hot-path").checks() == {"l1": True, "detection": True, "cpu": True}


@pytest.mark.parametrize(
    "name",
    [
        # session 37: a burst at 100 Hz starts with two windows of room (three before),
        # and the simulated demo's adaptive finds the hot path after 4.5 s (6.0 before)
        # against static-100's 3.0
        "demo",
        pytest.param(
            "demo-4x",
            marks=pytest.mark.xfail(
                strict=True,
                reason="session 29's calibration: adaptive finds the hot path after 6 s "
                "(the change detector's measured 1.6 s, then a burst's first 2 s py-spy "
                "segment, in 3 s windows) where static-100 does after 3 s (2.0x)",
            ),
        ),
    ],
)
def test_the_hot_path_is_detected_as_fast_as_with_static_100(report, name):
    assert _scen(report, name).checks()["detection"]


def test_longer_phases_cost_less_relative_to_static_100(report):
    # session 29: 0.33x at 4x against 0.39x at 1x in the simulator; the real
    # benchmark's runs: 0.289x at 4x against 0.36-0.37x (docs/benchmarks.md)
    ratio = {s.name: s.get("adaptive").cpu / s.get("static-100").cpu for s in report.scenarios}
    assert ratio["demo-4x"] < ratio["demo"]
    assert ratio["demo-4x"] <= 0.5


@pytest.mark.xfail(
    strict=True,
    reason="session 29's calibration: in the hot-path scenario adaptive changes params "
    "6.5 times (the seeds' mean) where the heuristic changes once (demo: 8 against 24.5; "
    "4x phases: 19.5 against 98); the real benchmark's runs saw 10-18 in 240 s",
)
def test_adaptive_is_at_most_as_restless_as_the_heuristic(report):
    for scen in report.scenarios:
        assert scen.get("adaptive").changes <= 2 * max(3.0, scen.get("heuristic").changes)


def test_cpu_bound_with_1x_phases(report):
    assert _scen(report, "demo").checks()["cpu"]


def test_the_cpu_bound_is_the_real_benchmarks_at_each_phase_scale(report):
    # adaprof bench judges 4x phases at 0.2x static-100's CPU; until session 53 the
    # simulator judged them at 0.5x
    assert _scen(report, "demo").cpu_max == 0.5 and _scen(report, "demo-4x").cpu_max == 0.2
    four = _scen(report, "demo-4x")
    ratio = four.get("adaptive").cpu / four.get("static-100").cpu
    assert four.checks()["cpu"] == (ratio <= 0.2)


@pytest.mark.xfail(
    strict=True,
    reason="at 0.2x, as adaprof bench judges 4x phases: in py-spy's world adaptive reads "
    "about 0.33x static-100's CPU; the real 4x runs read 0.29-0.39x (docs/benchmarks.md)",
)
def test_cpu_bound_with_4x_phases(report):
    assert _scen(report, "demo-4x").checks()["cpu"]


@pytest.mark.xfail(
    strict=True,
    reason="session 29's calibration, in the benchmark's 3 s windows: hot_path_gone 0.109 "
    "against static-100's 0.039 (2.8x); the real 4x run missed the bound too (4.59x in "
    "hot_path, docs/benchmarks.md)",
)
def test_l1_bound_with_4x_phases(report):
    assert _scen(report, "demo-4x").checks()["l1"]


def test_every_configuration_reports_per_phase_measures(report):
    for scen in report.scenarios:
        names = [p.name for p in scen.policies]
        assert names[:5] == ["adaptive", "heuristic", "static-100", "static-10", "static-1"]
        for p in scen.policies:
            assert len(p.l1) == len(scen.phases) == len(p.regret)
            assert len(p.detect_s) == len(scen.phases) - 1
            if p.kind == "static":
                assert min(p.regret) >= -1e-9  # the per-phase best fixed action is best
