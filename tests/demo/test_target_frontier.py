"""What the benchmark's L1 bound asks, from a run's own static-100 figures:
``bench_verdict.static_draws`` (printed by ``adaprof bench``) and
``bench/target_frontier.py`` (what that costs in CPU)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from otel_adaprof.demo.bench_verdict import draws_markdown, static_draws
from otel_adaprof.demo.ground_truth import GROUND_TRUTH, sampling_l1
from tests.support.bench_scripts import BENCH, load

frontier = load("target_frontier")


def _ideal_l1(shares: dict[str, float], samples: int, rng: random.Random) -> float:
    names, weights = list(shares), list(shares.values())
    counts = dict.fromkeys(names, 0)
    for name in rng.choices(names, weights, k=samples):
        counts[name] += 1
    return sum(abs(counts[n] / samples - shares[n]) for n in names)


@pytest.mark.parametrize("phase,samples", [("steady", 400), ("hot_path", 1000)])
def test_sampling_l1_is_the_expected_l1_of_ideal_sampling(phase, samples):
    shares = {k: v for k, v in GROUND_TRUTH[phase].items() if v > 0}
    rng = random.Random(7)
    draws = [_ideal_l1(shares, samples, rng) for _ in range(600)]
    mean = sum(draws) / len(draws)
    assert sampling_l1(samples, shares) == pytest.approx(mean, rel=0.06)


def _run(phase: str, samples: int, l1: float, cpu: float = 0.04) -> dict:
    fig = {"workload_samples": samples, "profile_error_l1": l1, "profiler_cpu": cpu}
    return {"settings": {"phase_scale": 1.0}, "configurations": {"static-100": {phase: fig}}}


def test_a_static_draw_below_its_own_noise_leaves_no_room():
    noise = sampling_l1(600, GROUND_TRUTH["steady"])
    run = _run("steady", 600, 0.4 * noise)
    draw = static_draws(run)["steady"]
    # 1.5 x a lucky draw is below what 600 ideal samples reach on average
    assert draw["floor"] == 0.0 and draw["share_needed"] == 1.0
    out = frontier.frontier(run, 0.0075)
    assert out["phases"]["steady"]["watch_max"] is None and out["cpu_ratio_at_watch"] == 1.0
    assert "| steady | " in draws_markdown(static_draws(run))


def test_a_floor_leaves_room_and_the_watch_limit_meets_the_cpu_bound():
    noise = sampling_l1(2000, GROUND_TRUTH["hot_path"])
    run = _run("hot_path", 2000, 2.0 * noise)
    draw = static_draws(run)["hot_path"]
    assert 0 < draw["floor"] < draw["l1"] and 0 < draw["share_needed"] < 0.5
    limit = frontier.frontier(run, 0.0)["watch_max"]
    assert limit is not None and limit > 0
    # at the watch limit the phase costs exactly the CPU bound
    assert frontier.frontier(run, limit)["cpu_ratio_at_watch"] == pytest.approx(0.5, abs=0.002)


def test_prints_a_committed_run_and_refuses_what_is_not_one(tmp_path):
    run = BENCH / "output" / "bench_s21_seed1.json"
    out = subprocess.run(
        [sys.executable, str(BENCH / "target_frontier.py"), str(run), "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout)["bench_s21_seed1.json"]
    assert set(result["phases"]) == set(GROUND_TRUTH) and result["cpu_bound"] == 0.5
    # static-100's steady phase (L1 0.033 from 739 samples, below the 0.048 of ideal
    # sampling): another configuration would need 94 % of its samples
    assert result["phases"]["steady"]["fraction_needed"] == pytest.approx(0.938, abs=0.002)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"configurations": {}}))
    refused = subprocess.run(
        [sys.executable, str(BENCH / "target_frontier.py"), str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "not an adaprof bench JSON output" in refused.stderr


def test_adaptive_at_its_own_count_is_judged_against_the_floor_and_the_scaled_noise():
    """Adaptive's samples in a phase read as well as static-100's when its L1 is what
    that many of them give: ``√(floor² + noise²)``, the noise scaled by ``√(n_s / n)``
    (excess 1); twice that is an excess of 2."""
    noise = sampling_l1(1600, GROUND_TRUTH["hot_path"])
    run = _run("hot_path", 1600, 1.25 * noise)
    draw = static_draws(run)["hot_path"]
    expected = math.hypot(draw["floor"], draw["noise"] * 2.0)  # a quarter of the samples
    for l1, excess in ((expected, 1.0), (2.0 * expected, 2.0)):
        fig = {"workload_samples": 400, "profile_error_l1": l1, "profiler_cpu": 0.01}
        run["configurations"]["adaptive"] = {"hot_path": fig}
        phase = frontier.frontier(run, 0.0045)["phases"]["hot_path"]
        assert phase["adaptive_samples"] == 400
        assert phase["adaptive_expected_l1"] == pytest.approx(expected, abs=1e-4)
        assert phase["adaptive_excess"] == pytest.approx(excess, abs=0.01)
    # a run without adaptive (or a phase without its samples) has no excess to show
    del run["configurations"]["adaptive"]
    phase = frontier.frontier(run, 0.0045)["phases"]["hot_path"]
    assert phase["adaptive_expected_l1"] is None and phase["adaptive_excess"] is None
    assert "| adaptive samples | adaptive L1 |" in frontier.table("run", frontier.frontier(run, 0))
