"""The usage examples in the policy, simulator and reward modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "otel_adaprof.reward",
    *(
        f"otel_adaprof.controller.policy.{m}"
        for m in (
            "catalog",
            "cost",
            "features",
            "heuristic",
            "safety",
            "vw",
            "offline",
            "decision_log",
        )
    ),
    "otel_adaprof.sim",
    *(f"otel_adaprof.sim.{m}" for m in ("scenario", "physics", "agent", "runner", "training")),
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no usage example"
    assert result.failed == 0
