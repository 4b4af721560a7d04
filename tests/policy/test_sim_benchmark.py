"""The simulated benchmark, judged by user measures like the real one: on the scenarios
that mirror ``adaprof bench`` (1x and 4x phases), the packaged default model meets issue
#11's bounds against static-100 (per-phase L1 ≤ 1.5x, detection ≤ 1.5x, CPU ≤ 0.5x, and
≤ 0.2x with 4x phases), and stays calm (fixed seeds; the full run is
``adaprof sim --seeds 3``)."""

from __future__ import annotations

import pytest

from otel_adaprof.sim.compare import compare
from otel_adaprof.sim.scenario import SCENARIOS


@pytest.fixture(scope="module")
def report(pretrained_model):
    return compare([SCENARIOS["demo"], SCENARIOS["demo-4x"]], seeds=[1, 2], model=pretrained_model)


@pytest.mark.parametrize("name", ["demo", "demo-4x"])
def test_adaptive_meets_the_bounds_against_static_100(report, name):
    scen = next(s for s in report.scenarios if s.name == name)
    assert scen.checks() == {"l1": True, "detection": True, "cpu": True}, scen.to_json()
    adaptive, heuristic = scen.get("adaptive"), scen.get("heuristic")
    assert adaptive.changes < heuristic.changes or adaptive.changes <= 8


def test_longer_phases_cost_less_relative_to_static_100(report):
    ratio = {s.name: s.get("adaptive").cpu / s.get("static-100").cpu for s in report.scenarios}
    assert ratio["demo-4x"] <= 0.2 and ratio["demo-4x"] < ratio["demo"]


def test_every_configuration_reports_per_phase_measures(report):
    for scen in report.scenarios:
        names = [p.name for p in scen.policies]
        assert names[:5] == ["adaptive", "heuristic", "static-100", "static-10", "static-1"]
        for p in scen.policies:
            assert len(p.l1) == len(scen.phases) == len(p.regret)
            assert len(p.detect_s) == len(scen.phases) - 1
            if p.kind == "static":
                assert min(p.regret) >= -1e-9  # the per-phase best fixed action is best
