"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controller import ControllerProcess

#: Modules whose tests measure the machine: CPU seconds, sample counts and rates, latency
#: or wake-ups against a bound. They are marked ``timing``; ``make pytest`` runs them one
#: at a time after the rest, which runs on four workers (pytest-xdist; most of it waits
#: on subprocesses and HTTP): a test sharing a 2-core machine with another measures both.
#: (The poll benchmarks' tests check their figures' consistency, not their size; so do
#: those of ``bench/agent_overhead.py``, ``bench/attribution.py`` and ``adaprof bench
#: --quick``: every figure reported, none bounded by the machine's speed. They run on the
#: workers, which keeps the suite under its 10 minutes.)
TIMING_MODULES = frozenset(
    {
        "tests/agent/test_accounting.py",
        "tests/agent/test_beacon_cpu_notes.py",
        "tests/agent/test_burst_reflex.py",
        "tests/agent/test_cost_bench.py",
        "tests/agent/test_end_to_end.py",
        "tests/agent/test_export_paths.py",
        "tests/agent/test_idle_wakeups.py",
        "tests/agent/test_long_segments.py",
        "tests/agent/test_native_set_aside.py",
        "tests/agent/test_new_code.py",
        "tests/agent/test_pyspy_segments.py",
        "tests/agent/test_run_folders.py",
        "tests/agent/test_slow_span_capture.py",
        "tests/agent/test_thread_exits.py",
        "tests/agent/test_thread_per_request.py",
        "tests/agent/test_thread_stacks.py",
        "tests/agent/test_thread_stacks_soak.py",
        "tests/demo/test_demo_e2e.py",
        "tests/demo/test_ground_truth.py",
        "tests/demo/test_loadgen.py",
    }
)
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`TIMING_MODULES` ``timing``."""
    for item in items:
        if item.path.relative_to(ROOT).as_posix() in TIMING_MODULES:
            item.add_marker(pytest.mark.timing)


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A real controller subprocess on 127.0.0.1 with a fresh SQLite database."""
    with ControllerProcess(tmp_path / "adaprof.db") as ctl:
        yield ctl
