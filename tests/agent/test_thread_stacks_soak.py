"""The stack walk survives the soak's churn on this Python (bench/thread_stacks_soak.py).

A real child churns threads, generators, asyncio tasks, deep recursion, tracebacks and
finalisers run by the collector, while a reader walks every thread's stack as fast as
it can. On CPython 3.11 the walk without the collector held off kills such a child
within seconds (a SIGSEGV, or a hang with the collector inside
``sys._current_frames()``: bench/output/thread_stacks_soak_s25.json); the walk the
agent uses must not, on whatever Python runs the tests.
"""

from __future__ import annotations

import sys

from tests.support.bench_scripts import load


def test_the_walk_survives_a_child_churning_under_it():
    soak = load("thread_stacks_soak")
    got = soak.soak_one(sys.executable, "walk", seconds=12.0, child_seconds=12.0)
    assert got["children"] == 1, got
    assert (got["crashes"], got["hangs"], got["faults"]) == (0, 0, 0), got
    assert got["reads"] >= 1000, got  # it did read, all along
