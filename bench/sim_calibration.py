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
- ``reflex_false_alarms_per_s_at_4std`` (``--timeline``): from an adaptive run's
  timeline, the agent's change signals per second at ``burst_sensitivity`` 4 beyond the
  run's real phase changes.

Usage::

    .venv/bin/python bench/sim_calibration.py [--duration 120] [--write]
    .venv/bin/python bench/sim_calibration.py --timeline RUN/adaptive-report/timeline.json
    .venv/bin/python bench/sim_calibration.py --from-bench RUN/bench.json --write

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
from otel_adaprof.demo.phases import schedule
from otel_adaprof.demo.stack import SEGMENT_S
from otel_adaprof.reward import expected_l1

ROOT = Path(__file__).resolve().parent.parent
RATES = {"static-100": 100.0, "static-10": 10.0, "static-1": 1.0}
#: Functions of the demo's ground truth.
WORKLOAD_FUNCTIONS = 5


def calibrate(result: dict[str, Any], settings: BenchSettings) -> dict[str, Any]:
    """The simulator's calibration from one benchmark result."""
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
    return {
        "measured_at_unix": round(time.time()),
        "command": f"bench/sim_calibration.py --duration {settings.duration_s:g}",
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
    parser.add_argument("--from-bench", type=Path, help="a bench.json already measured")
    args = parser.parse_args()
    if args.timeline is not None:
        print(json.dumps(false_alarms(json.loads(args.timeline.read_text())), indent=1))
        return
    settings = BenchSettings(duration_s=args.duration)
    if args.from_bench is not None:
        result = json.loads(args.from_bench.read_text())
        settings = BenchSettings(**result["settings"])
    else:
        with tempfile.TemporaryDirectory(prefix="adaprof-calib-") as tmp:
            result = run_bench(settings, Path(tmp) / "out")
    calib = calibrate(result, settings)
    if args.from_bench is not None:
        calib["command"] = f"bench/sim_calibration.py --from-bench {args.from_bench} --write"
    text = json.dumps(calib, indent=1)
    print(text)
    out = ROOT / "bench" / "output" / "sim_calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    if args.write:
        packaged = ROOT / "otel_adaprof" / "sim" / "calibration.json"
        old = json.loads(packaged.read_text()) if packaged.exists() else {}
        for key in ("reflex_false_alarms_per_s_at_4std", "reflex_false_alarms_source"):
            if key in old:  # measured separately (--timeline)
                calib[key] = old[key]
        packaged.write_text(json.dumps(calib, indent=1) + "\n")


if __name__ == "__main__":
    main()
