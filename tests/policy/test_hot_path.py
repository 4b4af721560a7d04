"""After a new hot path appears the policy (the packaged default model, through the
controller's poll handling) spends more CPU to learn the new phase than it did in the
steady phase before, and shows the hot path in the samples.

The pretraining never saw this scenario (random scenarios only)."""

from __future__ import annotations

import statistics

from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS
from otel_adaprof.sim.training import SIM_BUDGET, SIM_GOAL

ONSET = SCENARIOS["hot-path"].phases[0].windows  # first window of the hot path phase


def test_a_new_hot_path_is_seen_and_learned(pretrained_model):
    before, after, detect = [], [], []
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
        detect.append(run.detection_s()[0])
        before.append(statistics.fmean(x.samples for x in w[ONSET - 10 : ONSET]))
        after.append(statistics.fmean(x.samples for x in w[ONSET : ONSET + 3]))
    assert all(d is not None for d in detect), detect  # the hot path shows in every run
    assert statistics.fmean(after) > 1.5 * statistics.fmean(before)  # it sampled more
