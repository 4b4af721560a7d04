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

With ``--watch`` it measures instead the catalog's ``watch-reflex`` action (py-spy off,
slow-span capture every 20 ms on each operation's slowest tenth, the burst reflex
armed), where the adaptive policy spends its steady windows: one demo service per
``--watch-rates`` rate running this tree's agent and, with ``--baseline DIR``, one
running the agent of an earlier commit (``git archive``), loaded in interleaved rounds.
Per service: the agent's CPU per part in % of a core while loaded (every thread named
``adaprof-*`` for the OS, and the fast loop, found by its Python name with one
``py-spy dump`` after the warm-up: the baseline may not name it), the fast loop's
wake-ups per second (its voluntary context switches: sleeps ended, and waits for the
GIL), py-spy's CPU (the reflex's bursts, if any fired), the service's CPU per request,
and the slow-span coverage as above.

Usage::

    .venv/bin/python bench/slow_span_capture.py                      # about 6 minutes
    .venv/bin/python bench/slow_span_capture.py --seconds 12 --rounds 2 --json
    # watch mode, this tree against main's agent (about 6 minutes; --reflex-off: no
    # bursts, whose rounds are left out of the figures)
    git archive 27d28cd otel_adaprof | tar -x -C /tmp/base
    .venv/bin/python bench/slow_span_capture.py --watch --baseline /tmp/base --seconds 72 --rounds 6

Every process it starts is stopped on exit; the load targets 127.0.0.1 only and is
bounded in rate and time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_overhead import cpu_snapshot, has_py_spy_child
from agent_threads_profile import read_threads

from otel_adaprof.controller.policy.catalog import load_catalog
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


def coverage(
    spans_path: Path, windows: dict[str, list[tuple[int, int]]] | None = None
) -> dict[str, dict[str, float]]:
    """Per service: share of each operation's slowest server spans carrying samples
    (with ``windows``: of the spans that started in one of the service's windows, unix
    ns; a service not in it keeps every span)."""
    per: dict[str, dict[str, list[tuple[float, int]]]] = {}
    with spans_path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("kind") != "SPAN_KIND_SERVER":
                continue
            start = int(row["startTimeUnixNano"])
            kept = windows.get(row.get("service", "")) if windows is not None else None
            if kept is not None and not any(lo <= start <= hi for lo, hi in kept):
                continue
            ms = (int(row["endTimeUnixNano"]) - start) / 1e6
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
            "samples": sum(c for durations in ops.values() for _ms, c in durations),
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


#: The catalog action the watch-mode measurement runs.
WATCH_ACTION = "watch-reflex"
#: Part of an agent thread, by its OS name (the fast loop: by its Python name).
FAST_LOOP = "adaprof-fast-loop"


def watch_params() -> dict[str, Any]:
    """The params of the packaged catalog's :data:`WATCH_ACTION`."""
    action = load_catalog().get(WATCH_ACTION)
    if action is None:
        raise RuntimeError(f"the packaged catalog has no {WATCH_ACTION!r} action")
    return dict(action.params.model_dump(mode="json", exclude_defaults=True))


def find_fast_loop(pid: int) -> tuple[int | None, str]:
    """Native id of the service's fast-loop thread, and the file its loop runs from
    (one ``py-spy dump``: which agent code the service runs)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    done = subprocess.run(
        [py_spy, "dump", "--pid", str(pid), "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    try:
        threads = json.loads(done.stdout)
    except ValueError:
        return None, ""
    for t in threads:
        if t.get("thread_name") == FAST_LOOP:
            frames = [f.get("filename", "") for f in t.get("frames", [])]
            where = next((f for f in frames if f.endswith("fast_loop.py")), "")
            return t.get("os_thread_id"), where
    return None, ""


@dataclass
class WatchRun:
    """One watch-mode service and its figures over its own rounds."""

    key: str
    tree: str
    rate: float
    pid: int
    port: int
    fast_loop: int | None = None
    fast_loop_file: str = ""
    ok: int = 0
    window_s: float = 0.0
    cpu_s: float = 0.0
    parts_s: dict[str, float] = field(default_factory=dict)
    fast_loop_switches: int = 0
    #: Rounds measured (no py-spy ran), as unix ns windows; rounds left out (a burst).
    windows: list[tuple[int, int]] = field(default_factory=list)
    burst_rounds: int = 0


def _parts(pid: int, fast_loop: int | None) -> dict[int, tuple[str, int, int]]:
    """Agent threads of ``pid``: native id → (part, CPU ns, voluntary switches)."""
    out: dict[int, tuple[str, int, int]] = {}
    for tid, (name, ns, _user, _system, switches) in read_threads(pid).items():
        if tid == fast_loop:
            out[tid] = ("fast loop (slow_span)", ns, switches)
        elif name.startswith("adaprof-"):
            out[tid] = (name.removeprefix("adaprof-"), ns, switches)
    return out


def watch_mode(
    rates: list[float], seconds: float, rounds: int, baseline: Path | None, reflex: bool = True
) -> dict[str, Any]:
    """This tree's agent (and the baseline's) in :data:`WATCH_ACTION`, side by side
    (``reflex=False``: its burst reflex off, the change signals still computed)."""
    params = json.dumps(
        watch_params() | ({} if reflex else {"burst_sensitivity": 0}), sort_keys=True
    )
    trees = [("this tree", None)] + ([("baseline", baseline)] if baseline else [])
    round_s = seconds / rounds
    with tempfile.TemporaryDirectory(prefix="adaprof-watch-") as tmp, Children() as kids:
        stack = DemoStack(kids, workdir=tmp)
        stack.start_sink()
        runs: list[WatchRun] = []
        try:
            for rate in rates:
                for tree, source in trees:
                    key = f"watch-{rate:g}-{'base' if source else 'tree'}"
                    env = {"ADAPROF_PROFILER": "py-spy", "ADAPROF_PARAMS": params}
                    if source is not None:
                        env["PYTHONPATH"] = str(source)
                    port = stack.start_service(key, extra_env=env, key=key, cwd=source)
                    runs.append(WatchRun(key, tree, rate, kids.procs[key].pid, port))
            for r in runs:
                _load(r.port, WARMUP_S, r.rate)
                r.fast_loop, r.fast_loop_file = find_fast_loop(r.pid)
            for k in range(rounds):
                for r in runs[k % len(runs) :] + runs[: k % len(runs)]:
                    burst = has_py_spy_child(r.pid)
                    before, kids0 = _parts(r.pid, r.fast_loop), cpu_snapshot(r.pid)
                    t0, lo = time.monotonic(), time.time_ns()
                    stats = _load(r.port, round_s, r.rate)
                    window, hi = time.monotonic() - t0, time.time_ns()
                    after, kids1 = _parts(r.pid, r.fast_loop), cpu_snapshot(r.pid)
                    time.sleep(DRAIN_S)
                    if burst or has_py_spy_child(r.pid) or kids1[1] > kids0[1]:
                        r.burst_rounds += 1  # the reflex fired: py-spy ran, not watch mode
                        continue
                    r.windows.append((lo, hi))
                    r.window_s += window
                    r.ok += stats.ok
                    r.cpu_s += kids1[0] - kids0[0]
                    for tid, (part, ns, switches) in after.items():
                        was = before.get(tid, (part, 0, 0))
                        r.parts_s[part] = r.parts_s.get(part, 0.0) + (ns - was[1]) / 1e9
                        if tid == r.fast_loop:
                            r.fast_loop_switches += switches - was[2]
        finally:
            for r in reversed(runs):  # SIGTERM: each service flushes its spans
                kids.stop(r.key)
            stack.stop_sink()
        cov = coverage(stack.spans_path, {r.key: r.windows for r in runs})
    out: dict[str, Any] = {"params": json.loads(params), "services": {}}
    for r in runs:
        c = cov.get(r.key, {"coverage": 0.0, "slowest": 0, "covered": 0})
        window = max(1e-9, r.window_s)
        agent_s = sum(r.parts_s.values())
        out["services"][r.key] = {
            "tree": r.tree,
            "rate": r.rate,
            "requests": r.ok,
            "fast_loop_found": r.fast_loop is not None,
            "fast_loop_file": r.fast_loop_file,
            "agent_core": round(agent_s / window, 5),
            "parts_core": {p: round(v / window, 5) for p, v in sorted(r.parts_s.items())},
            "fast_loop_wakes_per_s": round(r.fast_loop_switches / window, 1),
            "rounds_measured": len(r.windows),
            "rounds_with_a_burst": r.burst_rounds,
            "service_cpu_ms_per_req": round(1000.0 * r.cpu_s / max(1, r.ok), 3),
            "slowest": c["slowest"],
            "covered": c["covered"],
            "coverage": round(c["coverage"], 3),
            "mean_samples_on_slowest": round(c.get("mean_samples", 0.0), 2),
            "server_span_samples_per_s": round(c.get("samples", 0) / window, 2),
        }
    return out


def alarm_cost(spans: int = 20000, reps: int = 5) -> dict[str, Any]:
    """CPU of the span path's part of the alarm (``OpenSpanIndex.starting`` and
    ``ending`` around a dict insert and pop), per span, in this process: when the span
    moves the alarm at its start and back at its end (two ``timerfd_settime`` calls),
    and when it does not; and the marker processor's whole ``on_start`` + ``on_end``
    with slow-span capture on and off (a real ``TracerProvider``, nested spans)."""
    import statistics

    from opentelemetry.sdk.trace import TracerProvider

    from otel_adaprof.instrumentation.agent import Agent
    from otel_adaprof.instrumentation.settings import AgentSettings
    from otel_adaprof.instrumentation.spans.open_spans import OpenSpanIndex
    from otel_adaprof.params import Params

    index = OpenSpanIndex()
    index.look_ns["op"], index.slack_ns = 30_000_000, 10_000_000

    def index_us(alarm_ns: int) -> float:
        index.begin()
        index.plan(alarm_ns)
        t0 = time.thread_time()
        for k in range(spans):
            start = time.time_ns()
            index[k] = (1, 1, start, "op")
            index.starting(start, "op")
            index.pop(k)
            index.ending(start, "op")
        return 1e6 * (time.thread_time() - t0) / spans

    moving = [index_us(time.time_ns() + 10**12) for _ in range(reps)]
    still = [index_us(0) for _ in range(reps)]
    index.close()
    agent = Agent(AgentSettings(profiler="off"), service_name="alarm-cost")
    agent.apply_local(
        Params.parse(
            {"sampling_interval_ms": 0, "slow_span_interval_ms": 20,
             "marker_trigger": {"latency_percentile": 90}}
        )
    )  # fmt: skip
    provider = TracerProvider()
    provider.add_span_processor(agent.marker_processor)
    tracer = provider.get_tracer("alarm-cost")
    capture = agent.slow_capture

    def span_us() -> float:
        t0 = time.thread_time()
        for _ in range(spans // 2):
            with tracer.start_as_current_span("GET /a"), tracer.start_as_current_span("child"):
                pass
        return 1e6 * (time.thread_time() - t0) / spans

    off, on = [], []
    for _ in range(reps):
        agent.marker_processor.open_spans = None
        off.append(span_us())
        capture.tick(time.time_ns())  # installs the index (no fast loop runs here)
        agent.marker_processor.open_spans = capture.open_spans
        on.append(span_us())
    capture.stop()
    provider.shutdown()
    return {
        "index_us_per_span_moving_the_alarm": round(statistics.median(moving), 2),
        "index_us_per_span_not_moving_it": round(statistics.median(still), 2),
        "span_path_us_per_span_capture_off": round(statistics.median(off), 2),
        "span_path_us_per_span_capture_on": round(statistics.median(on), 2),
        "timer": OpenSpanIndex().timer,
    }


def watch_markdown(result: dict[str, Any]) -> str:
    """The watch-mode figures as a markdown table."""
    a, w = result["args"], result["watch"]
    lines = [
        f"Demo service in the catalog's {WATCH_ACTION} action ({json.dumps(w['params'])}), "
        f"{a['seconds']:g} s of load per service in {a['rounds']} interleaved rounds; "
        f"load average {result['load_average_start']} at the start, "
        f"{result['load_average_end']} at the end",
        "",
        "| req/s | agent | agent % core | fast loop % core | other parts % core "
        "| fast-loop wake-ups/s | rounds (with a burst, left out) | service CPU ms/req "
        "| slowest spans with samples | mean samples on them | samples on server spans /s |",
        "|---:|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for f in w["services"].values():
        parts = f["parts_core"]
        loop = parts.get("fast loop (slow_span)", 0.0)
        others = ", ".join(
            f"{p} {100 * v:.2f}" for p, v in parts.items() if p != "fast loop (slow_span)"
        )
        lines.append(
            f"| {f['rate']:g} | {f['tree']} | {100 * f['agent_core']:.2f} | {100 * loop:.2f} "
            f"| {others or '—'} | {f['fast_loop_wakes_per_s']:.1f} "
            f"| {f['rounds_measured']} ({f['rounds_with_a_burst']}) "
            f"| {f['service_cpu_ms_per_req']:.2f} "
            f"| {f['covered']} / {f['slowest']} ({f['coverage']:.0%}) "
            f"| {f['mean_samples_on_slowest']:.1f} | {f['server_span_samples_per_s']:.2f} |"
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
    parser.add_argument(
        "--watch", action="store_true", help=f"measure the catalog's {WATCH_ACTION} action"
    )
    parser.add_argument(
        "--watch-rates", default="10,20", help="req/s of the watch-mode services (comma-separated)"
    )
    parser.add_argument(
        "--alarm-cost", action="store_true",
        help="print the span path's cost of the capture's alarm (in this process, JSON)",
    )  # fmt: skip
    parser.add_argument(
        "--reflex-off", action="store_true",
        help="with --watch: burst_sensitivity 0 (no bursts; the signals still tick)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="with --watch: a directory holding an earlier otel_adaprof, run side by side",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.alarm_cost:
        result = {"machine": machine_description(), "load_average": os.getloadavg()}
        print(json.dumps(result | alarm_cost(), indent=2))
        return 0
    if args.watch:
        return _main_watch(parser, args)
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


def _main_watch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        rates = [float(x) for x in args.watch_rates.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--watch-rates: not numbers: {args.watch_rates!r}")
    if not rates or not all(0 < r <= MAX_RATE for r in rates):
        parser.error(f"--watch-rates: each in (0, {MAX_RATE:g}]")
    if not (0 < args.seconds <= MAX_SECONDS and args.rounds >= 1):
        parser.error(f"--seconds in (0, {MAX_SECONDS:g}], --rounds ≥ 1")
    if args.baseline is not None and not (args.baseline / "otel_adaprof" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_description(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    result["watch"] = watch_mode(
        rates, args.seconds, args.rounds, args.baseline, reflex=not args.reflex_off
    )
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(result, indent=2) if args.json else watch_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
