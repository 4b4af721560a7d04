"""Threads that exit (one thread per request) do not multiply their last stack.

py-spy reports nothing when a thread exits, so without the agent's thread liveness
an exited thread's last stack runs on until py-spy's file ends. Real py-spy, reading
this test's own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent(
    """
    import json, sys, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    memory = InMemorySpanExporter()
    agent = otel_adaprof.configure(
        service_name="exits", exporter=memory,
        params={"sampling_interval_ms": 10, "profile_mode": sys.argv[1]},
        settings=AgentSettings(profiler="py-spy", segment_s=2))
    tracer = trace.get_tracer("exits")

    def burn_probe():
        end = time.thread_time() + 0.1
        while time.thread_time() < end:
            pass

    def request():
        with tracer.start_as_current_span("request"):
            burn_probe()

    time.sleep(1.0)
    for _ in range(5):
        t = threading.Thread(target=request)
        t.start(); t.join(); time.sleep(0.2)
    # until every py-spy run that saw the requests is in (the one running started after
    # them: runs follow each other) and their spans are out; at most 4.5 s
    ended = time.time()
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline and not (
        (agent.profiler.pending_since() or 0.0) > ended
        and len([s for s in memory.get_finished_spans() if s.name == "request"]) == 5
    ):
        time.sleep(0.05)
    histogram = agent.store.take_histogram(64)
    seen = sum(s.count for s in histogram.stacks if "burn_probe" in s.stack)
    spans = [s for s in memory.get_finished_spans() if s.name == "request"]
    expected = sum(s.end_time - s.start_time for s in spans) / 1e9 * 100
    print(json.dumps({"seen": seen, "expected": expected,
                      "dropped": agent.profiler.dead_thread_samples,
                      "taken": agent.profiler.pyspy_samples}))
    """
)


# 100 ms of CPU per request (about 50 samples in all): with 30 ms (about 15) the cpu case
# failed 2 of 14 runs here and twice in a row in a clean-clone CI run (seen 5-8 of ~15,
# the rest py-spy's few --gil samples of the agent's threads and noise); with 100 ms,
# seen / min(expected, taken) came out 0.73-0.98 in cpu mode and 0.74-1.04 in wall mode
# (10 runs each, session 21). The bounds unchanged.
@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
@pytest.mark.parametrize("mode", ["wall", "cpu"])
def test_exited_threads_keep_only_the_samples_of_their_life(mode):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    if mode == "wall":  # py-spy repeats each exited thread's last stack: dropped
        assert got["dropped"] > 0
        assert 0.5 * got["expected"] <= got["seen"] <= 2.0 * got["expected"], got
    else:
        # cpu (--gil): the ticks between stack changes go only to threads alive and on
        # CPU, and never more than py-spy took (fewer than the spans' time x rate when
        # py-spy itself waits for a core on a busy machine)
        assert 0.5 * min(got["expected"], got["taken"]) <= got["seen"], got
        assert got["seen"] <= min(2.0 * got["expected"], got["taken"]), got
