"""``bench/attribution.py --json`` runs with small settings and reports both configurations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "attribution.py"

pytestmark = pytest.mark.slow


def test_attribution_bench_reports_beacon_on_and_off():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "1", "--scales", "5", "--seconds", "2",
         "--json"],
        capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    assert sorted(r["clock_beacon"] for r in rows) == [False, True]
    for row in rows:
        assert row["samples"] > 0, row
        assert 0.0 <= row["precision_median"] <= 1.0
    on = next(r for r in rows if r["clock_beacon"])
    assert on["calibrated_runs"].split("/")[0] != "0"  # the beacon placed the runs
