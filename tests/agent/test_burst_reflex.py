"""The burst reflex in a real process: a CPU-per-request step starts a burst at once.

A request loop in a process with the agent and real py-spy (5 Hz, wall mode, 1 s segments);
half-way, each request calls a new hot function (3 ms → 15 ms of CPU). With
``burst_sensitivity`` set, the agent bursts to 100 Hz within about a second, by itself;
a steady service does not burst.
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

    step = sys.argv[1] == "step"
    agent = otel_adaprof.configure(
        service_name="reflex", exporter=InMemorySpanExporter(),
        params={"sampling_interval_ms": 200, "profile_mode": "wall", "burst_sensitivity": 8,
                "burst_interval_ms": 10, "burst_seconds": 3},
        settings=AgentSettings(profiler="py-spy", segment_s=1))
    tracer = trace.get_tracer("reflex")

    def burn(s):
        end = time.thread_time() + s
        while time.thread_time() < end:
            pass

    def handler_probe():
        burn(0.003)

    def new_hot_function():
        burn(0.012)

    marks = {}
    def requests():
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < 9.0:
            with tracer.start_as_current_span("GET /work"):
                handler_probe()
                if step and time.monotonic() - start >= 5.0:
                    marks.setdefault("step", time.monotonic())
                    new_hot_function()
            n += 1
            marks["requests"] = n
            time.sleep(max(0.0, start + n * 0.05 - time.monotonic()))  # 20 requests/s

    def samples_per_s(seconds):
        a, t = agent.store.cpu_samples_added, time.monotonic()
        time.sleep(seconds)
        return (agent.store.cpu_samples_added - a) / (time.monotonic() - t)

    time.sleep(1.0)
    agent.observer.close_window()
    worker = threading.Thread(target=requests); worker.start()
    time.sleep(3.5)
    before = samples_per_s(1.5)  # 3.5-5 s: steady, 5 Hz
    deadline = time.monotonic() + 2.5  # after a step: from the burst's start
    while step and not agent.fast_loop.reflex.in_burst and time.monotonic() < deadline:
        time.sleep(0.02)
    # Samples reach the store when a py-spy segment ends: count what arrives from the
    # burst's start until its last segment is in, over the burst's 3 s (on a busy machine
    # the first 100 Hz segment may not be in within 1.5 s).
    a = agent.store.cpu_samples_added
    time.sleep(3.0 + 1.5)
    during = (agent.store.cpu_samples_added - a) / 3.0
    worker.join()
    time.sleep(1.0)
    reflex = agent.fast_loop.reflex
    state = agent.observer.close_window()
    print(json.dumps({
        "bursts": reflex.bursts,
        "delay": (reflex.started_at - marks["step"]) if step and reflex.started_at else None,
        "before": before, "during": during,
        "state": state.model_dump(mode="json"),
        "rate_after": agent.live.params.sampling_interval_ms,
        "requests": marks.get("requests", 0)}))
    """
)


def _run(mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _served(got: dict) -> None:
    # 9 s at 20 requests/s: on a saturated machine the loop itself falls behind, and
    # neither the step's timing nor the signal's observation rate hold.
    if got["requests"] < 90:
        pytest.skip(f"the probe served {got['requests']} of 180 requests: machine saturated")


@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
def test_a_cpu_per_request_step_starts_a_burst_within_two_seconds():
    got = _run("step")
    _served(got)
    assert got["bursts"] >= 1, got
    assert got["delay"] is not None and 0.0 <= got["delay"] <= 2.0, got
    state = got["state"]
    assert state["burst_seconds"] >= 2.0, state
    assert state["change_signals"]["changes"] >= 1
    assert state["change_signals"]["last_change_unix"] is not None
    assert got["during"] >= 3 * max(got["before"], 1.0), got  # 100 Hz against 5 Hz
    assert got["rate_after"] == 200  # the burst is over: the params are back


def test_a_steady_service_does_not_burst():
    got = _run("steady")
    _served(got)
    assert got["bursts"] == 0, got
    assert got["state"]["burst_seconds"] == 0.0
    assert got["state"]["change_signals"]["changes"] == 0
