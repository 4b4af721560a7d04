"""``bench/other_samplers.py --json`` reads its target with py-spy and says what it skipped."""

from __future__ import annotations

from tests.support.bench_scripts import run_json


def test_py_spy_reads_the_target_and_missing_samplers_are_named():
    result = run_json(
        "other_samplers", "--seconds", "2", "--idle-ms", "5", "--austin", "/nonexistent/austin",
        timeout=60,
    )  # fmt: skip
    py_spy = next(r for r in result["rows"] if r["sampler"].startswith("py-spy"))
    assert py_spy["samples"] > 20 and py_spy["cpu_s"] > 0, py_spy  # half busy: ~100 samples
    # the target's short function is there, near its true quarter (wide: ~100 samples)
    assert 0.05 < py_spy["compute_tax_share"] < 0.6, py_spy
    assert any(s.startswith("austin: not found") for s in result["skipped"]), result
