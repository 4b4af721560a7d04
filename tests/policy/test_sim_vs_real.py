"""The simulator against the real benchmark's committed runs: the simulated demo service
costs what the real one cost, configuration by configuration, and orders the
configurations by CPU, by profile error and by detection delay as every real run did
(``bench/sim_vs_real.py``), in py-spy's world (session 28's runs,
``bench/output/bench_s28_seed*.json``) and in the native profiler's (session 52's,
``bench/output/bench_s52_wakes_shop_seed*_native.json``).

Before session 29 the simulated service paid py-spy's cost as if always busy (the cost
fit's loaded line), ran at 5 ms of CPU per request and counted 15 us of agent CPU per
span: static-100 cost 1.55x the real, static-10 1.42x (static-1 1.31x), and the CPU test
failed for those two."""

from __future__ import annotations

import json

import pytest

from tests.support.bench_scripts import BENCH, load

#: Each world's runs: py-spy's (``calibration.json``, from session 28's runs: these are
#: they) and the native profiler's (``calibration_native.json``, from session 53's three
#: shop runs), the latter judged on three runs it was not calibrated from: session 52's
#: first round (the same service, agent and catalog, the accuracy target fixed in
#: samples).
RUNS = {
    "py-spy": [BENCH / "output" / f"bench_s28_seed{k}.json" for k in (1, 2, 3)],
    "native": [BENCH / "output" / f"bench_s52_wakes_shop_seed{k}_native.json" for k in (1, 2, 3)],
}


@pytest.fixture(scope="module", params=list(RUNS))
def compared(request):
    script = load("sim_vs_real")
    results = [json.loads(p.read_text()) for p in RUNS[request.param]]
    assert {r["settings"].get("profiler", "py-spy") for r in results} == {request.param}
    sim = script.simulated(
        1.0, seeds=2, budget_cpu=results[0]["budget_cpu"], profiler=request.param
    )
    runs = [script.measured(r) for r in results]
    return script, sim, runs, script.mean_measured(runs)


@pytest.mark.parametrize("name", ["static-100", "static-10", "static-1", "heuristic", "adaptive"])
def test_the_simulated_cpu_is_within_a_quarter_of_the_real(compared, name):
    _script, sim, _runs, real = compared
    ratio = sim[name]["cpu"] / real[name]["cpu"]
    figures = f"{name}: simulated {sim[name]['cpu']:.5f}, real {real[name]['cpu']:.5f}"
    assert 0.75 <= ratio <= 1 / 0.75, figures


@pytest.mark.parametrize("key", ["cpu", "l1_mean", "detect_s"])
def test_no_pair_is_ordered_against_every_real_run(compared, key):
    script, sim, runs, _real = compared
    pairs = script.pair_agreement(sim, runs, key)
    assert not pairs["disagree"], pairs
    assert len(pairs["agree"]) >= 6  # of 10 pairs; the rest ties


@pytest.mark.parametrize("world", ["", "_native"])
def test_the_packaged_calibration_is_the_measured_one(world):
    # every figure bench/sim_calibration.py wrote is the one the simulator reads (the
    # packaged py-spy file also keeps the older 4-std false-alarm figure, measured
    # separately)
    measured = json.loads((BENCH / "output" / f"sim_calibration{world}.json").read_text())
    packaged = BENCH.parent / "otel_adaprof" / "sim" / f"calibration{world}.json"
    assert {k: json.loads(packaged.read_text()).get(k) for k in measured} == measured
