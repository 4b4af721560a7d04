"""The burst reflex on a real process: how fast a burst starts after a change, and what it buys.

One child process per mode runs a request loop (20 requests/s, root spans) with the
agent and real py-spy at 5 Hz in wall mode (1 s segments), ``burst_sensitivity: 8``,
``burst_interval_ms: 10``, ``burst_seconds: 3``:

* **step** — after 12 s (the signals' baselines form) each request also calls a new
  hot function (3 → 15 ms of CPU);
* **steady** — the same load, no step (in both, the load runs until the figures are
  read: its end would be a change of the span rate);
* **glimpse** — a subtle step (3 → 3.9 ms of CPU) under ``burst_sensitivity: 20`` and
  ``glimpse_sensitivity: 3``: the rise starts a glimpse (one 2 s run at 100 Hz) long
  before the evidence could reach 20 std.

Per mode: bursts started, the delay from the step to the burst's start (the reflex's
own clock), the request thread's CPU samples per second taken in the 1.5 s before the
step and in the burst's 3 s (by the samples' own times; steady: the 3 s from the same
moment), and the window report's ``burst_seconds`` and ``change_signals``.

Usage::

    .venv/bin/python bench/burst_reflex.py            # about 70 s
    .venv/bin/python bench/burst_reflex.py --json

``tests/agent/test_burst_reflex.py`` asserts on :func:`run` (this probe, the only copy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from typing import Any

PROBE = textwrap.dedent(
    """
    import json, sys, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    mode = sys.argv[1]
    step = mode in ("step", "glimpse")
    HOT_S = 0.0009 if mode == "glimpse" else 0.012
    SENSITIVITY = {"burst_sensitivity": 20, "glimpse_sensitivity": 3} if mode == "glimpse" \
        else {"burst_sensitivity": 8}
    # The change signals' CPU baseline forms from 16 observations of 12 requests: 10 s
    # at 20 requests/s, then the step.
    STEP_S = 12.0
    agent = otel_adaprof.configure(
        service_name="reflex", exporter=InMemorySpanExporter(),
        params={"sampling_interval_ms": 200, "profile_mode": "wall", **SENSITIVITY,
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
        burn(HOT_S)

    marks = {}
    stop = threading.Event()
    def requests():
        start = time.monotonic()
        n = 0
        while not stop.is_set():  # until the figures are read: the load never stops
            with tracer.start_as_current_span("GET /work"):
                handler_probe()
                if step and time.monotonic() - start >= STEP_S:
                    if "step" not in marks:  # what the steady 12 s before it started
                        marks["step"] = time.monotonic()
                        marks["bursts_before"] = agent.fast_loop.reflex.bursts
                        marks["glimpses_before"] = agent.fast_loop.reflex.glimpses
                    new_hot_function()
            n += 1
            marks["requests"] = n
            time.sleep(max(0.0, start + n * 0.05 - time.monotonic()))  # 20 requests/s

    def cpu_per_s(t0_ns, seconds):
        # the worker's CPU samples *taken* in [t0, t0 + seconds] (by their own times:
        # they reach the store when a py-spy run ends, seconds later)
        got = agent.store.samples_between(marks["ident"], t0_ns, t0_ns + int(seconds * 1e9))
        return sum(not waiting for _t, _s, waiting in got) / seconds

    def wall_ns(mono):
        return time.time_ns() - int((time.monotonic() - mono) * 1e9)

    time.sleep(1.0)
    agent.observer.close_window()
    worker = threading.Thread(target=requests); worker.start()
    marks["ident"] = worker.ident
    t_step = time.monotonic() + STEP_S  # the step (or, steady, the same time)
    time.sleep(STEP_S)
    deadline = time.monotonic() + 2.5  # after a step: until the burst starts
    while step and not agent.fast_loop.reflex.in_burst and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(max(0.0, t_step + 4.0 - time.monotonic()))
    time.sleep(2.5)  # the last py-spy runs end and their samples are in
    started = agent.fast_loop.reflex.started_at
    before = cpu_per_s(wall_ns(t_step) - 1_500_000_000, 1.5)  # 3.5-5 s: steady, 5 Hz
    during = cpu_per_s(wall_ns(started if step and started else t_step), 3.0)  # the burst
    reflex = agent.fast_loop.reflex
    state = agent.observer.close_window()
    stop.set()
    worker.join()
    print(json.dumps({
        "bursts": reflex.bursts,
        "glimpses": reflex.glimpses,
        "bursts_before_step": marks.get("bursts_before", reflex.bursts),
        "glimpses_before_step": marks.get("glimpses_before", reflex.glimpses),
        "delay": (reflex.started_at - marks["step"]) if step and reflex.started_at else None,
        "before": before, "during": during,
        "state": state.model_dump(mode="json"),
        "rate_after": agent.live.params.sampling_interval_ms,
        "requests": marks.get("requests", 0)}))
    """
)

#: The probe's modes (module docstring).
MODES = ("step", "steady", "glimpse")


def run(mode: str) -> dict[str, Any]:
    """One child process in ``mode`` (``step``, ``steady`` or ``glimpse``); its figures."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} probe failed:\n{done.stderr[-3000:]}")
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return got


def main(argv: list[str] | None = None) -> int:
    """Run the three modes; print markdown (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    result = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result.update({mode: run(mode) for mode in MODES})
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("| mode | bursts (glimpses) | delay s | CPU samples/s before | after | burst_seconds "
          "(glimpse_seconds) | changes |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in MODES:
        r = result[mode]
        delay = "—" if r["delay"] is None else f"{r['delay']:.2f}"
        state = r["state"]
        print(
            f"| {mode} | {r['bursts']} ({r['glimpses']}) | {delay} | {r['before']:.1f} "
            f"| {r['during']:.1f} | {state['burst_seconds']:.1f} ({state['glimpse_seconds']:.1f}) "
            f"| {state['change_signals']['changes']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
