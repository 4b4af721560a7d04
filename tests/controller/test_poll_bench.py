"""bench/poll_load.py runs on a short setting and reports figures (the bench is a command)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.bench_scripts import BENCH, run_json


def test_poll_bench_short_run():
    rows = run_json("poll_load", "--agents", "20", "--seconds", "1", "--concurrency", "4")
    assert [(r["agents"], r["mode"]) for r in rows] == [(20, "static"), (20, "adaptive")]
    for row in rows:
        assert row["requests"] > 0 and row["rps"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_poll_bench_breaks_a_paced_poll_down():
    (row,) = run_json(
        "poll_load", "--agents", "20", "--modes", "adaptive", "--paced", "1", "--seconds", "2",
        "--breakdown",
    )  # fmt: skip
    assert row["errors"] == 0 and row["requests"] >= 20
    parts = row["breakdown"]
    assert set(parts) == {
        "before", "parse", "read", "credit", "decide", "queue", "write", "commit",
        "resume", "answer", "after", "handler", "client",
    }  # fmt: skip
    assert parts["commit"]["p50_ms"] > 0 and parts["decide"]["p50_ms"] > 0
    # the client's latency is its parts (every poll's parts add up to its latency, so
    # the slowest polls' means do too; each part is rounded to 1 µs by the controller)
    slowest = {k: v["slowest_1pct_mean_ms"] for k, v in parts.items()}
    around = ("before", "handler", "after")
    assert abs(sum(slowest[k] for k in around) - slowest["client"]) < 0.05
    inside = [k for k in slowest if k not in (*around, "client")]
    assert abs(sum(slowest[k] for k in inside) - slowest["handler"]) < 0.05
    assert row["p50_ms"] == pytest.approx(parts["client"]["p50_ms"])
    assert row["run_queue_s"] >= 0 and "gen 0" in row["gc_pauses"]
    assert row["cpu_busy_share"]["cpu0"] > 0 and 0 <= row["cpu0_others_share"] <= 1


def test_fsync_floor_bench_short_run():
    out = run_json("fsync_floor", "--count", "20")
    assert out["bytes"] > 4096  # one poll appends several WAL frames
    kinds = [r["kind"] for r in out["rows"]]
    assert kinds == [
        "append + fdatasync",
        "overwrite + fdatasync",
        "SQLite COMMIT (WAL, synchronous=FULL)",
    ]
    for r in out["rows"]:
        assert r["count"] == 20 and 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_gc_pause_bench_short_run():
    out = run_json("gc_pause", "--agents", "50", "--rounds", "1", "--repeat", "1")
    assert out["startup_objects"] > 10_000 and out["poll_objects"] > 0
    assert out["full_gc_ms_nothing_frozen"] > 0 and out["full_gc_ms_startup_frozen"] > 0


@pytest.mark.parametrize("args", [("--agents", "0"), ("--concurrency", "0"), ("--paced", "-1")])
def test_poll_bench_refuses_bad_settings_by_name(args: tuple[str, str]):
    # at once, naming the option (with --agents 0 it used to wait for ever)
    done = subprocess.run(
        [sys.executable, str(BENCH / "poll_load.py"), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and args[0] in done.stderr, done.stderr
