"""Calibrate the simulator from real processes: what a sample costs and yields.

Runs the insight-per-overhead benchmark (``adaprof bench``: the demo service under the
real agent, py-spy and controller, six configurations side by side) and reads, from its
static configurations, what the simulator needs and the controller's prior must not
provide:

- ``sample_yield``: workload samples per second per Hz of sampling rate, per core of
  process CPU (how many samples a rate buys on this kind of service);
- ``profiler_cpu``: measured profiler CPU by rate (checked against the cost model);
- ``app_cpu_per_request_vs_off``: the service's own CPU per request while profiling;
- ``attribution_bias``: static-100's L1 error beyond the sampling error of its sample
  count (``max(0, L1 − sqrt(2K/(πn)))``), the floor no sample count removes;
- ``segment_lag_s``: the mean delay before a params change shows in the samples
  (half a py-spy segment, the bench's ``SEGMENT_S``);
- ``demo_cpu_cores``: per phase, the demo service's own CPU with profiling off (the
  ``off`` configuration: CPU per request × requests per second), the load the
  simulator's ``demo`` scenario runs and the busy share its cost model reads;
- ``agent_cpu_per_span_s`` and ``capture_cpu_per_span_s`` (``--workdir``, the
  ``--workdir`` of an ``adaprof bench`` run): the agent's CPU beyond py-spy per span
  exported — every agent thread with profiling off (the ``off`` configuration's
  windows) — and what slow-span capture adds to it (the adaptive session's windows on
  a watch action: py-spy off, capture on, no reflex burst);
- ``reflex_delay_s`` and ``reflex_false_alarms_per_s`` at ``reflex_false_alarms_at_std``
  (``--workdir``): from the adaptive session's windows, how long after each of the run's
  phase changes (its ``POST /control/hot-path`` spans) the agent's change detector
  signalled a profile change (median), and its profile-change signals farther than
  20 s from any phase change per second of windows run at the catalog's reflex
  sensitivity (8 standard deviations);
- ``reflex_false_alarms_per_s_at_4std`` (``--timeline``, the older measure): from an adaptive run's
  timeline, the agent's change signals per second at ``burst_sensitivity`` 4 beyond the
  run's real phase changes.

With ``--profiler native`` (runs of ``adaprof bench --profiler native``) the figures are
the native profiler's world, written to ``bench/output/sim_calibration_native.json`` and
with ``--write`` to the packaged ``otel_adaprof/sim/calibration_native.json``; py-spy's
cost model does not price it, so two more figures are read:

- ``sampler_cores_fixed`` and ``sampler_cores_per_hz``: the process scope's CPU beyond
  profiling off, a fixed part while the sampler runs and a part per Hz (static-100's,
  static-10's and static-1's profiler CPU less ``off``'s, phase by phase, a
  least-squares line in the rate; ``sampler_fit`` says how well each rate fits it);
- ``requests_cores_per_hz_core`` (``--workdir``): the requests scope's part per Hz and
  per core of the service's own CPU, from the adaptive session's windows that sampled
  in that scope without a burst: their profiler CPU less the agent's other threads (the
  figures above, per span) and the fixed part, over rate × the service's own CPU
  (``process_cpu`` less the agent's in-process CPU);
- ``segment_lag_s`` is 0: the native sampler is a thread of the process, new params
  apply at its next tick and a window's close takes in all its samples.

Usage::

    .venv/bin/python bench/sim_calibration.py [--duration 120] [--write]
    .venv/bin/python bench/sim_calibration.py --timeline RUN/adaptive-report/timeline.json
    .venv/bin/python bench/sim_calibration.py --from-bench RUN/bench.json --write
    .venv/bin/python bench/sim_calibration.py --from-bench A.json B.json C.json --write
    .venv/bin/python bench/sim_calibration.py --from-bench A.json B.json --workdir RUN_A --write
    .venv/bin/python bench/sim_calibration.py --profiler native --from-bench A.json B.json \
        --workdir RUN_A RUN_B --write     # each --workdir that of the result in its place

(several results: each figure is their mean.)

prints the JSON, writes it to ``bench/output/sim_calibration.json``, and with
``--write`` also to the packaged ``otel_adaprof/sim/calibration.json`` the simulator reads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from otel_adaprof.demo.bench import BenchSettings, run_bench
from otel_adaprof.demo.bench_figures import phase_switches
from otel_adaprof.demo.phases import schedule
from otel_adaprof.demo.stack import SEGMENT_S
from otel_adaprof.reward import expected_l1

ROOT = Path(__file__).resolve().parent.parent
RATES = {"static-100": 100.0, "static-10": 10.0, "static-1": 1.0}
#: Functions of the demo's ground truth.
WORKLOAD_FUNCTIONS = 5


def sampler_per_hz(result: dict[str, Any], phases: dict[str, float]) -> dict[str, Any]:
    """The process scope's sampler CPU: each static configuration's profiler CPU less
    ``off``'s, phase by phase, fitted by a line in the rate (a fixed part while the
    sampler runs at all, and a part per Hz).

    >>> confs = {"off": {"a": {"profiler_cpu": 0.001}},
    ...          "static-100": {"a": {"profiler_cpu": 0.012}},
    ...          "static-10": {"a": {"profiler_cpu": 0.003}},
    ...          "static-1": {"a": {"profiler_cpu": 0.0021}}}
    >>> fit = sampler_per_hz({"configurations": confs}, {"a": 60.0})
    >>> round(fit["sampler_cores_fixed"], 6), round(fit["sampler_cores_per_hz"], 7)
    (0.001, 0.0001)
    >>> fit["sampler_fit"]["static-1"]
    1.0
    """
    confs = result["configurations"]
    points: dict[str, list[tuple[float, float]]] = {}
    for name, rate in RATES.items():
        for ph in phases:
            cpu = confs[name].get(ph, {}).get("profiler_cpu")
            off = confs["off"].get(ph, {}).get("profiler_cpu")
            if cpu is not None and off is not None:
                points.setdefault(name, []).append((rate, cpu - off))
    pairs = [xy for rows in points.values() for xy in rows]
    rates = {x for x, _y in pairs}
    if len(rates) < 2:
        return {}
    n = len(pairs)
    sx, sy = sum(x for x, _ in pairs), sum(y for _, y in pairs)
    sxx, sxy = sum(x * x for x, _ in pairs), sum(x * y for x, y in pairs)
    per_hz = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    fixed = max(0.0, (sy - per_hz * sx) / n)
    return {
        "sampler_cores_fixed": fixed,
        "sampler_cores_per_hz": per_hz,
        # each rate's measured extra CPU over the line's (1: on it)
        "sampler_fit": {
            name: round(statistics.fmean(y for _x, y in rows) / (fixed + per_hz * rows[0][0]), 3)
            for name, rows in points.items()
        },
    }


def calibrate(
    result: dict[str, Any], settings: BenchSettings, profiler: str = "py-spy"
) -> dict[str, Any]:
    """The simulator's calibration from one benchmark result (of ``profiler``'s world)."""
    phases = {p.name: p.duration_s for p in schedule(settings.load_s, settings.rate_rps)}
    confs = result["configurations"]
    per_rate: dict[str, dict[str, float | None]] = {}
    yields: list[float] = []
    for name, rate in RATES.items():
        conf = confs[name]
        rows = [(ph, conf[ph]) for ph in phases if ph in conf]
        cpu = [f["profiler_cpu"] for _, f in rows if f.get("profiler_cpu") is not None]
        workload_per_s = [f["workload_samples"] / phases[ph] for ph, f in rows]
        app = [f["app_cpu_ms_per_request_vs_off"] for _, f in rows
               if f.get("app_cpu_ms_per_request_vs_off")]  # fmt: skip
        per_rate[name] = {
            "rate_hz": rate,
            "profiler_cpu": statistics.fmean(cpu) if cpu else None,
            "workload_samples_per_s": statistics.fmean(workload_per_s),
            "app_cpu_per_request_vs_off": statistics.fmean(app) if app else None,
        }
        # process CPU of the workload per phase: requests × CPU per request (off's)
        for ph, f in rows:
            off = confs["off"].get(ph, {})
            if off.get("app_cpu_ms_per_request") and f.get("requests_ok"):
                cores = off["app_cpu_ms_per_request"] / 1000.0 * f["requests_ok"] / phases[ph]
                if cores > 0:
                    yields.append(f["workload_samples"] / phases[ph] / rate / cores)
    bias: list[float] = []
    for ph in phases:
        f = confs["static-100"].get(ph, {})
        if f.get("profile_error_l1") is not None and f.get("workload_samples"):
            noise = expected_l1(f["workload_samples"], WORKLOAD_FUNCTIONS)
            bias.append(max(0.0, f["profile_error_l1"] - noise))
    demo_cpu: dict[str, float] = {}
    for ph, seconds in phases.items():
        off = confs["off"].get(ph, {})
        if off.get("app_cpu_ms_per_request") and off.get("requests_ok"):
            cores = off["app_cpu_ms_per_request"] / 1000.0 * off["requests_ok"] / seconds
            demo_cpu[ph] = round(cores, 4)
    native = (
        {**sampler_per_hz(result, phases), "segment_lag_s": 0.0} if profiler == "native" else {}
    )
    return {
        "measured_at_unix": round(time.time()),
        "command": f"bench/sim_calibration.py --duration {settings.duration_s:g}",
        "profiler": profiler,
        "settings": {
            "duration_s": settings.duration_s,
            "rate_rps": settings.rate_rps,
            "window_s": settings.window_s,
        },
        "machine": result.get("machine"),
        "per_rate": per_rate,
        "sample_yield": statistics.median(yields) if yields else None,
        "attribution_bias": statistics.fmean(bias) if bias else None,
        "segment_lag_s": SEGMENT_S / 2.0,
        "demo_cpu_cores": demo_cpu,
        **native,
    }


def mean_calibration(calibs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of several results' calibrations (figure by figure; absent ones skipped).

    >>> mean_calibration([{"sample_yield": 1.0, "demo_cpu_cores": {"a": 0.1}},
    ...                   {"sample_yield": 2.0, "demo_cpu_cores": {"a": 0.3}}])
    {'sample_yield': 1.5, 'demo_cpu_cores': {'a': 0.2}}
    """
    out = dict(calibs[0])
    for key in ("sample_yield", "attribution_bias", "sampler_cores_fixed", "sampler_cores_per_hz"):
        values = [c[key] for c in calibs if c.get(key) is not None]
        if values:
            out[key] = statistics.fmean(values)
    if "per_rate" in out:
        out["per_rate"] = {
            name: {
                field: (statistics.fmean(vals) if (vals := [
                    c["per_rate"][name][field] for c in calibs
                    if c.get("per_rate", {}).get(name, {}).get(field) is not None]) else None)
                for field in row
            }
            for name, row in calibs[0].get("per_rate", {}).items()
        }  # fmt: skip
    fits = [c["sampler_fit"] for c in calibs if c.get("sampler_fit")]
    if fits:
        out["sampler_fit"] = {
            name: round(statistics.fmean(f[name] for f in fits if name in f), 3) for name in fits[0]
        }
    phases = list(dict.fromkeys(ph for c in calibs for ph in c.get("demo_cpu_cores", {})))
    out["demo_cpu_cores"] = {
        ph: round(statistics.fmean(c["demo_cpu_cores"][ph] for c in calibs
                                   if ph in c.get("demo_cpu_cores", {})), 4)
        for ph in phases
    }  # fmt: skip
    return out


def _session_windows(workdir: Path, service: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(params it ran under, window)`` of every report a bench run's controller stored
    for ``service`` (``WORKDIR/adaprof.db``), in the order they came."""
    import sqlite3

    db = sqlite3.connect(f"file:{workdir / 'adaprof.db'}?mode=ro", uri=True)
    try:
        params = {
            v: json.loads(p) or {}
            for v, p in db.execute(
                "SELECT config_version, params FROM decisions WHERE service = ?", (service,)
            )
        }
        rows = db.execute(
            "SELECT config_version, window FROM reports WHERE service = ? ORDER BY id",
            (service,),
        ).fetchall()
    finally:
        db.close()
    return [(params.get(version) or {}, json.loads(raw)) for version, raw in rows]


def agent_threads(workdir: Path, result: dict[str, Any]) -> dict[str, float]:
    """The agent's CPU per exported span beyond py-spy, read from the windows a bench
    run's controller stored (``WORKDIR/adaprof.db``; ``result`` is that run's
    ``bench.json``): profiling off (``bench-off``), what capture adds on the adaptive
    session's watch windows (no py-spy, capture on, no reflex burst), and the demo's
    spans per request (the ``off`` windows' spans over its requests)."""

    def per_span(windows: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, float]:
        cpu = sum(w.get("profiler_cpu_seconds") or 0.0 for _p, w in windows)
        spans = sum((w.get("spans_per_s") or 0.0) * w["window_seconds"] for _p, w in windows)
        return cpu, spans

    off = _session_windows(workdir, "bench-off")
    watch = [
        (p, w)
        for p, w in _session_windows(workdir, "bench-adaptive")
        if p.get("sampling_interval_ms") == 0
        and (p.get("slow_span_interval_ms") or 0) > 0
        and not w.get("burst_seconds")
    ]
    (cpu, spans), (wcpu, wspans) = per_span(off), per_span(watch)
    off_windows, watch_windows = len(off), len(watch)
    if not spans or not wspans:
        raise SystemExit(f"{workdir}: no off windows or no watch windows with spans")
    base = cpu / spans
    requests = sum(
        f.get("requests_ok") or 0
        for k, f in result["configurations"]["off"].items()
        if not k.startswith("_")
    )
    return {
        "demo_spans_per_request": round(spans / requests, 3) if requests else None,
        "agent_cpu_per_span_s": round(base, 8),
        "capture_cpu_per_span_s": round(max(0.0, wcpu / wspans - base), 8),
        "agent_threads_windows": off_windows,
        "capture_windows": watch_windows,
    }


def requests_scope_cost(
    workdir: Path, threads: dict[str, Any], fixed: float = 0.0
) -> dict[str, float]:
    """The requests scope's sampler CPU per Hz per core of the service's own CPU, from
    the adaptive session's windows in a bench run's ``WORKDIR/adaprof.db`` that sampled
    in that scope without a burst: their profiler CPU less the agent's other threads
    (``threads``: :func:`agent_threads`' figures per span) and the sampler's ``fixed``
    part (cores, the process scope's), over rate × own CPU."""
    base = float(threads["agent_cpu_per_span_s"])
    capture = float(threads["capture_cpu_per_span_s"])
    cpu = work = 0.0
    windows = 0
    for params, w in _session_windows(workdir, "bench-adaptive"):
        interval = params.get("sampling_interval_ms") or 0
        if params.get("sample_scope") != "requests" or interval <= 0 or w.get("burst_seconds"):
            continue
        seconds = float(w["window_seconds"])
        spent = float(w.get("profiler_cpu_seconds") or 0.0)
        per_span = base + (capture if (params.get("slow_span_interval_ms") or 0) > 0 else 0.0)
        own = max(0.0, float(w.get("process_cpu") or 0.0) - spent / seconds)
        cpu += spent - (per_span * float(w.get("spans_per_s") or 0.0) + fixed) * seconds
        work += 1000.0 / interval * own * seconds
        windows += 1
    if not work:
        raise SystemExit(f"{workdir}: no adaptive windows sampling in the requests scope")
    return {"requests_cores_per_hz_core": cpu / work, "requests_scope_windows": windows}


def mean_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figure by figure, the mean of several runs' (``None`` ones skipped; counts summed).

    >>> mean_figures([{"a": 1.0, "b": None, "c_windows": 3}, {"a": 2.0, "b": 4.0, "c_windows": 5}])
    {'a': 1.5, 'b': 4.0, 'c_windows': 8}
    """
    out: dict[str, Any] = {}
    for key in rows[0]:
        values = [r[key] for r in rows if r.get(key) is not None]
        if key.endswith("_windows") or key.endswith("_seen"):
            out[key] = sum(values)
        elif all(isinstance(v, (int, float)) for v in values) and values:
            out[key] = statistics.fmean(values)
        else:
            out[key] = values[0] if values else None
    return out


#: A profile-change signal this long after a phase change is the change's, not a false alarm.
CHANGE_WINDOW_S = 20.0
#: The catalog's reflex sensitivity (``burst_sensitivity`` of its reflex actions).
CATALOG_SENSITIVITY = 8.0


def reflex_signals(workdir: Path) -> dict[str, float | None]:
    """The agent's change detector in a bench run's adaptive session: its delay after
    the run's phase changes and its false alarms at the catalog's sensitivity."""
    # the phase changes: every hot-path switch after the first (which sets the steady
    # phase at the start)
    changes = phase_switches(workdir / "spans-adaptive.jsonl")[1:]
    delays: dict[float, float] = {}
    alarms, seconds = 0, 0.0
    for params, w in _session_windows(workdir, "bench-adaptive"):
        at_catalog = (params.get("burst_sensitivity") or 0.0) >= CATALOG_SENSITIVITY
        seconds += w["window_seconds"] if at_catalog else 0.0
        signals = w.get("change_signals") or {}
        if not signals.get("profile_changes"):
            continue
        fired = signals["last_profile_change_unix"]
        near = [c for c in changes if 0.0 <= fired - c <= CHANGE_WINDOW_S]
        if near:
            delays.setdefault(near[0], fired - near[0])
        elif at_catalog:
            alarms += 1
    return {
        "reflex_delay_s": round(statistics.median(delays.values()), 3) if delays else None,
        "reflex_false_alarms_per_s": round(alarms / seconds, 6) if seconds else None,
        "reflex_false_alarms_at_std": CATALOG_SENSITIVITY,
        "reflex_phase_changes_seen": len(delays),
    }


def false_alarms(timeline: dict[str, Any], real_changes: int = 4) -> dict[str, float]:
    """Change signals per second at ``burst_sensitivity`` 4 beyond ``real_changes``."""
    windows = [w for w in timeline["windows"]
               if (w.get("params") or {}).get("burst_sensitivity") == 4]  # fmt: skip
    fired = sum(1 for w in windows if ((w.get("state") or {}).get("change_signals") or {})
                .get("changes", 0) > 0)  # fmt: skip
    seconds = sum((w.get("state") or {}).get("window_seconds", 0.0) for w in windows)
    return {
        "windows": len(windows),
        "windows_with_a_signal": fired,
        "reflex_false_alarms_per_s_at_4std": max(0, fired - real_changes) / seconds
        if seconds
        else 0.0,
    }


def main() -> None:
    """Run the benchmark, print and write the calibration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
    parser.add_argument("--write", action="store_true", help="also write the packaged file")
    parser.add_argument("--timeline", type=Path, help="only the false-alarm rate, from this")
    parser.add_argument(
        "--workdir",
        type=Path,
        nargs="+",
        help="adaprof bench --workdirs, whose results are the first --from-bench files in "
        "the same order: also the agent's CPU per span (agent threads, capture), the "
        "reflex's delay and false alarms and (native) the requests scope's cost; the mean",
    )
    parser.add_argument(
        "--profiler",
        choices=("py-spy", "native"),
        default="py-spy",
        help="the profiler the runs ran (adaprof bench --profiler): which world's file",
    )
    parser.add_argument(
        "--from-bench", type=Path, nargs="+", help="bench results already measured (mean)"
    )
    args = parser.parse_args()
    if args.timeline is not None:
        print(json.dumps(false_alarms(json.loads(args.timeline.read_text())), indent=1))
        return
    settings = BenchSettings(duration_s=args.duration)
    if args.from_bench is not None:
        calibs = []
        for path in args.from_bench:
            result = json.loads(path.read_text())
            calibs.append(calibrate(result, BenchSettings(**result["settings"]), args.profiler))
        calib = mean_calibration(calibs)
        files = " ".join(str(p) for p in args.from_bench)
        calib["command"] = (
            f"bench/sim_calibration.py --profiler {args.profiler} --from-bench {files} --write"
        )
    else:
        if args.profiler != "py-spy":
            parser.error("--profiler native reads runs already made: give --from-bench")
        with tempfile.TemporaryDirectory(prefix="adaprof-calib-") as tmp:
            result = run_bench(settings, Path(tmp) / "out")
        calib = calibrate(result, settings)
    if args.workdir is not None:
        if args.from_bench is None or len(args.workdir) > len(args.from_bench):
            parser.error("each --workdir needs its run's result in the same place of --from-bench")
        missing = [str(w) for w in args.workdir if not (w / "adaprof.db").is_file()]
        if missing:
            parser.error(f"no controller database (adaprof.db) in --workdir {', '.join(missing)}")
        rows = []
        for workdir, path in zip(args.workdir, args.from_bench, strict=False):
            threads = agent_threads(workdir, json.loads(path.read_text()))
            row = {**threads, **reflex_signals(workdir)}
            if args.profiler == "native":
                fixed = float(calib.get("sampler_cores_fixed") or 0.0)
                row.update(requests_scope_cost(workdir, threads, fixed))
            rows.append(row)
        calib.update(mean_figures(rows))
        calib["command"] += " --workdir " + " ".join(str(w) for w in args.workdir)
    text = json.dumps(calib, indent=1)
    print(text)
    suffix = "" if args.profiler == "py-spy" else f"_{args.profiler}"
    out = ROOT / "bench" / "output" / f"sim_calibration{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    if args.write:
        packaged = ROOT / "otel_adaprof" / "sim" / f"calibration{suffix}.json"
        old = json.loads(packaged.read_text()) if packaged.exists() else {}
        separately = (  # measured separately (--timeline, --workdir)
            "reflex_false_alarms_per_s_at_4std",
            "reflex_false_alarms_source",
            "agent_cpu_per_span_s",
            "capture_cpu_per_span_s",
            "demo_spans_per_request",
            "reflex_delay_s",
            "reflex_false_alarms_per_s",
            "reflex_false_alarms_at_std",
        )
        for key in separately:
            if key in old and key not in calib:
                calib[key] = old[key]
        packaged.write_text(json.dumps(calib, indent=1) + "\n")


if __name__ == "__main__":
    main()
