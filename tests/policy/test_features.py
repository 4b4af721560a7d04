"""State features: drift per sample, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.features import drift, state_features, total_variation
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState, StackCount, StackHistogram
from otel_adaprof.session_spec import Mode

SHARES = {"a (a.py:1)": 0.5, "b (b.py:1)": 0.3, "c (c.py:1)": 0.2}


def _sample(n: int, shares: dict[str, float], seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    keys = list(shares)
    counts = rng.multinomial(n, [shares[k] for k in keys])
    return {k: float(c) for k, c in zip(keys, counts, strict=True) if c}


def test_drift_does_not_grow_with_the_rate():
    profile = {k: v * 1000 for k, v in SHARES.items()}
    shifted = {"a (a.py:1)": 0.2, "b (b.py:1)": 0.3, "c (c.py:1)": 0.2, "hot (h.py:1)": 0.3}
    low = np.mean([drift(profile, _sample(200, shifted, s))[0] for s in range(20)])
    high = np.mean([drift(profile, _sample(2000, shifted, s))[0] for s in range(20)])
    assert low == pytest.approx(0.3, abs=0.05)
    assert high == pytest.approx(0.3, abs=0.03)
    same = np.mean([drift(profile, _sample(2000, SHARES, s))[0] for s in range(20)])
    assert same < 0.05


def test_total_variation_by_hand():
    assert total_variation({"a": 1}, {"a": 5}) == 0.0
    assert total_variation({"a": 1}, {"b": 1}) == 1.0


def test_state_features_are_normalised():
    state = ObservedState(
        window_start=0.0,
        window_seconds=5.0,
        process_cpu=0.8,
        node_cpu=0.5,
        process_memory_bytes=300_000_000,
        node_memory=0.6,
        poll_rtt_ms=2.0,
        spans_per_s=500.0,
        markers_per_s=40.0,
        samples_per_s=90.0,
        bytes_exported_per_s=150_000.0,
        profiler_cpu_seconds=0.5,
    )
    stacks = StackHistogram(
        stacks=[StackCount(stack="m (a.py:1);hot (h.py:2)", count=450)], total_samples=450, depth=64
    )
    ctx = DecisionContext(
        service="s",
        initial_params=Params(),
        params_in_force=Params(sampling_interval_ms=10),
        mode=Mode.ADAPTIVE,
        state=state,
        stacks=stacks,
        profile={"a (a.py:1)": 100.0},
    )
    feats = state_features(ctx)
    assert all(0.0 <= v <= 1.0 for v in feats.values()), feats
    assert feats["drift"] == 1.0 and feats["novel"] == 1.0
    assert feats["over_budget"] == 1.0  # 0.1 of a core against a 0.02 budget
    assert feats["overhead"] == pytest.approx(1.0)  # clipped at 5x budget
