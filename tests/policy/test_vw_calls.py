"""VWPolicy's direct calls into vowpal_wabbit_next decide and learn exactly as its
public API does (same probabilities, same features, same model bytes)."""

from __future__ import annotations

import random

import pytest

from otel_adaprof.controller.policy import vw as vw_module
from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.session_spec import Mode


def _run(public: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[object, ...]], bytes]:
    monkeypatch.setattr(vw_module, "FORCE_PUBLIC_API", public)
    policy = VWPolicy(seed=3)
    assert policy._vw.direct is (not public)
    rng = random.Random(11)
    in_force = Params()
    log = []
    for i in range(120):
        state = ObservedState(
            window_start=1000.0 + 5 * i,
            window_seconds=5.0,
            process_cpu=rng.uniform(0.05, 1.5),
            profiler_cpu_seconds=rng.uniform(0.0, 0.1),
            samples_per_s=rng.uniform(0.0, 100.0),
            spans_per_s=rng.uniform(0.0, 300.0),
            markers_per_s=rng.uniform(0.0, 20.0),
            bytes_exported_per_s=rng.uniform(0.0, 30000.0),
        )
        ctx = DecisionContext(
            service="s",
            initial_params=Params(),
            params_in_force=in_force,
            mode=Mode.ADAPTIVE,
            state=state,
        )
        d = policy.decide(ctx)
        log.append((d.action, d.probability, dict(d.features)))
        policy.learn(ctx, d, reward=rng.uniform(-2.0, 3.0))
        in_force = d.params
    return log, policy.snapshot()


def test_direct_calls_decide_and_learn_as_the_public_api(monkeypatch: pytest.MonkeyPatch):
    direct = _run(False, monkeypatch)
    public = _run(True, monkeypatch)
    assert len({a for a, _, _ in direct[0]}) > 1  # the run explores: a real comparison
    assert direct[0] == public[0]
    assert direct[1] == public[1]
