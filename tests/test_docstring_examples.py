"""Every usage example in every module's docstrings runs as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import otel_adaprof

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(otel_adaprof.__path__, "otel_adaprof.")
    if not info.name.endswith("__main__")  # importing it would run the CLI
)

#: The public API: these must show their usage.
MUST_HAVE_EXAMPLES = {
    "otel_adaprof.errors",
    "otel_adaprof.params",
    "otel_adaprof.protocol",
    "otel_adaprof.session_spec",
    "otel_adaprof.reward",
    "otel_adaprof.controller.config",
    "otel_adaprof.controller.store",
    "otel_adaprof.controller.polling",
    "otel_adaprof.controller.sampling",
    "otel_adaprof.controller.policy.base",
    "otel_adaprof.controller.policy.static",
    "otel_adaprof.controller.policy.vw",
    "otel_adaprof.controller.policy.catalog",
    "otel_adaprof.controller.policy.safety",
    "otel_adaprof.exporters.collapsed",
    "otel_adaprof.exporters.speedscope",
    "otel_adaprof.exporters.pprof",
    "otel_adaprof.demo.workload",
    "otel_adaprof.demo.phases",
    "otel_adaprof.demo.ground_truth",
    "otel_adaprof.demo.loadgen",
    "otel_adaprof.demo.timeline",
    "otel_adaprof.demo.svg",
    "otel_adaprof.demo.report",
    "otel_adaprof.demo.processes",
    "otel_adaprof.demo.bench_figures",
    "otel_adaprof.demo.run",
}


def test_the_public_api_is_walked():
    assert set(MODULES) >= MUST_HAVE_EXAMPLES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in MUST_HAVE_EXAMPLES:
        assert result.attempted > 0, f"{name} has no usage example"
