"""Shared fixtures of the policy tests: one pretrained model for the whole session."""

from __future__ import annotations

import pytest

from otel_adaprof.controller.policy.vw import default_model
from otel_adaprof.sim.training import pretrain


@pytest.fixture(scope="session")
def pretrained_model() -> bytes:
    """The packaged default model (what new services start from); a fresh pretraining
    only if the package has none."""
    return default_model() or pretrain().snapshot()
