"""``bench/attribution.py --json`` runs with small settings and reports both configurations."""

from __future__ import annotations

import pytest

from tests.support.bench_scripts import run_json

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
