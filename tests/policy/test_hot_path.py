"""Burst, then settle: after a new hot path appears the policy (the packaged default
model, through the controller's poll handling) shows it within a window or two, spends
more CPU to learn the new phase, then comes back down and stays calm.

The pretraining never saw this scenario (random scenarios only)."""

from __future__ import annotations

import statistics

from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS
from otel_adaprof.sim.training import SIM_BUDGET, SIM_GOAL

ONSET = SCENARIOS["hot-path"].phases[0].windows  # first window of the hot path phase


def test_a_new_hot_path_brings_a_burst_then_a_settle(pretrained_model):
    before, after, settled, steady_changes = [], [], [], []
    for seed in (1, 2, 3):
        run = run_policy(
            VWPolicy(seed=seed, model=pretrained_model),
            SCENARIOS["hot-path"],
            seed=seed,
            goal=SIM_GOAL,
            budget=SIM_BUDGET,
        )
        w = run.windows
        assert w[ONSET].phase == 1 and w[ONSET - 1].phase == 0
        # the hot path holds half its share of the phase's samples within two windows
        detect = run.detection_s()[0]
        assert detect is not None and detect <= 10.0, (seed, detect)
        before.append(statistics.fmean(x.cpu_fraction for x in w[ONSET - 10 : ONSET]))
        after.append(statistics.fmean(x.cpu_fraction for x in w[ONSET : ONSET + 3]))
        settled.append(statistics.fmean(x.cpu_fraction for x in w[ONSET + 10 : ONSET + 25]))
        steady_changes.append(sum(1 for x in w[15:ONSET] if x.params_changed))
    assert statistics.fmean(after) > 1.5 * statistics.fmean(before)  # it spent to learn
    assert statistics.fmean(settled) < 0.6 * statistics.fmean(after)  # then came down
    assert max(steady_changes) <= 2, steady_changes  # and a steady phase stays calm
