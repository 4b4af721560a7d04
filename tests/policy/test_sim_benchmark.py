"""The short benchmark: adaptive ahead of every static action and the heuristic on
cumulative reward in every scenario, with no more budget violations than the heuristic
(fixed seeds; the full run is ``adaprof sim --seeds 5``)."""

from __future__ import annotations

import pytest

from otel_adaprof.sim.compare import compare
from otel_adaprof.sim.scenario import SCENARIOS


@pytest.fixture(scope="module")
def report(pretrained_model):
    return compare(list(SCENARIOS.values()), seeds=[1, 2], model=pretrained_model)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_adaptive_is_ahead_of_every_static_action_and_the_heuristic(report, name):
    scen = next(s for s in report.scenarios if s.name == name)
    adaptive = scen.get("adaptive")
    others = [p for p in scen.policies if p.name != "adaptive"]
    assert len(others) == 1 + 30  # the heuristic and every catalog action
    behind = [(p.name, round(p.reward, 1)) for p in others if p.reward >= adaptive.reward]
    assert not behind, f"adaptive {adaptive.reward:.1f} not ahead of {behind}"
    assert adaptive.violations <= scen.get("heuristic").violations


def test_regret_is_reported_per_phase(report):
    for scen in report.scenarios:
        for p in scen.policies:
            assert len(p.regret) == len(scen.phases)
        # the best fixed action per phase is at least as good as any single static run
        for p in scen.policies:
            if p.kind == "static":
                assert min(p.regret) >= -1e-9
    assert report.ok
