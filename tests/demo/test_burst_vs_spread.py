"""bench/burst_vs_spread.py: a phase read in one burst, spread, and as an iid draw."""

from __future__ import annotations

import random
import subprocess
import sys

from tests.support.bench_scripts import BENCH, load

SCRIPT = load("burst_vs_spread")


def _windows(shares_by_window: list[dict[str, int]]) -> list:
    return [
        (3.0 * i, 3.0 * i + 3.0, {f"main;{name}": float(n) for name, n in shares.items()})
        for i, shares in enumerate(shares_by_window)
    ]


def test_a_drifting_phase_makes_a_burst_worse_than_the_same_samples_spread():
    # the first half of the phase runs only parse_catalog, the second only price_items:
    # a burst sees one half, spread windows and an iid draw see both
    half = [{"parse_catalog": 30}] * 10 + [{"price_items": 30}] * 10
    got = SCRIPT.compare(_windows(half), "steady", 5, 20, random.Random(1))
    assert got["windows"] == 20 and got["burst_samples"] == 150
    assert got["burst_l1"] >= 1.5 * max(got["spread_l1"], got["iid_l1"])


def test_a_steady_phase_reads_the_same_in_a_burst_spread_or_drawn():
    even = [{"parse_catalog": 3, "price_items": 4, "compute_tax": 1, "render_invoice": 2}] * 20
    got = SCRIPT.compare(_windows(even), "steady", 5, 20, random.Random(1))
    assert got["burst_l1"] == got["spread_l1"] == 0.0
    assert got["iid_l1"] < 0.2  # a draw of 50 samples: noise only
    assert SCRIPT.compare(_windows(even[:9]), "steady", 5, 20, random.Random(1)) is None


def test_a_folder_that_is_not_a_bench_workdir_is_refused(tmp_path):
    out = subprocess.run(
        [sys.executable, str(BENCH / "burst_vs_spread.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "no adaprof.db" in out.stderr
