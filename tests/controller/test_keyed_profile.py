"""The poll handler keeps each service profile folded onto reward keys as it grows, so
a decision does not fold thousands of stacks again: it must equal reward.keyed of the
profile, values and key order (the drift feature sums over it)."""

from __future__ import annotations

import random

import pytest

from otel_adaprof.controller import poll_handling
from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy_registry import PolicyRegistry
from otel_adaprof.controller.sessions import Sessions
from otel_adaprof.controller.store import Store
from otel_adaprof.reward import keyed


def test_the_kept_keyed_profile_is_keyed_of_the_profile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(poll_handling, "MAX_PROFILE_STACKS", 40)  # truncate often
    config, store = ControllerConfig(), Store(":memory:")
    handler = poll_handling.PollHandler(
        config, store, Sessions(config, store), PolicyRegistry(config, store)
    )
    rng = random.Random(5)
    frames = [f"f{i} (m{i % 4}.py:{i})" for i in range(30)]
    truncated = 0
    for _ in range(300):
        window = {
            ";".join(rng.choice(frames) for _ in range(rng.randint(1, 4))): rng.randint(1, 20)
            for _ in range(rng.randint(1, 6))
        }
        before = len(handler._profiles.get("shop", {}))
        handler._fold("shop", window)
        truncated += len(handler._profiles["shop"]) < before + 1 and before >= 40
        expected = keyed(handler._profiles["shop"])
        assert handler._keyed["shop"] == expected
        assert list(handler._keyed["shop"]) == list(expected)
    assert truncated > 0
