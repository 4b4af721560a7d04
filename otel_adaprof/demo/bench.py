"""The insight-per-overhead benchmark (``../shared/BENCHMARK.md``) on the demo workload.

Six copies of the demo service run side by side — same phases, same request rate, at
the same time — each profiled under one configuration through the real controller:

=========== ===============================================================
off         a static session with the profiler off (overhead baseline)
static-100  static session, py-spy 100 Hz, depth 128, trace ratio 1.0
static-10   static session, 10 Hz
static-1    static session, 1 Hz
heuristic   a session with ``policy: heuristic``: the controller's
            ``ThresholdPolicy`` decides server side, window by window
adaptive    an adaptive session (the controller's learned policy, seeded from
            the packaged default model)
=========== ===============================================================

Usage::

    >>> from otel_adaprof.demo.bench import BenchSettings, run_bench
    >>> result = run_bench(BenchSettings.quick(), out="bench-out")   # doctest: +SKIP
    >>> print(markdown_table(result))                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import platform
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from otel_adaprof.demo.bench_figures import (
    arrival_snapshots,
    detection_time,
    efficiency,
    marker_coverage,
    profile_diff,
    read_phase,
    reported_windows,
    request_coverage,
    sampled_requests,
    wall_skew,
    windows_profile,
    windows_within,
)
from otel_adaprof.demo.bench_verdict import (
    draws_markdown,
    static_draws,
    verdict,
    verdict_markdown,
)
from otel_adaprof.demo.budget import BUDGET_CPU as BUDGET_CPU
from otel_adaprof.demo.controller_client import ControllerClient, ControllerError, session_id_of
from otel_adaprof.demo.ground_truth import (
    GROUND_TRUTH,
    function_shares,
    run_truth,
    samples_needed,
)
from otel_adaprof.demo.loadgen import CAPTURE_ENV, LoadGenerator, LoadResult
from otel_adaprof.demo.phases import SHAPE, schedule
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.report import write_report
from otel_adaprof.demo.span_sink import SpanSink
from otel_adaprof.demo.stack import LONGEST_RUN_S, SEGMENT_S, DemoStack
from otel_adaprof.demo.timeline import TimelineRow, parse_timeline, profiler_cpu_over
from otel_adaprof.demo.workload import HOT_PATH
from otel_adaprof.exporters.collapsed import parse_collapsed
from otel_adaprof.params import Params

#: The configurations, in table order.
CONFIGS = ("off", "static-100", "static-10", "static-1", "heuristic", "adaptive")
#: Fixed params of the static configurations (full depth, every trace).
STATIC_PARAMS: dict[str, Params] = {
    "off": Params(sampling_interval_ms=0),
    "static-100": Params(sampling_interval_ms=10, stack_depth=128, trace_ratio=1.0),
    "static-10": Params(sampling_interval_ms=100, stack_depth=128, trace_ratio=1.0),
    "static-1": Params(sampling_interval_ms=1000, stack_depth=128, trace_ratio=1.0),
}


def code_location() -> dict[str, str]:
    """Where the running ``otel_adaprof`` was imported from, and its version: a run made
    from a copy of the tree (``PYTHONPATH=<copy>``) says whether the copy is what ran
    (``python -m`` puts the working directory first on the path: run from a checkout,
    that checkout's code runs whatever ``PYTHONPATH`` says).

    >>> code_location()["package"].endswith("otel_adaprof")
    True
    """
    import otel_adaprof

    return {
        "package": str(Path(otel_adaprof.__file__).resolve().parent),
        "version": otel_adaprof.__version__,
    }


def report_lag_s(window_s: float) -> float:
    """Mean delay between a stack sample and its reaching the session profile.

    A sample waits for the end of its py-spy run (half a segment on average), then for
    the agent's next poll and the benchmark's next look at the profile (about half a
    window each). Per-phase profile figures read the profile this much later than the
    phase boundaries, so that samples count in the phase they were taken in.

    >>> report_lag_s(3.0)
    4.0
    """
    return window_s + SEGMENT_S / 2.0


@dataclass(frozen=True)
class BenchSettings:
    """Length, load and window of a run."""

    duration_s: float = 240.0
    rate_rps: float = 10.0
    window_s: float = 3.0
    phase_scale: float = 1.0  # every phase this many times longer, same loads
    order_seed: int = 0  # 0: start configurations in table order, else shuffled
    arrivals: str = "uniform"  # request spacing (demo/loadgen.py ARRIVALS), same for all
    #: Every service's ``ADAPROF_PROFILER`` (auto: py-spy where it may read the process).
    profiler: str = "auto"

    @classmethod
    def quick(cls) -> BenchSettings:
        """A short run for tests and CI (every figure, little statistical weight)."""
        return cls(duration_s=24.0, rate_rps=8.0, window_s=1.0)

    @property
    def load_s(self) -> float:
        """Seconds of load: ``duration_s × phase_scale`` (the phases keep their shares).

        >>> BenchSettings(duration_s=240.0, phase_scale=4.0).load_s
        960.0
        """
        return self.duration_s * self.phase_scale

    @property
    def sample_lead_s(self) -> float:
        """Seconds before a window opened that its report's samples may go back.

        A py-spy run that spans a window's close reports its samples late, in the next
        report: a window's samples may then be up to a run (``SEGMENT_S``) older than
        the window. The native profiler's are never older: the report's close takes
        them all in (``Profiler.pause``), and those it takes as the new params come in
        were read after the close. A phase's profile counts a window when its samples
        all fall in the phase (:func:`~otel_adaprof.demo.bench_figures.windows_within`);
        with the py-spy lead, a native window opened less than 2 s into a phase was
        left out of it (before session 44) — for adaptive, often the window of the
        burst that found the phase's change.

        >>> BenchSettings().sample_lead_s, BenchSettings(profiler="native").sample_lead_s
        (2.0, 0.0)
        """
        return 0.0 if self.profiler == "native" else SEGMENT_S


@dataclass
class _Run:
    """What the benchmark tracks for one configuration while it runs."""

    name: str
    port: int
    pid: int
    sink: SpanSink
    session_ids: list[str] = field(default_factory=list)
    closed_profile: dict[str, float] = field(default_factory=dict)
    snapshots: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (unix t, app CPU s)
    sink_bytes: list[tuple[float, int]] = field(default_factory=list)
    params: Params | None = None
    load: LoadResult | None = None


def _session_spec(
    service: str, name: str, duration_s: float, params: Params | None
) -> dict[str, Any]:
    policy = name if name in ("adaptive", "heuristic") else "static"
    spec: dict[str, Any] = {
        "service": service,
        "duration_s": duration_s,
        "mode": "static" if policy == "static" else "adaptive",
        "policy": policy,
        "budget": {"cpu_fraction": BUDGET_CPU},
    }
    if params is not None:
        spec["initial_params"] = params.to_json()
    return spec


def _cumulative(api: ControllerClient, run: _Run) -> dict[str, float]:
    """Samples so far over every session of the run (the last snapshot if unreachable)."""
    if not run.session_ids:
        return {}
    try:
        raw = api.profile(run.session_ids[-1], "collapsed").decode(errors="replace")
    except (OSError, ControllerError):
        return dict(run.snapshots[-1][1]) if run.snapshots else dict(run.closed_profile)
    total = dict(run.closed_profile)
    for stack, n in parse_collapsed(raw).items():
        total[stack] = total.get(stack, 0.0) + n
    return total


def _timeline(api: ControllerClient, run: _Run) -> list[TimelineRow]:
    rows: list[TimelineRow] = []
    for sid in run.session_ids:
        try:
            rows += parse_timeline(api.timeline(sid))
        except (OSError, ControllerError):
            continue
    return sorted(rows, key=lambda r: r.t)


def run_bench(
    settings: BenchSettings,
    out: str | Path,
    workdir: str | Path | None = None,
    on_progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Run every configuration side by side; write JSON, table and plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="adaprof-bench-")
    folder = Path(workdir) if workdir else Path(tmp.name)  # type: ignore[union-attr]
    try:
        with Children() as kids:
            return _bench(kids, folder, settings, out, on_progress)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _bench(
    kids: Children,
    folder: Path,
    settings: BenchSettings,
    out: Path,
    on_progress: Callable[[float, str], None] | None,
) -> dict[str, Any]:
    stack = DemoStack(kids, folder, poll_interval_s=settings.window_s)
    api = stack.start_controller()
    session_len = settings.load_s + 120.0
    runs: dict[str, _Run] = {}
    try:
        order = list(CONFIGS)
        if settings.order_seed:
            random.Random(settings.order_seed).shuffle(order)
        for name in order:
            sink = SpanSink(folder / f"spans-{name}.jsonl").start()
            service = f"bench-{name}"
            env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_TRACES_EXPORTER": "otlp",
                **CAPTURE_ENV,
                "ADAPROF_PROFILER": settings.profiler,
            }
            port = stack.start_service(service, env, key=name)
            pid = kids.procs[name].pid
            runs[name] = _Run(name, port, pid, sink)
        for name, run in runs.items():
            params = STATIC_PARAMS.get(name)
            if name == "heuristic":
                params = STATIC_PARAMS["static-10"]
            run.params = params
            session = api.open_session(_session_spec(f"bench-{name}", name, session_len, params))
            run.session_ids.append(session_id_of(session))
        # Let every agent take its session's params before the load starts.
        time.sleep(2 * settings.window_s + 1.0)
        phases = schedule(settings.load_s, settings.rate_rps)
        # one seed for all: with poisson arrivals every configuration gets the same times
        gens = {
            n: LoadGenerator(r.port, phases, arrivals=settings.arrivals, seed=1)
            for n, r in runs.items()
        }
        failures: dict[str, BaseException] = {}

        def drive(name: str) -> None:
            try:
                runs[name].load = gens[name].run()
            except BaseException as exc:  # raised in the main thread after the run
                failures[name] = exc

        threads = [threading.Thread(target=drive, args=(n,), daemon=True) for n in runs]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        try:
            while any(th.is_alive() for th in threads):
                now = time.time()
                for run in runs.values():
                    times = psutil.Process(run.pid).cpu_times()
                    run.cpu.append((now, times.user + times.system))
                    run.sink_bytes.append((now, run.sink.bytes_received))
                    run.snapshots.append((now, _cumulative(api, run)))
                if on_progress is not None:
                    on_progress(time.monotonic() - t0, "running")
                time.sleep(settings.window_s)
        finally:
            for gen in gens.values():
                gen.stop()
        load_end = time.time()
        for name, exc in failures.items():
            raise RuntimeError(f"the load generator of {name} failed: {exc}") from exc
        # The last phase's samples reach the controller up to a segment and a window late.
        time.sleep(settings.window_s + LONGEST_RUN_S + 1.0)
        now = time.time()
        for run in runs.values():
            times = psutil.Process(run.pid).cpu_times()
            run.cpu.append((now, times.user + times.system))
            run.snapshots.append((now, _cumulative(api, run)))
        timelines = {n: _timeline(api, r) for n, r in runs.items()}
        raw_adaptive = api.timeline(runs["adaptive"].session_ids[-1])
        for name in CONFIGS:
            kids.stop(name)  # SIGTERM: the agent flushes its last spans
        for run in runs.values():
            run.sink_bytes.append((time.time(), run.sink.bytes_received))
    finally:
        for run in runs.values():
            run.sink.stop()
    result = _figures(runs, timelines, settings, folder, load_end)
    adaptive_load = runs["adaptive"].load
    served = {n: st.ok for n, st in adaptive_load.per_phase.items()} if adaptive_load else {}
    write_report(
        out / "adaptive-report", raw_adaptive, runs["adaptive"].snapshots[-1][1],
        summary={"configuration": "adaptive", "truth": run_truth(served),
                 "truth_label": "whole run, by requests served per phase"},
        marks=[(t, n) for n, t in (adaptive_load.phase_started_at.items()
                                   if adaptive_load else [])],
    )  # fmt: skip
    result["verdict"] = verdict(result)
    result["static_100_draws"] = static_draws(result)
    (out / "bench.json").write_text(json.dumps(result, indent=1))
    (out / "bench.md").write_text(markdown_table(result))
    return result


def _at(series: list[tuple[float, Any]], t: float) -> Any:
    """The last value recorded at or before ``t`` (the first one if none)."""
    best = series[0][1]
    for ts, value in series:
        if ts <= t:
            best = value
    return best


def _figures(
    runs: dict[str, _Run], timelines: dict[str, list[TimelineRow]], settings: BenchSettings,
    folder: Path, load_end: float,
) -> dict[str, Any]:  # fmt: skip
    phases = schedule(settings.load_s, settings.rate_rps)
    lag = report_lag_s(settings.window_s)
    db = folder / "adaprof.db"
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name in [c for c in CONFIGS if c in runs]:
        run = runs[name]
        # each phase's profile from the windows the agent reported wholly inside it
        # (bench_figures.windows_within); the cumulative profile read at the phase's edges
        # plus the report lag stays as a second figure (it counts the window across an
        # edge, and with it the next phase's first samples, in the phase before)
        windows = reported_windows(db, f"bench-{name}") if db.exists() else None
        load = run.load
        started = load.phase_started_at if load else {}
        spans = [
            json.loads(line)
            for line in (folder / f"spans-{name}.jsonl").read_text().splitlines()
            if line.strip()
        ] if (folder / f"spans-{name}.jsonl").exists() else []  # fmt: skip
        sampled = sampled_requests(spans)
        requests = load.requests if load else []
        table[name] = {}
        for i, phase in enumerate(phases):
            start = started.get(phase.name)
            if start is None:
                continue
            nxt = phases[i + 1].name if i + 1 < len(phases) else None
            end = started.get(nxt, load_end) if nxt else load_end
            span_s = max(end - start, 1e-6)
            stats = load.per_phase[phase.name] if load else None
            by_edges = profile_diff(_at(run.snapshots, end + lag), _at(run.snapshots, start + lag))
            # a phase too short to hold a whole window (--quick): read at the edges
            inside = windows_within(windows or [], start, end, settings.sample_lead_s)
            gained = windows_profile(inside) if inside else by_edges
            shares = function_shares(gained)
            truth = GROUND_TRUTH[phase.name]
            samples = sum(gained.values())
            workload, l1 = read_phase(gained, truth)
            edges_workload, edges_l1 = read_phase(by_edges, truth)
            rows = [r for r in timelines[name] if start <= r.t < end]
            prof = profiler_cpu_over(rows)
            app_cpu = _at(run.cpu, end) - _at(run.cpu, start)
            hot_err = abs(shares[HOT_PATH] - truth[HOT_PATH])
            sent_bytes = _at(run.sink_bytes, end) - _at(run.sink_bytes, start)
            fig: dict[str, Any] = {
                "profiler_cpu": round(prof, 5) if prof is not None else None,
                "app_cpu_ms_per_request": round(1000 * app_cpu / stats.ok, 3)
                if stats and stats.ok else None,
                "p50_ms": round(stats.p50_ms, 3) if stats else None,
                "p99_ms": round(stats.p99_ms, 3) if stats else None,
                "bytes_per_s": round(sent_bytes / span_s, 1),
                "samples": samples,
                "workload_samples": workload,
                "profile_error_l1": l1,
                "profile_error_l1_at_edges": edges_l1,
                "workload_samples_at_edges": edges_workload,
                "profile_from": f"{len(inside)} windows" if inside else "edges",
                "marker_coverage": marker_coverage(spans, start, end),
                # how far a wall-time reading would be off (bench/wall_vs_cpu.py)
                "wall_skew_l1": wall_skew(spans, start, end, truth),
                "slow_request_coverage": request_coverage(requests, sampled, phase.name),
                "requests_ok": stats.ok if stats else 0,
            }  # fmt: skip
            if truth[HOT_PATH] > 0:
                needed = samples_needed(truth[HOT_PATH], max(hot_err, 0.02))
                fig["samples_needed_for_hot_share"] = needed
                fig["sample_efficiency"] = efficiency(workload, needed)
            table[name][phase.name] = fig
        onset = started.get("hot_path")
        hot_share = GROUND_TRUTH["hot_path"][HOT_PATH]
        # detection to the report that showed it (the controller's arrival times); the
        # bench's own look every window rounds it up to its next look (second figure)
        arrivals = arrival_snapshots(db, f"bench-{name}") if db.exists() else run.snapshots
        table[name]["_run"] = {
            "hot_path_detect_s": detection_time(arrivals, onset, hot_share) if onset else None,
            "hot_path_detect_s_by_looks": detection_time(run.snapshots, onset, hot_share)
            if onset else None,
            "sessions": len(run.session_ids),
            "params_changes": _params_changes(timelines[name]),
        }  # fmt: skip
    _relative_to_off(table)
    return {
        "settings": asdict(settings),
        "budget_cpu": BUDGET_CPU,
        "shape": SHAPE.name,
        "profile_read_lag_s": lag,
        "machine": machine_description(),
        "code": code_location(),
        "configurations": table,
        "ground_truth": GROUND_TRUTH,
    }


def _params_changes(rows: list[TimelineRow]) -> int:
    """Windows whose params differ from the window before (per agent)."""
    last: dict[str, dict[str, Any]] = {}
    changes = 0
    for row in rows:
        if row.agent in last and row.params and row.params != last[row.agent]:
            changes += 1
        if row.params:
            last[row.agent] = row.params
    return changes


def _relative_to_off(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    off = table.get("off", {})
    for phases in table.values():
        for phase, fig in phases.items():
            base = off.get(phase, {})
            for key in ("app_cpu_ms_per_request", "p50_ms", "p99_ms"):
                if fig.get(key) and base.get(key):
                    fig[key + "_vs_off"] = round(fig[key] / base[key], 3)


def machine_description() -> dict[str, Any]:
    """Where a benchmark ran: cores, CPU model, Python, platform."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cell(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def markdown_table(result: dict[str, Any]) -> str:
    """Every figure per configuration and phase, as markdown."""
    cols = [
        ("profiler CPU (core)", "profiler_cpu"),
        ("app CPU/req vs off", "app_cpu_ms_per_request_vs_off"),
        ("p50 vs off", "p50_ms_vs_off"), ("p99 vs off", "p99_ms_vs_off"),
        ("bytes/s", "bytes_per_s"), ("samples", "samples"),
        ("workload samples", "workload_samples"), ("L1 error", "profile_error_l1"),
        ("slow-request coverage", "slow_request_coverage"),
        ("marker coverage", "marker_coverage"), ("sample efficiency", "sample_efficiency"),
    ]  # fmt: skip
    lines = [
        "| configuration | phase | " + " | ".join(c for c, _ in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    detect = [
        "",
        "| configuration | hot path detected after (s) | params changes |",
        "|---|---|---|",
    ]
    for name, phases in result["configurations"].items():
        for phase, fig in phases.items():
            if phase.startswith("_"):
                continue
            lines.append(
                f"| {name} | {phase} | " + " | ".join(_cell(fig.get(k)) for _, k in cols) + " |"
            )
        run = phases.get("_run", {})
        detect.append(
            f"| {name} | {_cell(run.get('hot_path_detect_s'))} | {run.get('params_changes')} |"
        )
    tail = ["", verdict_markdown(result["verdict"])] if "verdict" in result else []
    if result.get("static_100_draws"):
        # the L1 bound is judged against one draw of static-100: how lucky it was
        tail += ["", draws_markdown(result["static_100_draws"])]
    return "\n".join(lines + detect + tail) + "\n"
