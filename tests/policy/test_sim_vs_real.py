"""The simulator against the real benchmark's committed runs: the simulated demo service
costs what the real one cost, configuration by configuration, and orders the
configurations by CPU, by profile error and by detection delay as every real run did
(``bench/sim_vs_real.py``; the runs are session 28's, ``bench/output/bench_s28_seed*.json``).

Before session 29 the simulated service paid py-spy's cost as if always busy (the cost
fit's loaded line), ran at 5 ms of CPU per request and counted 15 us of agent CPU per
span: static-100 cost 1.55x the real, static-10 1.42x (static-1 1.31x), and the CPU test
failed for those two."""

from __future__ import annotations

import json

import pytest

from tests.support.bench_scripts import BENCH, load

RUNS = [BENCH / "output" / f"bench_s28_seed{k}.json" for k in (1, 2, 3)]


@pytest.fixture(scope="module")
def compared():
    script = load("sim_vs_real")
    results = [json.loads(p.read_text()) for p in RUNS]
    sim = script.simulated(1.0, seeds=2, budget_cpu=results[0]["budget_cpu"])
    runs = [script.measured(r) for r in results]
    return script, sim, runs, script.mean_measured(runs)


@pytest.mark.parametrize("name", ["static-100", "static-10", "static-1", "heuristic", "adaptive"])
def test_the_simulated_cpu_is_within_a_quarter_of_the_real(compared, name):
    _script, sim, _runs, real = compared
    ratio = sim[name]["cpu"] / real[name]["cpu"]
    figures = f"{name}: simulated {sim[name]['cpu']:.4f}, real {real[name]['cpu']:.4f}"
    assert 0.75 <= ratio <= 1 / 0.75, figures


@pytest.mark.parametrize("key", ["cpu", "l1_mean", "detect_s"])
def test_no_pair_is_ordered_against_every_real_run(compared, key):
    script, sim, runs, _real = compared
    pairs = script.pair_agreement(sim, runs, key)
    assert not pairs["disagree"], pairs
    assert len(pairs["agree"]) >= 6  # of 10 pairs; the rest ties


def test_the_packaged_calibration_is_the_measured_one():
    # every figure bench/sim_calibration.py wrote is the one the simulator reads (the
    # packaged file also keeps the older 4-std false-alarm figure, measured separately)
    measured = json.loads((BENCH / "output" / "sim_calibration.json").read_text())
    packaged = json.loads((BENCH.parent / "otel_adaprof" / "sim" / "calibration.json").read_text())
    assert {k: packaged.get(k) for k in measured} == measured
