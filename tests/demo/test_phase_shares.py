"""``bench/phase_shares.py``: each function's share per phase, from a bench workdir.

A workdir made by hand as ``adaprof bench --workdir`` leaves it (the controller's
``reports`` rows, the service's span file with its ``/control/hot-path`` switches): the
windows land in the phase their middle falls in, stacks fold to their workload function,
and bad paths get a clear error.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.bench_scripts import load

TRUTH = {
    "steady": {"parse_catalog": 0.5, "price_items": 0.5},
    "hot_path": {"parse_catalog": 0.25, "price_items": 0.25, "compress_report": 0.5},
}
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "phase_shares.py"


def _workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    wd.mkdir()
    switch = '{{"name": "POST /control/hot-path", "startTimeUnixNano": "{}"}}\n'
    spans = switch.format(100 * 10**9) + switch.format(200 * 10**9)
    (wd / "spans-static-100.jsonl").write_text(spans)
    db = sqlite3.connect(wd / "adaprof.db")
    db.execute(
        "CREATE TABLE reports (id INTEGER PRIMARY KEY, service TEXT, window TEXT, stacks TEXT)"
    )
    rows = [
        (150.0, {"main;handler;parse_catalog": 3, "main;handler;price_items": 1, "main;idle": 9}),
        (198.0, {"main;handler;price_items": 4}),  # its middle (199.5) is still steady
        (250.0, {"main;handler;compress_report": 2, "main;handler;parse_catalog": 2}),
    ]
    for start, stacks in rows:
        window = {"window_start": start, "window_seconds": 3.0}
        db.execute(
            "INSERT INTO reports (service, window, stacks) VALUES (?, ?, ?)",
            ("bench-static-100", json.dumps(window), json.dumps(stacks)),
        )
    db.commit()
    db.close()
    return wd


def test_windows_land_in_their_phase_and_stacks_fold_to_their_function(tmp_path):
    shares = load("phase_shares").phase_shares(_workdir(tmp_path), TRUTH, "static-100")
    assert shares["steady"] == {
        "samples": 8.0,
        "shares": {"parse_catalog": 3 / 8, "price_items": 5 / 8},
    }
    assert shares["hot_path"]["samples"] == 4.0
    assert shares["hot_path"]["shares"] == {
        "parse_catalog": 0.5, "price_items": 0.0, "compress_report": 0.5,
    }  # fmt: skip


def test_a_workdir_without_a_database_is_refused_by_name(tmp_path):
    bench_json = tmp_path / "bench.json"
    bench_json.write_text(json.dumps({"ground_truth": TRUTH}))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "nowhere"), str(bench_json), "static-100"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "nowhere: no adaprof.db" in done.stderr
