"""``bench/attribution.py --json`` runs with small settings and reports both configurations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.bench_scripts import BENCH, run_json

pytestmark = pytest.mark.slow


def test_attribution_bench_reports_beacon_on_and_off():
    result = run_json(
        "attribution", "--rounds", "1", "--scales", "5", "--seconds", "2", timeout=150
    )
    rows = result["rows"]
    assert sorted(r["clock_beacon"] for r in rows) == [False, True]
    for row in rows:
        assert row["samples"] > 0, row
        assert 0.0 <= row["precision_median"] <= 1.0
    on = next(r for r in rows if r["clock_beacon"])
    assert on["calibrated_runs"].split("/")[0] != "0"  # the beacon placed the runs


def test_samples_per_move_compares_the_beacons_periods_and_refuses_zero():
    result = run_json(
        "attribution", "--rounds", "1", "--scales", "5", "--seconds", "2", "--rate", "50",
        "--mode", "cpu", "--samples-per-move", "1", "2", timeout=200,
    )  # fmt: skip
    periods = sorted(r["beacon_period_ms"] for r in result["rows"] if r["clock_beacon"])
    assert periods == [20.0, 40.0]  # one move a sample, one every other sample, at 50 Hz
    assert [r for r in result["rows"] if not r["clock_beacon"]]  # and the beacon off
    done = subprocess.run(
        [sys.executable, str(BENCH / "attribution.py"), "--samples-per-move", "0", "--rounds", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "must be 1 or more" in done.stderr
