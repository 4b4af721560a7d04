"""Session 36's bench scripts: the goal's default accuracy target comes from
``bench/accuracy_target.py`` run on committed benchmark runs, ``bench/lockstep.py``
reads its committed output back, ``bench/building_windows.py`` counts on the
controller's schema."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys

import pytest

from otel_adaprof.reward import samples_for_error
from otel_adaprof.session_spec import PROFILER_ACCURACY_TARGETS, RewardWeights
from tests.support.bench_scripts import BENCH, load

target = load("accuracy_target")
lockstep = load("lockstep")
COMMITTED = BENCH / "output" / "accuracy_target.json"
#: The native target's derivation from session 51's runs (session 44's is
#: ``accuracy_target_native.json``: static-100 then counted a holder waiting for a CPU).
COMMITTED_NATIVE = BENCH / "output" / "accuracy_target_native_s51.json"


def test_the_default_target_is_the_committed_derivation_of_the_committed_runs() -> None:
    committed = json.loads(COMMITTED.read_text())
    runs = {
        name: json.loads((BENCH / "output" / name).read_text()) for name in committed["per_run"]
    }
    again = target.derive(runs, functions=RewardWeights().functions)
    assert again == committed
    assert RewardWeights().accuracy_target == committed["target"]
    # 1.5x static-100's expected error: 1/2.25 of its median samples a phase
    assert committed["target_samples"] == pytest.approx(
        committed["median_samples"] / 2.25, rel=0.01
    )
    assert samples_for_error(RewardWeights().accuracy_target, 8) < 0.5 * committed["median_samples"]


def test_the_native_samplers_target_is_the_same_derivation_of_its_own_runs() -> None:
    """The native sampler takes fewer samples at 100 Hz than py-spy (only a thread that
    holds the GIL), so its agents' default target comes from static-100's samples in
    native runs, by the same script, at 1.1x static-100's expected error (session 48:
    the requests scope pays for the samples), where py-spy's is at the bound, 1.5x."""
    committed = json.loads(COMMITTED_NATIVE.read_text())
    runs = {
        name: json.loads((BENCH / "output" / name).read_text()) for name in committed["per_run"]
    }
    assert all(run["settings"]["profiler"] == "native" for run in runs.values())
    assert committed["ratio"] == 1.1 and committed["l1_max_ratio"] == 1.5
    again = target.derive(runs, functions=RewardWeights().functions, ratio=committed["ratio"])
    assert again == committed
    assert PROFILER_ACCURACY_TARGETS["native"] == committed["target"]
    assert RewardWeights().for_profiler("native").accuracy_target == committed["target"]
    py_spy = json.loads(COMMITTED.read_text())
    assert all(
        json.loads((BENCH / "output" / name).read_text())["settings"].get("profiler", "auto")
        != "native"
        for name in py_spy["per_run"]
    )


@pytest.mark.parametrize("committed", [COMMITTED, COMMITTED_NATIVE], ids=["py-spy", "native"])
def test_the_ledger_is_not_among_the_runs_the_target_comes_from(committed) -> None:  # type: ignore[no-untyped-def]
    """The ledger is the service the policy is judged on without being tuned on it."""
    runs = json.loads(committed.read_text())["per_run"]
    assert runs and not any("ledger" in name for name in runs)


def test_a_run_at_another_phase_scale_is_refused() -> None:
    run = {"settings": {"phase_scale": 4.0}, "configurations": {"static-100": {}}}
    with pytest.raises(ValueError, match="phase scale 4"):
        target.derive({"x.json": run}, functions=8)


def test_the_cli_names_a_file_it_cannot_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    out = subprocess.run(
        [sys.executable, str(BENCH / "accuracy_target.py"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "broken.json" in out.stderr and "Traceback" not in out.stderr


def test_lockstep_output_reads_back_as_committed() -> None:
    """The committed table is what the script prints from its committed JSON, and the
    pooled shares are the segments' counts added up."""
    result = json.loads((BENCH / "output" / "lockstep_s36_ledger.json").read_text())
    assert lockstep.table(result) == (BENCH / "output" / "lockstep_s36_ledger.md").read_text()
    segs = result["results"]["uniform"]["100"]["segments"]
    pooled = lockstep.pooled_shares(segs)
    assert sum(pooled.values()) == pytest.approx(1.0, abs=1e-3)
    n = sum(s["workload_samples"] for s in segs)
    assert n == result["results"]["uniform"]["100"]["pooled_workload_samples"]


building = load("building_windows")


def test_building_windows_counts_the_learning_the_statistic_alone_started(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On the controller's own schema: a learning window from the watch with the target
    reached and nothing seen is counted (with its CPU), one short of the target is not."""
    from otel_adaprof.controller.store import Store

    store = Store(str(tmp_path / "adaprof.db"))
    store.close()
    quiet = {"reached": 1.0, "change": 0.0, "pending": 0.0, "sig_cpu_per_request": -0.25}
    short = dict(quiet, reached=0.0)
    rows = [(1, "watch-reflex", quiet, 0.01), (2, "learn-100hz", quiet, 0.12),
            (3, "learn-100hz", short, 0.13), (4, "watch-reflex", quiet, 0.01)]  # fmt: skip
    with contextlib.closing(sqlite3.connect(tmp_path / "adaprof.db")) as db, db:
        for version, action, state, cpu in rows:
            db.execute(
                "INSERT INTO decisions (service, instance_id, config_version, policy, action,"
                " probability, features, params, created_at) VALUES (?, 'i', ?, 'adaptive', ?,"
                " 1.0, ?, '{}', 0)",
                (building.SERVICE, version, action, json.dumps({"state": state})),
            )
            db.execute(
                "INSERT INTO reports (instance_id, service, config_version, window, stacks,"
                " received_at) VALUES ('i', ?, ?, ?, '{}', 0)",
                (building.SERVICE, version, json.dumps({"profiler_cpu_seconds": cpu})),
            )
    got = building.count(tmp_path)
    assert (got["learning_windows"], got["by_building"], got["cpu_drop"]) == (2, 1, 1)
    assert got["from_maintenance"] == 1
    assert got["by_building_cpu_s"] == pytest.approx(0.12)
    assert got["run_cpu_s"] == pytest.approx(0.27)
