"""How often the agent's fast loop wakes, and what it costs, in the watch action.

One process with the agent (profiler off, so only the fast loop works: change signals,
burst reflex armed, and slow-span capture when ``--capture-ms`` > 0) and a request
loop: ``--rate`` requests a second, each a server span with three child spans
(``db``, ``render``, ``cache``) sleeping exponential times of 4 ms mean, each request on
a thread of its own. After ``--warmup`` seconds, for ``--seconds``: the loop's ticks
and wake-ups a second, its stack reads a second and its thread's CPU (share of a core).

Usage::

    python bench/fast_loop_wakes.py                      # ≈ 30 s, markdown
    python bench/fast_loop_wakes.py --capture-ms 0 --json
    PYTHONPATH=/tmp/base python bench/fast_loop_wakes.py  # another tree, side by side

Targets nothing outside this process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: The watch action's params of the default catalog but the capture interval.
WATCH = {
    "sampling_interval_ms": 0,
    "trace_ratio": 1.0,
    "marker_trigger": {"latency_percentile": 90},
    "burst_sensitivity": 8,
    "burst_interval_ms": 10,
    "burst_seconds": 15,
}


def measure(rate: float, seconds: float, warmup: float, capture_ms: int) -> dict[str, Any]:
    """Run the request loop in this process and read the fast loop; the figures."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_adaprof
    from otel_adaprof.instrumentation.observe.agent_cpu import thread_cpu_seconds
    from otel_adaprof.instrumentation.settings import AgentSettings

    class Dropping(InMemorySpanExporter):  # keeps nothing: a long run stays small
        def export(self, spans: Any) -> Any:
            return super().export([])

    agent = otel_adaprof.configure(
        service_name="fast-loop-wakes",
        exporter=Dropping(),
        params={**WATCH, "slow_span_interval_ms": capture_ms},
        settings=AgentSettings(profiler="off"),
    )
    tracer = trace.get_tracer("fast-loop-wakes")
    rnd = random.Random(1)
    stop = threading.Event()

    def request() -> None:
        with tracer.start_as_current_span("GET /x", kind=trace.SpanKind.SERVER):
            for op in ("db", "render", "cache"):
                with tracer.start_as_current_span(op):
                    time.sleep(rnd.expovariate(1 / 0.004))

    def requests() -> None:
        while not stop.is_set():
            threading.Thread(target=request).start()
            time.sleep(1.0 / rate)

    threading.Thread(target=requests, daemon=True).start()
    time.sleep(warmup)
    loop = agent.fast_loop
    assert loop.native_id is not None
    t0, ticks0, wakes0 = time.monotonic(), loop.ticks, dict(loop.wake_ups)
    reads0, cpu0 = agent.slow_capture.samples, thread_cpu_seconds(loop.native_id) or 0.0
    requests0 = agent.counters.requests
    time.sleep(seconds)
    dt = time.monotonic() - t0
    cpu = (thread_cpu_seconds(loop.native_id) or 0.0) - cpu0
    stop.set()
    return {
        "requests_per_s": round((agent.counters.requests - requests0) / dt, 2),
        "ticks_per_s": round((loop.ticks - ticks0) / dt, 3),
        "wake_ups_per_s": {k: round((v - wakes0[k]) / dt, 3) for k, v in loop.wake_ups.items()},
        "stack_reads_per_s": round((agent.slow_capture.samples - reads0) / dt, 3),
        "loop_cpu_pct_core": round(cpu / dt * 100.0, 4),
        # (a tree before session 24 read the signals every 0.25 s)
        "signal_period_s": round(getattr(loop, "signal_period", lambda: 0.25)(), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before")
    parser.add_argument(
        "--capture-ms", type=int, default=50, help="slow_span_interval_ms (0: capture off)"
    )
    parser.add_argument("--label", default=None, help="name of the tree measured")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if not 0.5 <= args.rate <= 200 or not 1 <= args.seconds <= 300:
        parser.error("--rate must be in [0.5, 200] and --seconds in [1, 300]")
    import otel_adaprof

    got = {
        "label": args.label or str(Path(otel_adaprof.__file__).resolve().parent.parent),
        "python": sys.version.split()[0],
        "load_average_start": list(os.getloadavg()),
        "rate": args.rate,
        "capture_ms": args.capture_ms,
        **measure(args.rate, args.seconds, args.warmup, args.capture_ms),
    }
    if args.json:
        print(json.dumps(got))
    else:
        print("| tree | capture ms | req/s | ticks/s | stack reads/s | loop % of a core |")
        print("|---|---:|---:|---:|---:|---:|")
        print(
            f"| {got['label']} | {got['capture_ms']} | {got['requests_per_s']} | "
            f"{got['ticks_per_s']} | {got['stack_reads_per_s']} | {got['loop_cpu_pct_core']} |"
        )
    sys.stdout.flush()
    os._exit(0)  # the request threads and the agent's are daemons: no slow shutdown


if __name__ == "__main__":
    sys.exit(main())
