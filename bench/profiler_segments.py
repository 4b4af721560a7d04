"""Where the profiler's fixed cost goes, and long py-spy segments against the old cuts.

Part 1, *per segment* (in this process, 20 threads, two of them running Python code 20
frames deep): one py-spy run of 1 s and of 4 s at 1, 10 and 100 Hz (``--gil``), each
run twice; for each, the CPU the service's thread spends spawning it (``Popen``), py-spy's
own CPU (its rusage) and the CPU of parsing its output. py-spy's CPU for a run is about
``start + per_second · length``: the 1 s and 4 s runs give both.

Part 2, *side by side*: fresh child processes (the same 20 threads) with the real agent,
py-spy at 1, 10 and 100 Hz in ``profile_mode: cpu``, polling every 3 s a controller
stand-in on 127.0.0.1 that answers each poll with the same params under a new config
version (as the real controller does). ``before``: the old rule (a segment is cut at
every window's close and new version, at most ``ADAPROF_PROFILE_SEGMENT_S`` = 2 s; the
clock beacon moves at least every 0.1 s). ``after``: segments cut only when py-spy's
knobs change, planned for 200 samples within 2–10 s; the beacon moves at most 0.5 s
apart. The agent's CPU per part comes from its own reports (every agent thread and
every py-spy run, late parts included), over the windows after a warm-up. Cells run in
a rotating order.

Usage::

    python bench/profiler_segments.py                 # both parts, ≈ 5 min
    python bench/profiler_segments.py --json > bench/output/profiler_segments.json
    python bench/profiler_segments.py --cells-only --seconds 9 --repeats 1   # quicker
    python bench/profiler_segments.py --cells-only --rates 100 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RATES = (1, 10, 100)
VARIANTS = ("before", "after")
THREADS = 20
WINDOW_S = 3.0
WARMUP_WINDOWS = 1


def _deep(n: int, stop: threading.Event) -> None:
    if n:
        _deep(n - 1, stop)
        return
    while not stop.is_set():
        sum(i * i for i in range(200))


def _threads(stop: threading.Event) -> None:
    for k in range(THREADS):
        if k < 2:
            threading.Thread(target=_deep, args=(20, stop), daemon=True).start()
        else:
            threading.Thread(target=stop.wait, daemon=True).start()


def per_segment() -> list[dict[str, Any]]:
    """Part 1: spawn, py-spy and parse CPU of single runs, by rate and length."""
    import tempfile

    from otel_adaprof.instrumentation.profiler.chrometrace import load_events, parse_chrometrace
    from otel_adaprof.instrumentation.profiler.pyspy import PySpyRun, find_py_spy

    stop = threading.Event()
    _threads(stop)
    binary = find_py_spy(None)
    if binary is None:
        raise SystemExit("py-spy not found")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rate in RATES:
            for length in (1, 4):
                runs = []
                for k in range(2):
                    t0 = time.thread_time()
                    run = PySpyRun(
                        binary,
                        os.getpid(),
                        rate,
                        length,
                        Path(tmp) / f"r{rate}-{length}-{k}.json",
                        True,
                        gil=True,
                    )
                    spawn = time.thread_time() - t0
                    result = run.wait(length + 20)
                    if result is None:
                        run.kill()
                        continue
                    t1 = time.thread_time()
                    events = load_events(result.output or b"[]")
                    parse_chrometrace(
                        events,
                        started_at_ns=result.started_ns,
                        rate_hz=rate,
                        gil=True,
                        total_samples=result.samples,
                    )
                    parse = time.thread_time() - t1
                    runs.append((spawn, result.cpu_seconds, parse, result.samples or 0))
                n = max(1, len(runs))
                rows.append(
                    {
                        "rate_hz": rate,
                        "length_s": length,
                        "runs": len(runs),
                        "spawn_cpu_s": round(sum(r[0] for r in runs) / n, 5),
                        "pyspy_cpu_s": round(sum(r[1] for r in runs) / n, 5),
                        "parse_cpu_s": round(sum(r[2] for r in runs) / n, 5),
                        "samples": round(sum(r[3] for r in runs) / n, 1),
                    }
                )
                print(f"segment {rate} Hz {length} s: {rows[-1]}", file=sys.stderr)
    stop.set()
    return rows


class _Controller:
    """Answers every poll with the same params under a new config version; keeps reports."""

    def __init__(self, params: dict[str, Any]) -> None:
        from otel_adaprof.params import Params
        from otel_adaprof.protocol import PollResponse, decode_poll_request, encode

        self.reports: list[Any] = []
        self.version = 0
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                me.reports.append(decode_poll_request(body))
                me.version += 1
                answer = encode(
                    PollResponse(
                        config_version=me.version,
                        params=Params.parse(params),
                        poll_interval_s=WINDOW_S,
                    )
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cell(variant: str, rate: int, seconds: float) -> dict[str, Any]:
    """Part 2, one cell (in a fresh child): the agent's CPU per part from its reports."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    stop = threading.Event()
    _threads(stop)
    params = {"sampling_interval_ms": max(1, round(1000 / rate)), "profile_mode": "cpu"}
    controller = _Controller(params)
    settings = AgentSettings(
        profiler="py-spy",
        controller_url=controller.url,
        window_s=WINDOW_S,
        params_json=json.dumps(params),
        cut_rule="window" if variant == "before" else "params",
    )
    agent = otel_adaprof.configure(
        service_name="segments", exporter=InMemorySpanExporter(), settings=settings
    )
    assert agent is not None
    started = time.monotonic()
    if variant == "before":
        agent.profiler.beacon.max_period_s = 0.1
    windows = WARMUP_WINDOWS + max(1, round(seconds / WINDOW_S))
    deadline = time.monotonic() + windows * WINDOW_S * 3 + 30
    while time.monotonic() < deadline:
        done = [r for r in controller.reports if r.window is not None]
        if len(done) >= windows + 1:  # one more: late parts of the last window
            break
        time.sleep(0.2)
    # the counted windows' samples still in flight come as late parts: wait for them
    reports = [r for r in controller.reports if r.window is not None]
    counted_end = (
        reports[windows - 1].window.window_start + reports[windows - 1].window.window_seconds
    )
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        pending = agent.profiler.pending_since()
        if pending is None or pending > counted_end:
            break
        time.sleep(0.2)
    seen = len(controller.reports)
    while len(controller.reports) <= seen and time.monotonic() < deadline + 10:
        time.sleep(0.2)
    starts = agent.profiler.starts
    stop.set()
    reports = [r for r in controller.reports if r.window is not None]
    counted = reports[WARMUP_WINDOWS:windows]
    counted_versions = {r.config_version for r in counted}
    wall = sum(r.window.window_seconds for r in counted)
    parts: dict[str, float] = {}
    samples = 0
    for r in counted:
        for part, cpu in r.window.profiler_cpu_breakdown.items():
            parts[part] = parts.get(part, 0.0) + cpu
        samples += r.stacks.total_samples if r.stacks else 0
    late_cpu = 0.0
    for r in reports:  # the counted versions' late parts, wherever they came
        for late in r.late_stacks:
            if late.config_version in counted_versions:
                late_cpu += late.profiler_cpu_seconds
                samples += late.stacks.total_samples
    if late_cpu:
        parts["late"] = late_cpu
    return {
        "variant": variant,
        "rate_hz": rate,
        "windows": len(counted),
        "seconds": round(wall, 2),
        "cores": round(sum(parts.values()) / wall, 5),
        "parts": {k: round(v / wall, 5) for k, v in sorted(parts.items())},
        "pyspy_starts_per_s": round(starts / (time.monotonic() - started), 3),
        "samples_per_s": round(samples / wall, 2),
    }


def run_cells(seconds: float, repeats: int, rates: tuple[int, ...] = RATES) -> list[dict[str, Any]]:
    plan = [(v, r) for _ in range(repeats) for r in rates for v in VARIANTS]
    out = []
    for k, (variant, rate) in enumerate(plan):
        argv = [sys.executable, __file__, "--cell", variant, str(rate), "--seconds", str(seconds)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise SystemExit(f"cell {variant}/{rate} failed:\n{done.stderr[-2000:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"[{k + 1}/{len(plan)}] {variant} {rate} Hz: {out[-1]['cores']:.4f} {out[-1]['parts']}",
            file=sys.stderr,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="counted seconds per cell")
    parser.add_argument("--repeats", type=int, default=2, help="cells per variant and rate")
    parser.add_argument("--cells-only", action="store_true", help="part 2 only")
    parser.add_argument(
        "--rates", default="1,10,100", help="rates of the side-by-side cells (comma-separated)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--cell", nargs=2, metavar=("VARIANT", "RATE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(cell(args.cell[0], int(args.cell[1]), args.seconds)))
        return 0
    segments = [] if args.cells_only else per_segment()
    rates = tuple(int(r) for r in args.rates.split(","))
    cells = run_cells(args.seconds, args.repeats, rates)
    summary: dict[str, dict[str, Any]] = {}
    for rate in rates:
        for variant in VARIANTS:
            mine = [c for c in cells if c["rate_hz"] == rate and c["variant"] == variant]
            keys = sorted({k for c in mine for k in c["parts"]})
            summary[f"{variant} {rate} Hz"] = {
                "cores": round(sum(c["cores"] for c in mine) / len(mine), 5),
                "parts": {
                    k: round(sum(c["parts"].get(k, 0.0) for c in mine) / len(mine), 5) for k in keys
                },
                "pyspy_starts_per_s": round(
                    sum(c["pyspy_starts_per_s"] for c in mine) / len(mine), 3
                ),
                "samples_per_s": round(sum(c["samples_per_s"] for c in mine) / len(mine), 1),
            }
    result = {
        "command": "python bench/profiler_segments.py" + (" " + " ".join(sys.argv[1:])).rstrip(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "note": "shared machine, other engineers' jobs running",
        },
        "threads": THREADS,
        "window_s": WINDOW_S,
        "per_segment": segments,
        "cells": cells,
        "summary": summary,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if segments:
        print("| Hz | run | spawn (app CPU) | py-spy CPU | parse (app CPU) | samples |")
        print("|---:|---:|---:|---:|---:|---:|")
        for s in segments:
            print(
                f"| {s['rate_hz']} | {s['length_s']} s | {s['spawn_cpu_s'] * 1e3:.1f} ms "
                f"| {s['pyspy_cpu_s'] * 1e3:.1f} ms | {s['parse_cpu_s'] * 1e3:.1f} ms "
                f"| {s['samples']:g} |"
            )
        print()
    print("| variant | Hz | cores | py-spy starts/s | samples/s | parts (cores) |")
    print("|---|---:|---:|---:|---:|---|")
    for name, s in summary.items():
        variant, rate = name.split(" ", 1)
        parts = ", ".join(f"{k} {v:.4f}" for k, v in s["parts"].items())
        print(
            f"| {variant} | {rate.split()[0]} | {s['cores']:.4f} | {s['pyspy_starts_per_s']} "
            f"| {s['samples_per_s']} | {parts} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
