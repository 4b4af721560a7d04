"""Slow-span capture against py-spy: samples on the slowest spans, and what they cost.

Side by side in one run (the machine is shared and noisy), one demo service
(``python -m otel_adaprof.demo.service`` under ``opentelemetry-instrument``, local
params, no controller, spans over OTLP/HTTP to an in-process span sink) per
configuration:

* **off** — the agent with profiling off and no capture (the CPU baseline);
* **py-spy 10 Hz**, **py-spy 100 Hz** — ``sampling_interval_ms`` 100 / 10, in
  ``profile_mode`` cpu (the default, py-spy ``--gil``) and wall (every thread);
* **slow-span 10 ms**, **slow-span 2 ms** — no py-spy (``sampling_interval_ms: 0``),
  slow-span capture every 10 / 2 ms (``slow_span_interval_ms``);
* **slow-span 10 ms + py-spy 10 Hz** — both.

Every configuration has the same marker trigger, ``latency_percentile: 90``: a span is
a marker, and slow, when it is slower than its operation's p90 so far. Open-loop load on
127.0.0.1 (the demo's /catalog /price /checkout mix) at ``--rate`` req/s, ``--seconds``
per configuration in ``--rounds`` rounds interleaved between the services (rotating
order). Per configuration:

* **slow-span coverage** — of each server operation's slowest 10 % of server spans
  (by duration, all operations pooled), the share that carry at least one sample
  (``adaprof.sample_count > 0``), and their mean samples;
* **CPU** — the service's CPU per request (psutil, over its own rounds and drains), its
  excess over *off* (the in-process cost: the capture thread, joins, parse), py-spy's
  CPU per request, and the agent's total in % of a core while loaded.

It also measures, in this process, the real capture path's CPU per capture with 4 and
64 threads and 1–16 slow spans (the cost grows with slow spans, not threads), and the
cost of the always-on part: the agent's fast
loop (change signals every 0.25 s, capture idle) under ``--signal-rate`` root spans/s,
as its thread's CPU (``schedstat``) over the wall time.

Usage::

    .venv/bin/python bench/slow_span_capture.py                      # about 6 minutes
    .venv/bin/python bench/slow_span_capture.py --seconds 12 --rounds 2 --json

Every process it starts is stopped on exit; the load targets 127.0.0.1 only and is
bounded in rate and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_overhead import cpu_snapshot, has_py_spy_child

from otel_adaprof.demo.bench import machine_description
from otel_adaprof.demo.loadgen import LoadGenerator
from otel_adaprof.demo.phases import Phase
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.stack import DemoStack

#: Seconds of unmeasured load each service gets after it started (its percentiles fill).
WARMUP_S = 4.0
#: Seconds after each round before the next starts (held spans and exports drain).
DRAIN_S = 2.0
#: Longest wait for a py-spy service's first py-spy child (s).
PYSPY_WAIT_S = 10.0
#: Share of each operation's spans that count as its slowest.
SLOWEST = 0.10
TRIGGER = {"latency_percentile": 90}
MAX_RATE, MAX_SECONDS = 200.0, 600.0


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    params: dict[str, Any]
    profiler: str
    py_spy: bool


#: The catalog's watch action without its capture interval (``watch-reflex``).
_WATCH: dict[str, Any] = {
    "sampling_interval_ms": 0,
    "burst_sensitivity": 8,
    "burst_interval_ms": 10,
    "burst_seconds": 15,
}

CONFIGS = (
    Config("off", "off", {"sampling_interval_ms": 0}, "off", False),
    Config("pyspy_10hz", "py-spy 10 Hz (cpu)", {"sampling_interval_ms": 100}, "py-spy", True),
    Config("pyspy_100hz", "py-spy 100 Hz (cpu)", {"sampling_interval_ms": 10}, "py-spy", True),
    Config(
        "pyspy_10hz_wall",
        "py-spy 10 Hz (wall)",
        {"sampling_interval_ms": 100, "profile_mode": "wall"},
        "py-spy",
        True,
    ),
    Config(
        "pyspy_100hz_wall",
        "py-spy 100 Hz (wall)",
        {"sampling_interval_ms": 10, "profile_mode": "wall"},
        "py-spy",
        True,
    ),
    Config(
        "slow_10ms",
        "slow-span 10 ms",
        {"sampling_interval_ms": 0, "slow_span_interval_ms": 10},
        "off",
        False,
    ),
    Config(
        "slow_2ms",
        "slow-span 2 ms",
        {"sampling_interval_ms": 0, "slow_span_interval_ms": 2},
        "off",
        False,
    ),
    Config(
        "slow_10ms_pyspy_10hz",
        "slow-span 10 ms + py-spy 10 Hz (cpu)",
        {"sampling_interval_ms": 100, "slow_span_interval_ms": 10},
        "py-spy",
        True,
    ),
    # the catalog's watch action (py-spy off, the reflex armed, capture every 20 ms), and
    # the same with the capture every 50 ms or off (what the reflex alone costs)
    Config(
        "watch_20ms",
        "watch: reflex + slow-span 20 ms",
        {**_WATCH, "slow_span_interval_ms": 20},
        "off",
        False,
    ),
    Config(
        "watch_50ms",
        "watch: reflex + slow-span 50 ms",
        {**_WATCH, "slow_span_interval_ms": 50},
        "off",
        False,
    ),
    Config(
        "reflex_only",
        "watch: reflex, no capture",
        {**_WATCH, "slow_span_interval_ms": 0},
        "off",
        False,
    ),
)


@dataclass
class Run:
    cfg: Config
    pid: int
    port: int
    ok: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0
    kids_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _load(port: int, seconds: float, rate: float) -> Any:
    return LoadGenerator(port, [Phase("round", 0.0, seconds, rate, False)]).run().per_phase["round"]


def coverage(spans_path: Path) -> dict[str, dict[str, float]]:
    """Per service: share of each operation's slowest server spans carrying samples."""
    per: dict[str, dict[str, list[tuple[float, int]]]] = {}
    with spans_path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("kind") != "SPAN_KIND_SERVER":
                continue
            ms = (int(row["endTimeUnixNano"]) - int(row["startTimeUnixNano"])) / 1e6
            attrs = {a["key"]: a.get("value", {}) for a in row.get("attributes", [])}
            count = int(attrs.get("adaprof.sample_count", {}).get("intValue", "0"))
            ops = per.setdefault(row.get("service", ""), {})
            ops.setdefault(row.get("name", ""), []).append((ms, count))
    out: dict[str, dict[str, float]] = {}
    for service, ops in per.items():
        slowest: list[int] = []
        spans = 0
        for durations in ops.values():
            spans += len(durations)
            ranked = sorted(durations, reverse=True)
            slowest += [c for _ms, c in ranked[: max(1, round(SLOWEST * len(ranked)))]]
        out[service] = {
            "server_spans": spans,
            "slowest": len(slowest),
            "covered": sum(1 for c in slowest if c > 0),
            "coverage": sum(1 for c in slowest if c > 0) / max(1, len(slowest)),
            "mean_samples": sum(slowest) / max(1, len(slowest)),
        }
    return out


def run(
    seconds: float, rounds: int, rate: float, configs: tuple[Config, ...] = CONFIGS
) -> dict[str, Any]:
    """Start the services, load them in interleaved rounds, read their spans."""
    round_s = seconds / rounds
    with tempfile.TemporaryDirectory(prefix="adaprof-slowspan-") as tmp, Children() as kids:
        stack = DemoStack(kids, workdir=tmp)
        stack.start_sink()
        runs: dict[str, Run] = {}
        try:
            for cfg in configs:
                name = f"bench-{cfg.key}"
                env = {
                    "ADAPROF_PROFILER": cfg.profiler,
                    "ADAPROF_PARAMS": json.dumps({**cfg.params, "marker_trigger": TRIGGER}),
                }
                port = stack.start_service(name, extra_env=env, key=name)
                runs[cfg.key] = Run(cfg, kids.procs[name].pid, port)
            for r in runs.values():
                _load(r.port, WARMUP_S, rate)
                if r.cfg.py_spy:
                    deadline = time.monotonic() + PYSPY_WAIT_S
                    while not has_py_spy_child(r.pid) and time.monotonic() < deadline:
                        time.sleep(0.1)
            order = list(runs.values())
            for k in range(rounds):
                for r in order[k % len(order) :] + order[: k % len(order)]:
                    before, t0 = cpu_snapshot(r.pid), time.monotonic()
                    stats = _load(r.port, round_s, rate)
                    time.sleep(DRAIN_S)
                    after = cpu_snapshot(r.pid)
                    r.window_s += time.monotonic() - t0
                    r.ok += stats.ok
                    r.cpu_s += after[0] - before[0]
                    r.kids_s += after[1] - before[1]
        finally:
            for cfg in reversed(configs):  # SIGTERM: each service flushes its spans
                kids.stop(f"bench-{cfg.key}")
            stack.stop_sink()
        cov = coverage(stack.spans_path)
    base = runs["off"]
    base_ms = 1000.0 * base.cpu_s / max(1, base.ok)
    out: dict[str, Any] = {}
    for key, r in runs.items():
        ok = max(1, r.ok)
        service_ms = 1000.0 * r.cpu_s / ok
        excess_s = max(0.0, r.cpu_s - base_ms / 1000.0 * r.ok)
        c = cov.get(f"bench-{key}", {"coverage": 0.0, "slowest": 0, "covered": 0})
        out[key] = {
            "label": r.cfg.label,
            "requests": r.ok,
            "server_spans": c.get("server_spans", 0),
            "slowest": c["slowest"],
            "covered": c["covered"],
            "coverage": round(c["coverage"], 3),
            "mean_samples_on_slowest": round(c.get("mean_samples", 0.0), 2),
            "service_cpu_ms_per_req": round(service_ms, 3),
            "excess_cpu_ms_per_req": round(service_ms - base_ms, 3),
            "pyspy_cpu_ms_per_req": round(1000.0 * r.kids_s / ok, 3),
            "agent_pct_core": round(100.0 * (excess_s + r.kids_s) / max(1e-9, r.window_s), 2),
        }
    return out


def fast_loop_cost(seconds: float, rate: float) -> dict[str, float]:
    """CPU of the agent's fast loop thread in this process, spans at ``rate``/s."""
    from opentelemetry.sdk.trace import TracerProvider

    from otel_adaprof.instrumentation.agent import Agent
    from otel_adaprof.instrumentation.control.fast_loop import threads_cpu_seconds
    from otel_adaprof.instrumentation.settings import AgentSettings
    from otel_adaprof.params import Params

    agent = Agent(AgentSettings(profiler="off"), service_name="fast-loop-cost")
    agent.apply_local(Params(sampling_interval_ms=0))
    provider = TracerProvider()
    provider.add_span_processor(agent.marker_processor)
    tracer = provider.get_tracer("cost")
    agent.start()
    try:
        time.sleep(0.5)
        native = agent.fast_loop.native_id
        assert native is not None
        cpu0, t0, n = threads_cpu_seconds([native]), time.monotonic(), 0
        while (elapsed := time.monotonic() - t0) < seconds:
            with (
                tracer.start_as_current_span(f"GET /op{n % 4}"),
                tracer.start_as_current_span("child"),
            ):
                pass
            n += 1
            time.sleep(max(0.0, n / rate - (time.monotonic() - t0)))
        cpu = threads_cpu_seconds([native]) - cpu0
        ticks = agent.fast_loop.ticks
    finally:
        agent.stop()
        provider.shutdown()
    return {
        "seconds": round(elapsed, 2),
        "root_spans_per_s": round(n / elapsed, 1),
        "fast_loop_cpu_pct_core": round(100.0 * cpu / elapsed, 3),
        "ticks": ticks,
    }


def _deep_wait(n: int, stop: threading.Event) -> None:
    if n:
        _deep_wait(n - 1, stop)
    else:
        stop.wait()


def capture_cost(threads: int, slow: int, ticks: int = 400) -> dict[str, float]:
    """CPU of the real capture path (``SlowSpanCapture.tick``) in this process.

    ``threads`` threads wait 20 frames deep; ``slow`` of them have an open span past
    its trigger, the others an open span that is not slow yet. Per tick: one capture of
    each slow thread.
    """
    from otel_adaprof.instrumentation.control.live_params import LiveParams
    from otel_adaprof.instrumentation.join.samples import SampleStore
    from otel_adaprof.instrumentation.profiler.slow_spans import SlowSpanCapture
    from otel_adaprof.instrumentation.spans.latency import LatencyTracker
    from otel_adaprof.params import Params

    stop = threading.Event()
    workers = [
        threading.Thread(target=_deep_wait, args=(20, stop), daemon=True) for _ in range(threads)
    ]
    for w in workers:
        w.start()
    time.sleep(0.1)
    live = LiveParams(
        Params.parse({"slow_span_interval_ms": 1, "marker_trigger": {"min_duration_ms": 1000}})
    )
    capture = SlowSpanCapture(
        live, SampleStore(retention_s=3600), LatencyTracker(), enable=lambda i: True
    )
    capture.tick(time.time_ns())
    index = capture.open_spans
    assert index is not None
    now = time.time_ns()
    for k, w in enumerate(workers):
        start = now - 2_000_000_000 if k < slow else now + 3_600_000_000_000
        index[k + 1] = (w.ident or 0, w.native_id or 0, start, "op")
    try:
        capture.tick(time.time_ns())  # starts the slow threads' clocks
        cpu0, samples0 = capture.cpu_seconds, capture.samples
        for _ in range(ticks):
            capture.tick(time.time_ns())
        spent = capture.cpu_seconds - cpu0
        taken = capture.samples - samples0
        backend, effective_ms = capture.stacks.backend, capture.effective_interval_ms
    finally:
        stop.set()
        capture.stop()
    return {
        "threads": threads,
        "slow": slow,
        "backend": backend,
        "us_per_tick": round(1e6 * spent / ticks, 2),
        "us_per_capture": round(1e6 * spent / taken, 2) if taken else 0.0,
        "captures": taken,
        "effective_interval_ms": round(effective_ms, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    a = result["args"]
    lines = [
        f"Demo service, {a['rate']:g} req/s open loop, {a['seconds']:g} s per configuration in "
        f"{a['rounds']} interleaved rounds; trigger latency_percentile 90; "
        f"slowest {int(SLOWEST * 100)} % of each operation's server spans",
        "",
        "| configuration | slowest spans with samples | mean samples on them "
        "| service CPU ms/req | excess over off ms/req | py-spy CPU ms/req "
        "| agent % core (excess + py-spy) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for fig in result["configs"].values():
        lines.append(
            f"| {fig['label']} | {fig['covered']} / {fig['slowest']} ({fig['coverage']:.0%}) "
            f"| {fig['mean_samples_on_slowest']:.1f} | {fig['service_cpu_ms_per_req']:.2f} "
            f"| {fig['excess_cpu_ms_per_req']:+.2f} | {fig['pyspy_cpu_ms_per_req']:.2f} "
            f"| {fig['agent_pct_core']:.1f} |"
        )
    f = result["fast_loop"]
    if not f:
        return "\n".join(lines)
    lines += [
        "",
        f"Always-on fast loop (change signals every 0.25 s, capture idle), in-process, "
        f"{f['root_spans_per_s']:g} root spans/s for {f['seconds']:g} s: "
        f"{f['fast_loop_cpu_pct_core']:.3f} % of a core",
        "",
        "Capture cost in-process (the real SlowSpanCapture.tick, threads waiting 20 frames "
        "deep, stack_depth 64, interval asked 1 ms; the interval in force keeps reads at "
        "2 % of a core):",
        "",
        "| threads | slow spans | stack reader | µs per tick | µs per capture "
        "| interval in force |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for c in result["capture_cost"]:
        per = f"{c['us_per_capture']:.1f}" if c["captures"] else "—"
        eff = f"{c['effective_interval_ms']:g} ms" if c["captures"] else "—"
        lines.append(
            f"| {c['threads']} | {c['slow']} | {c['backend']} | {c['us_per_tick']:.1f} "
            f"| {per} | {eff} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run and print markdown (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="load per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per service")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (open loop)")
    parser.add_argument(
        "--signal-rate", type=float, default=100.0, help="root spans/s for the fast-loop cost"
    )
    parser.add_argument(
        "--configs",
        default="",
        help="comma-separated configuration keys to run (off is always run; default: all): "
        + ", ".join(c.key for c in CONFIGS),
    )
    parser.add_argument(
        "--no-cost", action="store_true", help="skip the in-process capture and fast-loop costs"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    wanted = {k.strip() for k in args.configs.split(",") if k.strip()}
    unknown = wanted - {c.key for c in CONFIGS}
    if unknown:
        parser.error(f"--configs: unknown {', '.join(sorted(unknown))}")
    chosen = tuple(c for c in CONFIGS if not wanted or c.key in wanted or c.key == "off")
    if not (0 < args.rate <= MAX_RATE and 0 < args.seconds <= MAX_SECONDS and args.rounds >= 1):
        parser.error(
            f"--rate in (0, {MAX_RATE:g}], --seconds in (0, {MAX_SECONDS:g}], --rounds ≥ 1"
        )
    t0 = time.monotonic()
    fast_loop = {} if args.no_cost else fast_loop_cost(10.0, min(args.signal_rate, 1000.0))
    costs = (
        []
        if args.no_cost
        else [
            capture_cost(n, k)
            for n, k in ((4, 0), (64, 0), (4, 1), (20, 1), (64, 1), (4, 4), (64, 4), (64, 16))
        ]
    )
    configs = run(args.seconds, args.rounds, args.rate, chosen)
    result = {
        "args": vars(args),
        "machine": machine_description(),
        "wall_s": round(time.monotonic() - t0, 1),
        "fast_loop": fast_loop,
        "capture_cost": costs,
        "configs": configs,
    }
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
