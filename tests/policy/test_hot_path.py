"""After a new hot path appears, the policy collects more information within a few
windows, and its cost falls again once the profile has converged.

The onset shows in the process CPU (the new work costs CPU) even while the profiler
is off; the policy has to learn, in pretraining, that such a change makes profiling
pay (random scenarios, never this one)."""

from __future__ import annotations

import statistics

from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS
from otel_adaprof.sim.training import SIM_GOAL

ONSET = SCENARIOS["hot-path"].phases[0].windows  # first window of the hot path phase


def _mean(values):
    return statistics.fmean(values)


def test_information_rises_after_a_new_hot_path_and_cost_falls_after(pretrained_model):
    before_info, after_info, before_cpu, after_cpu, settled_cpu = [], [], [], [], []
    for seed in (1, 2, 3, 4, 5, 6):
        run = run_policy(
            VWPolicy(seed=seed, model=pretrained_model),
            SCENARIOS["hot-path"],
            seed=seed,
            goal=SIM_GOAL,
        )
        w = run.windows
        assert w[ONSET].phase == 1 and w[ONSET - 1].phase == 0
        before_info.append(_mean(x.information for x in w[ONSET - 15 : ONSET]))
        before_cpu.append(_mean(x.cpu_fraction for x in w[ONSET - 15 : ONSET]))
        after_info.append(_mean(x.information for x in w[ONSET : ONSET + 8]))
        after_cpu.append(_mean(x.cpu_fraction for x in w[ONSET : ONSET + 8]))
        settled_cpu.append(_mean(x.cpu_fraction for x in w[ONSET + 10 : ONSET + 30]))
    # within a few windows of the onset it collects clearly more information ...
    assert _mean(after_info) > 3 * _mean(before_info) + 0.05
    # ... and once the profile has taken in the hot path, it spends less again
    assert _mean(after_cpu) > 1.5 * _mean(before_cpu)  # it did spend more to learn it
    assert _mean(settled_cpu) < 0.6 * _mean(after_cpu)
