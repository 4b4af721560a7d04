"""Agent overhead: added cost per span, and the demo service under py-spy at 10 / 100 Hz.

Two measurements, each side by side in one run (these machines are shared and noisy):

1. **Span cost** (in this process). N spans (a SERVER span with HTTP attributes and a
   nested INTERNAL child, pairs in a tight loop) through a fresh ``TracerProvider`` with
   a ``BatchSpanProcessor`` and an exporter that discards, timed from the first span
   to the end of ``force_flush()`` (so work the agent defers to another thread counts
   too). Configurations: the plain SDK; the agent attached
   (``otel_adaprof.configure(..., profiler="off", start=False)``) with every span a
   marker (default params); the agent with markers filtered out (``span_filters``
   ``categories: [db]``, no span here is a DB span); and every span a marker *held*
   for its samples as when profiling is on (in-process backend, sampler not started,
   so no samples arrive); and markers on the slowest tenth (``marker_trigger``
   ``latency_percentile: 90``, the packaged catalog's trigger: what most spans pay in
   a service the controller drives). Repetitions are interleaved with a rotating order;
   the table shows the median µs/span and the median of the per-round differences to
   the SDK. Short repetitions pair better: on the 2-core development machine the SDK's
   own µs/span moves by a third from one 0.15 s repetition to the next, so 6,000-span
   repetitions gave a no-marker figure that moved ±2 µs between runs, 1,000-span ones
   (the default, 150 of them) ±0.4 µs (docs/benchmarks.md, session 23).
2. **Demo service** (child processes). One ``python -m otel_adaprof.demo.service``
   under ``opentelemetry-instrument`` per configuration (profiling off, py-spy at
   10 Hz, py-spy at 100 Hz, local params, no controller), spans exported over
   OTLP/HTTP to an in-process span sink. py-spy runs in the default
   ``profile_mode: cpu`` (``--gil``), and at 100 Hz also in ``wall`` mode, each with
   the other knobs of the packaged catalog's ``learn-100hz`` action (what the
   controller runs at 100 Hz: markers slower than their operation's p90, slow-span
   capture every 20 ms, depth 128). Open-loop
   load on 127.0.0.1 (the demo's
   /catalog /price /checkout mix) at ``--rate`` req/s, ``--seconds`` per configuration
   in ``--rounds`` short rounds interleaved between the services (rotating order),
   each followed by a short drain. Per configuration: achieved req/s, p50/p99 client
   latency, the service process's CPU per request and its py-spy children's CPU
   (psutil, counted over the service's own rounds + drains), and the CPU both take
   while the service is idle (during the other services' rounds). The agent's own
   threads (named ``adaprof-<part>`` for the OS) are counted per thread from
   ``/proc/<pid>/task/<tid>/schedstat`` and split by name.

Usage::

    python bench/agent_overhead.py                 # about 3 minutes
    python bench/agent_overhead.py --only spans --json     # the span cost alone, ≈ 1 minute
    python bench/agent_overhead.py --spans 20000 --seconds 40
    python bench/agent_overhead.py --spans 300 --seconds 2 --json
    # before/after a change: the agent of an earlier commit as a fifth service
    git archive 372e1f0 otel_adaprof | tar -x -C /tmp/base
    python bench/agent_overhead.py --only service --json --baseline /tmp/base

Every process it starts is stopped on exit (``otel_adaprof.demo.processes.Children``);
the load targets 127.0.0.1 only and is bounded in rate, in-flight requests and time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind, Tracer

import otel_adaprof
from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.demo.bench import machine_description
from otel_adaprof.demo.loadgen import LoadGenerator, percentile
from otel_adaprof.demo.phases import Phase
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.stack import DemoStack
from otel_adaprof.instrumentation.agent import Agent
from otel_adaprof.instrumentation.runtime import reset_agent
from otel_adaprof.instrumentation.settings import AgentSettings, ProfilerChoice

#: Untimed span pairs before each timed repetition.
WARMUP_PAIRS = 200
#: Seconds of unmeasured load each service gets after it started.
SERVICE_WARMUP_S = 2.0
#: Seconds after each round before the next starts (exports and held spans drain).
DRAIN_S = 1.0
#: Longest wait for a py-spy service's first py-spy child (s).
PYSPY_WAIT_S = 10.0
#: Bounds of the load: rate (req/s) and seconds per configuration.
MAX_RATE = 200.0
MAX_SECONDS = 600.0

SERVER_ATTRS: dict[str, str | int] = {
    "http.request.method": "GET",
    "url.path": "/catalog",
    "url.scheme": "http",
    "http.route": "/catalog",
    "server.address": "127.0.0.1",
    "server.port": 8000,
}


# --------------------------------------------------------------------------------------
# 1. span cost


class DiscardExporter(SpanExporter):
    """Counts the spans it is given and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass(frozen=True)
class SpanConfig:
    """One configuration of the span-cost measurement."""

    key: str
    label: str
    agent: bool
    params: dict[str, Any] | None = None
    profiler: ProfilerChoice = "off"


SPAN_CONFIGS: tuple[SpanConfig, ...] = (
    SpanConfig("sdk", "plain SDK", agent=False),
    SpanConfig("agent_markers", "agent, every span a marker (defaults)", agent=True),
    SpanConfig(
        "agent_filtered",
        "agent, markers filtered out (categories: db)",
        agent=True,
        params={"span_filters": {"categories": ["db"]}},
    ),
    SpanConfig(
        "agent_p90",
        "agent, markers on the slowest tenth (the catalog's p90 trigger)",
        agent=True,
        params={"marker_trigger": {"latency_percentile": 90}},
    ),
    SpanConfig(
        "agent_markers_held",
        "agent, every span a marker, held for samples",
        agent=True,
        profiler="in-process",
    ),
)


def _emit(tracer: Tracer, pairs: int) -> None:
    for i in range(pairs):
        with tracer.start_as_current_span(
            "GET /catalog", kind=SpanKind.SERVER, attributes=SERVER_ATTRS
        ) as server:
            with tracer.start_as_current_span("parse_catalog", attributes={"app.items": i}):
                pass
            server.set_attribute("http.response.status_code", 200)


def _processor(kind: str, exporter: SpanExporter, spans: int) -> SpanProcessor:
    if kind == "simple":
        return SimpleSpanProcessor(exporter)
    # Queue large enough that no span is dropped (a drop is cheaper than an export).
    return BatchSpanProcessor(exporter, max_queue_size=max(2048, 2 * (spans + 2 * WARMUP_PAIRS)))


def span_rep(cfg: SpanConfig, spans: int, processor: str) -> tuple[float, float, float]:
    """One timed repetition: (wall µs per span, process CPU µs per span, markers per span)."""
    reset_agent()
    exporter = DiscardExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False
    )
    provider.add_span_processor(_processor(processor, exporter, spans))
    agent: Agent | None = None
    if cfg.agent:
        agent = otel_adaprof.configure(
            tracer_provider=provider,
            settings=AgentSettings(profiler=cfg.profiler),
            params=cfg.params,
            start=False,
        )
    tracer = provider.get_tracer("bench")
    pairs = max(1, spans // 2)
    _emit(tracer, WARMUP_PAIRS)
    provider.force_flush()
    markers0 = agent.counters.markers if agent else 0
    gc.collect()
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    _emit(tracer, pairs)
    provider.force_flush()
    t1, c1 = time.perf_counter_ns(), time.process_time_ns()
    markers = (agent.counters.markers - markers0) if agent else 0
    provider.shutdown()
    reset_agent()
    if agent is not None:
        # reset_agent() does not free the agent (os.register_at_fork keeps a reference
        # to it): drop its markers so that later repetitions do not pay for them in GC.
        agent.book._by_span.clear()
    exported = exporter.spans
    if exported != 2 * (pairs + WARMUP_PAIRS):
        raise RuntimeError(
            f"{cfg.key}: {exported} spans exported, {2 * (pairs + WARMUP_PAIRS)} made"
        )
    n = 2 * pairs
    return (t1 - t0) / 1000.0 / n, (c1 - c0) / 1000.0 / n, markers / n


def span_cost(spans: int, reps: int, processor: str) -> dict[str, Any]:
    """Interleaved repetitions of every :data:`SPAN_CONFIGS` entry; figures per config."""
    times: dict[str, list[float]] = {c.key: [] for c in SPAN_CONFIGS}
    cpus: dict[str, list[float]] = {c.key: [] for c in SPAN_CONFIGS}
    marks: dict[str, list[float]] = {c.key: [] for c in SPAN_CONFIGS}
    n = len(SPAN_CONFIGS)
    for r in range(reps):
        for cfg in SPAN_CONFIGS[r % n :] + SPAN_CONFIGS[: r % n]:
            us, cpu, m = span_rep(cfg, spans, processor)
            times[cfg.key].append(us)
            cpus[cfg.key].append(cpu)
            marks[cfg.key].append(m)
    out: dict[str, Any] = {}
    for cfg in SPAN_CONFIGS:
        t, c = times[cfg.key], cpus[cfg.key]
        out[cfg.key] = {
            "label": cfg.label,
            "us_per_span": round(statistics.median(t), 3),
            "delta_us": round(_paired_delta(t, times["sdk"]), 3),
            "ratio": round(statistics.median(t) / statistics.median(times["sdk"]), 3),
            "cpu_us_per_span": round(statistics.median(c), 3),
            "cpu_delta_us": round(_paired_delta(c, cpus["sdk"]), 3),
            "markers_per_span": round(statistics.median(marks[cfg.key]), 3),
            "reps_us": [round(x, 3) for x in t],
        }
    return out


def _paired_delta(values: list[float], base: list[float]) -> float:
    """Median of the per-round differences (each round ran every configuration)."""
    return statistics.median(a - b for a, b in zip(values, base, strict=True))


# --------------------------------------------------------------------------------------
# 2. the demo service


@dataclass(frozen=True)
class ServiceConfig:
    """One demo-service configuration."""

    key: str
    label: str
    env: dict[str, str]
    py_spy: bool
    #: Directory the service starts in and imports ``otel_adaprof`` from (``--baseline``).
    cwd: Path | None = None


#: The catalog action whose knobs the py-spy configurations take (all but the rate and
#: the mode): what the controller runs at 100 Hz, slow-span capture armed.
CATALOG_ACTION = "learn-100hz"


def action_params(name: str = CATALOG_ACTION) -> dict[str, Any]:
    """The packaged catalog's params of action ``name``, as the controller sends them
    (defaults left out); :class:`KeyError` naming the actions if there is none."""
    catalog = load_catalog()
    action = catalog.get(name)
    if action is None:
        known = ", ".join(catalog.names)
        raise KeyError(f"the packaged catalog has no {name!r} action (it has {known})")
    params: dict[str, Any] = action.params.model_dump(mode="json", exclude_defaults=True)
    return params


def catalog_params(sampling_interval_ms: int, profile_mode: str = "cpu") -> str:
    """``ADAPROF_PARAMS`` JSON: :data:`CATALOG_ACTION`'s params at this rate and mode."""
    params = action_params(CATALOG_ACTION)
    params |= {"sampling_interval_ms": sampling_interval_ms, "profile_mode": profile_mode}
    return json.dumps(params, sort_keys=True)


SERVICE_CONFIGS: tuple[ServiceConfig, ...] = (
    ServiceConfig("off", "profiling off", {"ADAPROF_PROFILER": "off"}, py_spy=False),
    ServiceConfig(
        "pyspy_10hz",
        "py-spy 10 Hz (cpu)",
        {"ADAPROF_PROFILER": "py-spy", "ADAPROF_PARAMS": catalog_params(100)},
        py_spy=True,
    ),
    ServiceConfig(
        "pyspy_100hz",
        "py-spy 100 Hz (cpu)",
        {"ADAPROF_PROFILER": "py-spy", "ADAPROF_PARAMS": catalog_params(10)},
        py_spy=True,
    ),
    ServiceConfig(
        "pyspy_100hz_wall",
        "py-spy 100 Hz (wall)",
        {"ADAPROF_PROFILER": "py-spy", "ADAPROF_PARAMS": catalog_params(10, "wall")},
        py_spy=True,
    ),
)


#: CPU nanoseconds of one process's agent threads: native id -> (OS name, ns).
AgentThreadsCpu = dict[int, tuple[str, int]]


def cpu_snapshot(pid: int) -> tuple[float, float, AgentThreadsCpu]:
    """CPU seconds so far of the process itself and of its children (reaped + live),
    and the CPU of each of its agent threads (named ``adaprof-*``, still alive)."""
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    kids = t.children_user + t.children_system
    for child in proc.children(recursive=True):
        try:
            ct = child.cpu_times()
        except psutil.Error:
            continue
        kids += ct.user + ct.system
    return t.user + t.system, kids, agent_threads_cpu(pid)


def agent_threads_cpu(pid: int) -> AgentThreadsCpu:
    """``{native id: (name, CPU ns)}`` of the live threads of ``pid`` named ``adaprof-*``
    (``/proc/<pid>/task/<tid>/comm`` and ``schedstat``)."""
    out: AgentThreadsCpu = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            if not name.startswith("adaprof-"):
                continue
            out[int(task.name)] = (name, int((task / "schedstat").read_bytes().split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def agent_threads_delta(before: AgentThreadsCpu, after: AgentThreadsCpu) -> dict[str, float]:
    """CPU seconds per agent thread name between two snapshots (a thread new since
    ``before`` counts from zero; what a thread used after ``before`` and before it
    exited is lost, but is in the process's CPU).

    >>> agent_threads_delta({5: ("adaprof-beacon", 10**9)},
    ...                     {5: ("adaprof-beacon", 3 * 10**9), 6: ("adaprof-join", 10**9)})
    {'adaprof-beacon': 2.0, 'adaprof-join': 1.0}
    """
    out: dict[str, float] = {}
    for native, (name, ns) in after.items():
        was = before.get(native)
        spent = ns - (was[1] if was is not None and was[0] == name else 0)
        out[name] = out.get(name, 0.0) + max(0, spent) / 1e9
    return out


def has_py_spy_child(pid: int) -> bool:
    """Whether a py-spy process runs under ``pid`` right now."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return False
    for child in children:
        try:
            if "py-spy" in child.name():
                return True
        except psutil.Error:
            continue
    return False


@dataclass
class ServiceRun:
    """Figures gathered for one running service."""

    cfg: ServiceConfig
    pid: int
    port: int
    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    load_s: float = 0.0
    own_window_s: float = 0.0
    own_cpu_s: float = 0.0
    own_kids_s: float = 0.0
    own_agent_s: float = 0.0
    own_agent_by_thread: dict[str, float] = field(default_factory=dict)
    idle_window_s: float = 0.0
    idle_cpu_s: float = 0.0
    idle_kids_s: float = 0.0
    idle_agent_s: float = 0.0
    py_spy_seen: bool = False

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        ok = max(1, self.ok)
        return {
            "label": self.cfg.label,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "req_per_s": round(self.ok / self.load_s, 2) if self.load_s else 0.0,
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "service_cpu_ms_per_req": round(1000.0 * self.own_cpu_s / ok, 3),
            "pyspy_cpu_ms_per_req": round(1000.0 * self.own_kids_s / ok, 3),
            "agent_threads_cpu_ms_per_req": round(1000.0 * self.own_agent_s / ok, 3),
            "agent_threads_cpu_ms_per_req_by_thread": {
                name: round(1000.0 * seconds / ok, 3)
                for name, seconds in sorted(self.own_agent_by_thread.items())
            },
            "app_threads_cpu_ms_per_req": round(
                1000.0 * (self.own_cpu_s - self.own_agent_s) / ok, 3
            ),
            "pyspy_cpu_pct_loaded": round(100.0 * self.own_kids_s / self.own_window_s, 2)
            if self.own_window_s
            else 0.0,
            "idle_service_cpu_pct": round(100.0 * self.idle_cpu_s / self.idle_window_s, 2)
            if self.idle_window_s
            else 0.0,
            "idle_pyspy_cpu_pct": round(100.0 * self.idle_kids_s / self.idle_window_s, 2)
            if self.idle_window_s
            else 0.0,
            "agent_threads_pct_loaded": round(100.0 * self.own_agent_s / self.own_window_s, 2)
            if self.own_window_s
            else 0.0,
            "profiler_pct_loaded": round(
                100.0 * (self.own_kids_s + self.own_agent_s) / self.own_window_s, 2
            )
            if self.own_window_s
            else 0.0,
            "profiler_pct_idle": round(
                100.0 * (self.idle_kids_s + self.idle_agent_s) / self.idle_window_s, 2
            )
            if self.idle_window_s
            else 0.0,
            "py_spy_seen": self.py_spy_seen,
        }


def _load(port: int, seconds: float, rate: float) -> tuple[Any, float]:
    gen = LoadGenerator(port, [Phase("round", 0.0, seconds, rate, False)])
    t0 = time.monotonic()
    result = gen.run()
    return result.per_phase["round"], time.monotonic() - t0


def _span_check(spans_path: Path) -> dict[str, dict[str, int]]:
    """Per service name: spans received, markers, markers carrying samples."""
    out: dict[str, dict[str, int]] = {}
    if not spans_path.exists():
        return out
    with spans_path.open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            fig = out.setdefault(row.get("service", ""), {"spans": 0, "markers": 0, "sampled": 0})
            fig["spans"] += 1
            attrs = {a["key"]: a.get("value", {}) for a in row.get("attributes", [])}
            if "adaprof.marker" in attrs:
                fig["markers"] += 1
                count = attrs.get("adaprof.sample_count", {}).get("intValue", "0")
                if int(count) > 0:
                    fig["sampled"] += 1
    return out


def baseline_config(source: Path) -> ServiceConfig:
    """py-spy at 100 Hz in cpu mode (the catalog's knobs) running the agent's code from
    ``source``, a directory holding an ``otel_adaprof`` package (e.g. ``git archive`` of
    an earlier commit): before and after a change, side by side in one run."""
    if not (source / "otel_adaprof" / "__init__.py").is_file():
        raise ValueError(f"--baseline {source}: no otel_adaprof package in it")
    return ServiceConfig(
        "pyspy_100hz_baseline",
        "py-spy 100 Hz (cpu), baseline code",
        {
            "ADAPROF_PROFILER": "py-spy",
            "ADAPROF_PARAMS": catalog_params(10),
            "PYTHONPATH": str(source),
        },
        py_spy=True,
        cwd=source,
    )


def service_overhead(
    seconds: float, rounds: int, rate: float, baseline: Path | None = None
) -> dict[str, Any]:
    """Start one service per :data:`SERVICE_CONFIGS` entry (and ``--baseline``) and load
    them in turns."""
    configs = SERVICE_CONFIGS + ((baseline_config(baseline),) if baseline else ())
    round_s = seconds / rounds
    with tempfile.TemporaryDirectory(prefix="adaprof-overhead-") as tmp, Children() as kids:
        stack = DemoStack(kids, workdir=tmp)
        stack.start_sink()
        try:
            runs = _run_services(kids, stack, configs, round_s, rounds, rate)
        finally:
            for cfg in reversed(configs):  # SIGTERM: each service flushes its spans
                kids.stop(f"bench-{cfg.key}")
            stack.stop_sink()
        check = _span_check(stack.spans_path)
    out: dict[str, Any] = {}
    for key, run in runs.items():
        fig = run.summary()
        spans = check.get(f"bench-{key}", {"spans": 0, "markers": 0, "sampled": 0})
        fig["spans_exported"] = spans["spans"]
        fig["markers_with_samples"] = spans["sampled"]
        fig["markers"] = spans["markers"]
        out[key] = fig
    return out


def _run_services(
    kids: Children,
    stack: DemoStack,
    configs: Sequence[ServiceConfig],
    round_s: float,
    rounds: int,
    rate: float,
) -> dict[str, ServiceRun]:
    """Start the services, warm them up, then run the interleaved rounds."""
    runs: dict[str, ServiceRun] = {}
    for cfg in configs:
        name = f"bench-{cfg.key}"
        port = stack.start_service(name, extra_env=cfg.env, key=name, cwd=cfg.cwd)
        pid = kids.procs[name].pid
        runs[cfg.key] = ServiceRun(cfg, pid, port)
    for run in runs.values():
        _load(run.port, SERVICE_WARMUP_S, rate)
        if run.cfg.py_spy:
            deadline = time.monotonic() + PYSPY_WAIT_S
            while not has_py_spy_child(run.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    order = list(runs.values())
    n = len(order)
    for r in range(rounds):
        for run in order[r % n :] + order[: r % n]:
            before = {k: cpu_snapshot(x.pid) for k, x in runs.items()}
            t0 = time.monotonic()
            # looked at as the round starts and as it ends: a single look can fall in
            # the few milliseconds between one py-spy run and the next (a 10 Hz run
            # lasts 10 s; session 37's CI saw "pyspy_10hz" unseen once so)
            run.py_spy_seen |= has_py_spy_child(run.pid)
            stats, load_s = _load(run.port, round_s, rate)
            run.py_spy_seen |= has_py_spy_child(run.pid)
            time.sleep(DRAIN_S)
            window = time.monotonic() - t0
            after = {k: cpu_snapshot(x.pid) for k, x in runs.items()}
            run.latencies_ms += stats.latencies_ms
            run.sent += stats.sent
            run.ok += stats.ok
            run.errors += stats.errors
            run.dropped += stats.dropped
            run.load_s += load_s
            for key, other in runs.items():
                own = after[key][0] - before[key][0]
                kid = after[key][1] - before[key][1]
                by_thread = agent_threads_delta(before[key][2], after[key][2])
                agent = sum(by_thread.values())
                if other is run:
                    run.own_window_s += window
                    run.own_cpu_s += own
                    run.own_kids_s += kid
                    run.own_agent_s += agent
                    for name, seconds in by_thread.items():
                        run.own_agent_by_thread[name] = (
                            run.own_agent_by_thread.get(name, 0.0) + seconds
                        )
                else:
                    other.idle_window_s += window
                    other.idle_cpu_s += own
                    other.idle_kids_s += kid
                    other.idle_agent_s += agent
    return runs


# --------------------------------------------------------------------------------------
# output


def markdown(result: dict[str, Any]) -> str:
    """The result as two markdown tables."""
    lines: list[str] = []
    if "span_cost" in result:
        lines += _span_table(result)
    if "service" in result:
        lines += _service_table(result)
    return "\n".join(lines)


def _span_table(result: dict[str, Any]) -> list[str]:
    a = result["args"]
    lines = [
        f"Span cost: {a['spans']} spans per rep x {a['reps']} interleaved reps, "
        f"{a['processor']} processor, discarding exporter",
        "",
        "| configuration | µs/span | Δ vs SDK | x SDK | CPU µs/span | CPU Δ vs SDK "
        "| markers/span |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for fig in result["span_cost"].values():
        lines.append(
            f"| {fig['label']} | {fig['us_per_span']:.2f} | {fig['delta_us']:+.2f} "
            f"| {fig['ratio']:.2f} | {fig['cpu_us_per_span']:.2f} | {fig['cpu_delta_us']:+.2f} "
            f"| {fig['markers_per_span']:.2f} |"
        )
    return lines


def _service_table(result: dict[str, Any]) -> list[str]:
    a = result["args"]
    lines = [
        "",
        f"Demo service: {a['rate']:g} req/s open loop, {a['seconds']:g} s per configuration "
        f"in {a['rounds']} interleaved rounds",
        "",
        "| configuration | ok / sent | req/s | p50 ms | p99 ms | service CPU ms/req "
        "| py-spy CPU ms/req | py-spy % core (loaded) | idle % core (service + py-spy) "
        "| markers with samples |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fig in result["service"].values():
        idle = fig["idle_service_cpu_pct"] + fig["idle_pyspy_cpu_pct"]
        lines.append(
            f"| {fig['label']} | {fig['ok']} / {fig['sent']} | {fig['req_per_s']:.1f} "
            f"| {fig['p50_ms']:.2f} | {fig['p99_ms']:.2f} | {fig['service_cpu_ms_per_req']:.2f} "
            f"| {fig['pyspy_cpu_ms_per_req']:.2f} | {fig['pyspy_cpu_pct_loaded']:.1f} "
            f"| {idle:.1f} | {fig['markers_with_samples']} / {fig['markers']} |"
        )
    lines += [
        "",
        "Service CPU per request by thread (agent threads by OS name, ms/req)",
        "",
        "| configuration | app threads | agent threads | by agent thread |",
        "|---|---:|---:|---|",
    ]
    for fig in result["service"].values():
        split = ", ".join(
            f"{name.removeprefix('adaprof-')} {ms:.3f}"
            for name, ms in sorted(
                fig["agent_threads_cpu_ms_per_req_by_thread"].items(), key=lambda kv: -kv[1]
            )
        )
        lines.append(
            f"| {fig['label']} | {fig['app_threads_cpu_ms_per_req']:.2f} "
            f"| {fig['agent_threads_cpu_ms_per_req']:.3f} | {split or '-'} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run both measurements, print the tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1000, help="timed spans per repetition")
    parser.add_argument("--reps", type=int, default=150, help="repetitions per span configuration")
    parser.add_argument(
        "--processor", choices=("batch", "simple"), default="batch", help="SDK export processor"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="seconds of load per service configuration"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per service")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (open loop)")
    parser.add_argument(
        "--only",
        choices=("spans", "service"),
        default=None,
        help="run only the span cost or only the demo service measurement",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="also run py-spy 100 Hz (cpu) with the otel_adaprof package in this directory "
        "(e.g. git archive of an earlier commit), side by side",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    if args.spans < 2 or args.reps < 1 or args.rounds < 1:
        parser.error("--spans must be >= 2, --reps and --rounds >= 1")
    if not 0 < args.rate <= MAX_RATE or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--rate must be in (0, {MAX_RATE:g}], --seconds in (0, {MAX_SECONDS:g}]")
    if args.baseline is not None and not (args.baseline / "otel_adaprof" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    started = time.monotonic()
    result: dict[str, Any] = {
        "machine": machine_description(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "args": vars(args)
        | {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "baseline": str(args.baseline) if args.baseline else None,
        },
    }
    if args.only != "service":
        result["span_cost"] = span_cost(args.spans, args.reps, args.processor)
    if args.only != "spans":
        result["service"] = service_overhead(args.seconds, args.rounds, args.rate, args.baseline)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        m = result["machine"]
        print(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}")
        print()
        print(markdown(result))
        print()
        print(f"({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
