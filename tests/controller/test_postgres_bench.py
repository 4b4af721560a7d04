"""bench/poll_load.py on PostgreSQL with two replicas: a short run reports its figures."""

from __future__ import annotations

from tests.support.bench_scripts import run_json


def test_poll_bench_on_postgresql_with_two_replicas(postgres_url: str):
    rows = run_json(
        "poll_load", "--agents", "20", "--seconds", "1", "--concurrency", "4",
        "--modes", "adaptive", "--db", postgres_url, "--replicas", "2",
    )  # fmt: skip
    assert [(r["db"], r["replicas"], r["mode"]) for r in rows] == [("postgresql", 2, "adaptive")]
    row = rows[0]
    assert row["requests"] > 0 and row["rps"] > 0 and row["errors"] == 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert row["cpu_ms_per_poll"] > 0
