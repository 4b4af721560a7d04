"""Shared fixtures of the policy tests: one pretrained model for the whole session."""

from __future__ import annotations

import pytest

from otel_adaprof.sim.training import pretrain


@pytest.fixture(scope="session")
def pretrained_model() -> bytes:
    """The default pretraining (200 random scenarios, ~25 s), done once."""
    return pretrain().snapshot()
