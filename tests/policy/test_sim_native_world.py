"""The native profiler's simulated world (``adaprof sim --profiler native``): its costs
are what the benchmark's native runs measured, its agent says it runs the native
profiler, and its samples come in at each window's close, not by py-spy's segments."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest

from otel_adaprof.controller.policy.static import StaticPolicy
from otel_adaprof.params import Params
from otel_adaprof.protocol import ProfilerBackend
from otel_adaprof.sim.agent import SimulatedAgent
from otel_adaprof.sim.calibration import calibration
from otel_adaprof.sim.compare import BENCH_STATICS
from otel_adaprof.sim.physics import sampler_cores
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS, demo_scenario

from .test_cli import _run


def _measured() -> dict[str, dict[str, float]]:
    """The packaged native calibration's own record of the runs it came from."""
    text = resources.files("otel_adaprof.sim").joinpath("calibration_native.json").read_text()
    return json.loads(text)["per_rate"]


@pytest.mark.parametrize("name", ["static-100", "static-10", "static-1"])
def test_the_native_worlds_static_configurations_cost_what_the_runs_measured(name):
    """Each static configuration of ``adaprof bench`` costs in the native world what it
    cost in the native runs the calibration was read from (every agent thread, the
    mean over the run's phases), within 25 %: the fitted line, the agent's other threads
    per span and the demo's CPU per phase add up to the measured figure."""
    native = calibration("native")
    scenario = demo_scenario(calib=native)
    runs = [run_policy(StaticPolicy(), scenario, initial=BENCH_STATICS[name], seed=seed,
                       calib=native) for seed in (1, 2)]  # fmt: skip
    simulated = statistics.fmean(r.mean_cpu for r in runs)
    measured = _measured()[name]["profiler_cpu"]
    assert 0.75 < simulated / measured < 1.25, (simulated, measured)


def test_the_requests_scope_costs_less_on_the_demo_and_never_more_than_the_process():
    native = calibration("native")
    demo = demo_scenario(calib=native).phases[0]  # 0.07 of a core
    process = Params(sampling_interval_ms=10)
    requests = process.with_changes(sample_scope="requests")
    agent = SimulatedAgent("demo", np.random.default_rng(1), window_s=3.0, calib=native)
    assert agent.identity.profiler_backend is ProfilerBackend.NATIVE

    def cores(params: Params, phase=demo, calib=native) -> float:
        return sampler_cores(params, phase, 100.0, calib)

    assert cores(requests) < 0.6 * cores(process)
    busy = replace(demo, cpu_load=5.0)  # a request open all the time
    assert cores(requests, busy) == cores(process, busy)
    # py-spy's world has no scope: the cost model's figure for both
    assert cores(requests, calib=calibration()) == cores(process, calib=calibration())


def test_a_native_windows_samples_come_in_at_its_close():
    """At 10 Hz py-spy's first window reports nothing (its 10 s segment is in flight);
    the native agent's first window reports what it took, and every window about the
    same (no segment's worth at once)."""
    phase = SCENARIOS["hot-path"].phases[0]  # half a core: about 9 samples a window
    params = Params(sampling_interval_ms=100)
    counts = {}
    for profiler in ("py-spy", "native"):
        agent = SimulatedAgent("demo", np.random.default_rng(3), window_s=3.0,
                               calib=calibration(profiler))  # fmt: skip
        reports = [agent.report(params, 1, phase, 3.0 * k) for k in range(8)]
        counts[profiler] = [r.stacks.total_samples if r.stacks else 0 for r in reports]
    assert counts["py-spy"][0] == 0 and max(counts["py-spy"]) > 2 * statistics.fmean(
        counts["py-spy"]
    )
    assert counts["native"][0] > 0 and min(counts["native"]) > 0


def test_sim_runs_the_native_world_from_the_command_line(tmp_path, pretrained_model):
    model = tmp_path / "model.vw"
    model.write_bytes(pretrained_model)
    args = ("sim", "--seeds", "1", "--json", "--scenario", "demo", "--windows", "30")
    proc = _run(*args, "--model", str(model), "--profiler", "native")
    assert proc.returncode in (0, 1), proc.stderr
    native = {p["name"]: p for p in json.loads(proc.stdout)["scenarios"][0]["policies"]}
    proc = _run(*args, "--model", str(model))
    pyspy = {p["name"]: p for p in json.loads(proc.stdout)["scenarios"][0]["policies"]}
    # the native sampler's static-100 costs a fraction of py-spy's, as measured
    assert native["static-100"]["cpu"] < 0.5 * pyspy["static-100"]["cpu"]
    bad = _run("sim", "--profiler", "austin")
    assert bad.returncode == 2 and "'austin' is not one of" in bad.stderr
