"""The usage examples in the contract modules' docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "otel_adaprof.errors",
    "otel_adaprof.params",
    "otel_adaprof.protocol",
    "otel_adaprof.session_spec",
    "otel_adaprof.reward",
    "otel_adaprof.controller.config",
    "otel_adaprof.controller.policy.base",
    "otel_adaprof.controller.policy.static",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no usage example"
    assert result.failed == 0
