"""bench/poll_load.py runs on a short setting and reports figures (the bench is a command)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "poll_load.py"


def test_poll_bench_short_run():
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--agents",
            "20",
            "--seconds",
            "1",
            "--concurrency",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["agents"], r["mode"]) for r in rows] == [(20, "static"), (20, "adaptive")]
    for row in rows:
        assert row["requests"] > 0 and row["rps"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
