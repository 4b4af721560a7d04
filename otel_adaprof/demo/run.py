"""One demo run: controller + instrumented service + phased load + adaptive session.

:func:`run_demo` is what ``adaprof demo`` runs; it returns a :class:`DemoResult` and
writes the report folder. All processes it starts are stopped before it returns,
also on Ctrl-C or SIGTERM.

Usage::

    >>> from otel_adaprof.demo.run import run_demo
    >>> result = run_demo(duration_s=30, out="adaprof-report")      # doctest: +SKIP
    >>> result.params_changes                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otel_adaprof.demo.bench_figures import detection_time, request_coverage, sampled_requests
from otel_adaprof.demo.budget import BUDGET_CPU
from otel_adaprof.demo.controller_client import ControllerClient, ControllerError, session_id_of
from otel_adaprof.demo.ground_truth import (
    GROUND_TRUTH,
    function_of,
    function_shares,
    l1_error,
    run_truth,
)
from otel_adaprof.demo.loadgen import CAPTURE_ENV, LoadGenerator, LoadResult
from otel_adaprof.demo.phases import SHAPE, Phase, schedule
from otel_adaprof.demo.processes import Children
from otel_adaprof.demo.report import write_report
from otel_adaprof.demo.stack import LONGEST_RUN_S, DemoStack
from otel_adaprof.demo.timeline import (
    TimelineRow,
    param_changes,
    parse_timeline,
    samples_in_by,
)
from otel_adaprof.demo.workload import HOT_PATH
from otel_adaprof.exporters.collapsed import parse_collapsed

#: The service name the demo's agent reports under.
SERVICE_NAME = "adaprof-demo"
#: Windows after a phase starts during which params changes are the expected reaction
#: (a burst, then a settle); changes later than that count as changes in a steady phase.
SETTLE_WINDOWS = 4


def steady_changes(
    changes: list[tuple[float, str, str]], phase_starts: list[float], window_s: float
) -> int:
    """Params changes more than :data:`SETTLE_WINDOWS` windows after the last phase start.

    >>> steady_changes([(1.0, "a", "b"), (30.0, "b", "c")], [0.0], 5.0)
    1
    """
    starts = sorted(phase_starts)
    settle = SETTLE_WINDOWS * window_s
    count = 0
    for t, _old, _new in changes:
        last = max((s for s in starts if s <= t), default=None)
        if last is None or t - last > settle:
            count += 1
    return count


def window_seconds_for(duration_s: float) -> float:
    """Agent window (poll interval): ~15 windows per run, between 1 and 5 s.

    >>> window_seconds_for(30), window_seconds_for(600)
    (2.0, 5.0)
    """
    return float(min(5.0, max(1.0, round(duration_s / 15.0))))


@dataclass
class DemoProgress:
    """What the live view shows, refreshed while the run goes on."""

    elapsed_s: float = 0.0
    duration_s: float = 0.0
    phase: str = ""
    rows: list[TimelineRow] = field(default_factory=list)
    #: Spans the local sink received so far (0 when spans go to ``--otlp-endpoint``).
    spans: int = 0
    #: Samples in the session profile so far, and those in named workload functions.
    samples: float = 0.0
    workload_samples: float = 0.0


@dataclass
class DemoResult:
    """Figures of a finished demo run, and where the report is."""

    session_id: str
    report_dir: Path
    windows: int
    params_changes: list[tuple[float, str, str]]
    changes_after_hot_path: int
    samples: float
    spans: int
    profile_error_l1: float
    load: dict[str, Any]
    phase_started_at: dict[str, float]
    files: list[Path]
    workload_samples: float = 0.0
    marker_spans: int = 0
    marker_spans_with_samples: int = 0
    span_samples: int = 0
    hot_path_detect_s: float | None = None
    steady_params_changes: int = 0
    slow_request_coverage: float | None = None
    slow_request_coverage_per_phase: dict[str, float | None] = field(default_factory=dict)
    truth: dict[str, float] = field(default_factory=dict)
    rows: list[TimelineRow] = field(default_factory=list)
    #: The session's profiler CPU budget (cores, on average over its horizon).
    budget_cpu: float = BUDGET_CPU

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "session_id": self.session_id,
            "shape": SHAPE.name,
            "report": str(self.report_dir),
            "windows": self.windows,
            "params_changes": len(self.params_changes),
            "params_changes_after_hot_path": self.changes_after_hot_path,
            "samples": self.samples,
            "workload_samples": self.workload_samples,
            "spans": self.spans,
            "marker_spans": self.marker_spans,
            "marker_spans_with_samples": self.marker_spans_with_samples,
            "span_samples": self.span_samples,
            "profile_error_l1_vs_run_truth": round(self.profile_error_l1, 4),
            "hot_path_detected_after_s": self.hot_path_detect_s,
            "params_changes_in_steady_phases": self.steady_params_changes,
            "slow_request_coverage": self.slow_request_coverage,
            "slow_request_coverage_per_phase": self.slow_request_coverage_per_phase,
            "profiler_cpu_budget": self.budget_cpu,
        }


def _safe_timeline(api: ControllerClient, session_id: str) -> list[TimelineRow]:
    try:
        return parse_timeline(api.timeline(session_id))
    except (OSError, ControllerError, ValueError):
        return []


def run_demo(
    duration_s: float = 180.0,
    out: str | Path = "adaprof-report",
    workdir: str | Path | None = None,
    otlp_endpoint: str | None = None,
    rate_rps: float = 20.0,
    on_progress: Callable[[DemoProgress], None] | None = None,
    budget_cpu_fraction: float = BUDGET_CPU,
    profiler: str = "auto",
) -> DemoResult:
    """Run the whole demo and write the report folder ``out``; ``profiler`` is the
    service's ``ADAPROF_PROFILER``."""
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="adaprof-demo-")
    folder = Path(workdir) if workdir else Path(tmp.name)  # type: ignore[union-attr]
    try:
        with Children() as kids:
            return _run(
                kids, folder, duration_s, Path(out), otlp_endpoint, rate_rps, on_progress,
                budget_cpu_fraction, profiler,
            )  # fmt: skip
    finally:
        if tmp is not None:
            tmp.cleanup()


def _run(
    kids: Children,
    folder: Path,
    duration_s: float,
    out: Path,
    otlp_endpoint: str | None,
    rate_rps: float,
    on_progress: Callable[[DemoProgress], None] | None,
    budget_cpu_fraction: float,
    profiler: str = "auto",
) -> DemoResult:
    window_s = window_seconds_for(duration_s)
    stack = DemoStack(kids, folder, poll_interval_s=window_s, otlp_endpoint=otlp_endpoint)
    api = stack.start_controller()
    stack.start_sink()
    port = stack.start_service(SERVICE_NAME, {**CAPTURE_ENV, "ADAPROF_PROFILER": profiler})
    session = api.open_session(
        {
            "service": SERVICE_NAME,
            "duration_s": max(duration_s + 60.0, 5.0),
            "mode": "adaptive",
            "budget": {"cpu_fraction": budget_cpu_fraction},
        }
    )
    session_id = session_id_of(session)
    phases = schedule(duration_s, rate_rps)
    progress = DemoProgress(duration_s=duration_s)

    def on_phase(phase: Phase) -> None:
        progress.phase = phase.name

    gen = LoadGenerator(port, phases, on_phase=on_phase)
    load: list[LoadResult] = []
    errors: list[BaseException] = []

    def drive() -> None:
        try:
            load.append(gen.run())
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    worker = threading.Thread(target=drive, name="demo-load", daemon=True)
    # (unix time, cumulative session profile): when the hot path showed up in it.
    snapshots: list[tuple[float, dict[str, int]]] = []
    t0 = time.monotonic()
    worker.start()
    try:
        while worker.is_alive():
            worker.join(1.0)
            progress.elapsed_s = time.monotonic() - t0
            progress.rows = _safe_timeline(api, session_id)
            snap = _safe_profile(api, session_id)
            if snap is not None:
                snapshots.append((time.time(), snap))
                progress.samples = sum(snap.values())
                progress.workload_samples = _workload_samples(snap)
            progress.spans = stack.sink.spans_written if stack.sink is not None else 0
            if on_progress is not None:
                on_progress(progress)
    finally:
        gen.stop()
        worker.join(10.0)
    if errors:
        raise RuntimeError(f"load generator failed: {errors[0]}") from errors[0]
    # Until the last samples reach the controller: a window ended after the load whose
    # report has every sample from before it (at most one more window and py-spy run).
    _wait_samples_in(api, session_id, time.time(), window_s + LONGEST_RUN_S + 0.5)
    with _suppress():
        api.stop_session(session_id)
    timeline = api.timeline(session_id)
    collapsed: dict[str, int] = {}
    with _suppress():  # a session without samples may have no profile to export
        collapsed = parse_collapsed(api.profile(session_id, "collapsed").decode(errors="replace"))
    snapshots.append((time.time(), dict(collapsed)))
    speedscope: Any = None
    with _suppress():
        speedscope = json.loads(api.profile(session_id, "speedscope"))
    # SIGTERM lets the agent flush its last spans before the sink closes.
    kids.stop(f"service-{SERVICE_NAME}")
    stack.stop_sink()
    rows = parse_timeline(timeline)
    changes = param_changes(rows)
    result_load = load[0] if load else LoadResult({}, {})
    hot_at = result_load.phase_started_at.get("hot_path", float("inf"))
    after = [c for c in changes if c[0] >= hot_at]
    shares = function_shares(collapsed)
    truth = run_truth({name: st.ok for name, st in result_load.per_phase.items()})
    spans = _span_stats(stack.spans_path)
    sampled = _sampled_requests(stack.spans_path)
    requests = result_load.requests
    everything = [replace(r, phase="run") for r in requests]
    detect = None
    if hot_at != float("inf"):
        detect = detection_time(snapshots, hot_at, GROUND_TRUTH["hot_path"][HOT_PATH])
    marks = [(t, name) for name, t in result_load.phase_started_at.items()]
    result = DemoResult(
        session_id=session_id,
        report_dir=out,
        windows=len(rows),
        params_changes=changes,
        changes_after_hot_path=len(after),
        samples=sum(collapsed.values()),
        spans=spans["spans"],
        profile_error_l1=l1_error(truth, shares),
        load=result_load.summary(),
        phase_started_at=result_load.phase_started_at,
        files=[],
        workload_samples=_workload_samples(collapsed),
        marker_spans=spans["markers"],
        marker_spans_with_samples=spans["markers_with_samples"],
        span_samples=spans["samples"],
        hot_path_detect_s=detect,
        steady_params_changes=steady_changes(
            changes, list(result_load.phase_started_at.values()), window_s
        ),
        slow_request_coverage=(
            request_coverage(everything, sampled, "run") if otlp_endpoint is None else None
        ),
        slow_request_coverage_per_phase={
            p.name: request_coverage(requests, sampled, p.name) for p in phases
        },
        truth=truth,
        rows=rows,
        budget_cpu=budget_cpu_fraction,
    )
    summary: dict[str, Any] = dict(result.summary())
    summary["truth"] = truth
    summary["truth_label"] = "whole run, by requests served per phase"
    summary["duration_s"] = duration_s
    summary["window_s"] = window_s
    summary["load"] = result.load
    summary["spans_to"] = otlp_endpoint or "spans.jsonl"
    result.files = write_report(
        out,
        timeline,
        collapsed,
        speedscope=speedscope if isinstance(speedscope, dict) else None,
        spans_file=stack.spans_path if otlp_endpoint is None else None,
        summary=summary,
        marks=marks,
    )
    return result


def _wait_samples_in(api: ControllerClient, session_id: str, t: float, timeout: float) -> None:
    """Until the session's timeline says every sample taken before ``t`` is in, at most
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if samples_in_by(_safe_timeline(api, session_id), t):
            return
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _safe_profile(api: ControllerClient, session_id: str) -> dict[str, int] | None:
    try:
        return parse_collapsed(api.profile(session_id, "collapsed").decode(errors="replace"))
    except (OSError, ControllerError, ValueError):
        return None


def _workload_samples(collapsed: Mapping[str, float]) -> float:
    """Samples whose stack is in one of the named workload functions."""
    return sum(n for stack, n in collapsed.items() if function_of(stack) is not None)


def _sampled_requests(path: Path) -> set[str]:
    """Request ids whose trace carries a stack sample (spans of the sink's file)."""
    if not path.exists():
        return set()
    spans = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                spans.append(json.loads(line))
            except ValueError:
                continue
    return sampled_requests(spans)


def _span_stats(path: Path) -> dict[str, int]:
    """Spans in the sink's file; marker spans; those carrying samples; their samples."""
    out = {"spans": 0, "markers": 0, "markers_with_samples": 0, "samples": 0}
    if not path.exists():
        return out
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            out["spans"] += 1
            try:
                span = json.loads(line)
            except ValueError:
                continue
            attrs = {a.get("key"): a.get("value", {}) for a in span.get("attributes", [])}
            if "adaprof.marker" not in attrs:
                continue
            out["markers"] += 1
            count = int(attrs.get("adaprof.sample_count", {}).get("intValue", 0) or 0)
            if count > 0:
                out["markers_with_samples"] += 1
                out["samples"] += count
    return out


class _suppress:
    """Ignore controller/network errors for best-effort calls."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> bool:
        return exc_type is not None and issubclass(exc_type, (OSError, ControllerError, ValueError))
