"""``adaprof bench --quick --duration 12 --json`` runs against the real controller and agents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import otel_adaprof
from otel_adaprof.cli import COMMANDS

from .test_demo_e2e import _agent_registered

ADAPROF = Path(sys.executable).with_name("adaprof")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("controller" not in COMMANDS,
                       reason="needs `adaprof controller` (issue 3), not registered yet"),
    pytest.mark.skipif(not _agent_registered(),
                       reason="needs the agent's opentelemetry entry points (issue 4)"),
]  # fmt: skip

FIGURES = ("profiler_cpu", "app_cpu_ms_per_request", "p50_ms", "p99_ms", "bytes_per_s",
           "samples", "profile_error_l1", "marker_coverage", "slow_request_coverage",
           "profile_error_l1_at_edges", "workload_samples_at_edges", "profile_from",
           "wall_skew_l1")  # fmt: skip


def test_quick_bench_prints_every_figure(tmp_path):
    # 12 s of load (the CLI's least; --quick alone is 24 s): every phase still runs, each
    # for 2.4-3.6 s; static-100 took 129 samples in steady + hot_path and covered every
    # slow request (one run, shared machine), the bounds below ask for 1 and for > 0
    done = subprocess.run(
        [str(ADAPROF), "bench", "--quick", "--duration", "12", "--json",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=140, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    # which code ran (a run from a copy of the tree must say it was the copy)
    assert result["code"]["package"] == str(Path(otel_adaprof.__file__).resolve().parent)
    assert "otel_adaprof from " in done.stderr
    configs = result["configurations"]
    assert list(configs) == ["off", "static-100", "static-10", "static-1", "heuristic", "adaptive"]
    for name, phases in configs.items():
        assert set(phases) == {"steady", "hot_path", "load_change", "hot_path_gone", "_run"}
        for phase, fig in phases.items():
            if phase != "_run":
                for key in FIGURES:
                    assert key in fig, (name, phase, key)
        assert "hot_path_detect_s" in phases["_run"]
    # profiling on costs samples, off takes none
    assert sum(configs["static-100"][p]["samples"] for p in ("steady", "hot_path")) > 0
    assert configs["off"]["steady"]["samples"] == 0
    # the workload's own spans give every phase its wall-time skew, profiled or not
    assert all(0 <= configs["off"][p]["wall_skew_l1"] <= 2 for p in ("steady", "hot_path"))
    # slow-request coverage joins every request sent to the spans by its id header: off
    # covers none, 100 Hz covers some (the join works end to end through the real SDK)
    assert all(configs["off"][p]["slow_request_coverage"] == 0 for p in ("steady", "hot_path"))
    assert max(configs["static-100"][p]["slow_request_coverage"] or 0
               for p in ("steady", "hot_path", "load_change")) > 0  # fmt: skip
    checks = result["verdict"]["adaptive"]["checks"]
    assert set(checks) == {"l1", "detection", "coverage", "cpu", "budget"}
    # the sessions' budget, kept on average over the run (or not), is judged and shown
    assert result["budget_cpu"] == 0.016 and result["verdict"]["adaptive"]["run_cpu"] > 0
    assert "run CPU ÷ budget" in (tmp_path / "out/bench.md").read_text()
    assert (tmp_path / "out/bench.json").exists() and (tmp_path / "out/bench.md").exists()
    # static-100's own draw per phase, under the verdict: its L1 against its sampling
    draws = result["static_100_draws"]
    assert draws and set(draws) <= {"steady", "hot_path", "load_change", "hot_path_gone"}
    assert all(0 < d["share_needed"] <= 1 and d["noise"] > 0 for d in draws.values()), draws
    assert "| static-100 in phase |" in (tmp_path / "out/bench.md").read_text()
    assert (tmp_path / "out/adaptive-report/index.html").exists()
