"""``bench/cpu_by_action.py`` on a controller database written by the real controller:
a static 100 Hz session's windows, one of them mostly a reflex burst, then windows
whose params sample nothing but whose reports carry a py-spy run's late samples."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.poll_codec import read_poll
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.session_spec import SessionSpec
from tests.support.bench_scripts import BENCH, load

cpu_by_action = load("cpu_by_action")


def _poll(version: int, now: float, cpu: float, burst: float, samples: int) -> bytes:
    body: dict = {
        "protocol_version": 1,
        "agent": {"service": "bench-static-100", "instance_id": "i1", "host": "h", "pid": 1},
        "config_version": version,
    }
    if version:
        body["window"] = {
            "window_start": now - 3.0,
            "window_seconds": 3.0,
            "process_cpu": 0.1,
            "profiler_cpu_seconds": cpu,
            "profiler_cpu_breakdown": {"pyspy": cpu * 0.75, "slow_span": cpu * 0.25},
            "burst_seconds": burst,
        }
        if samples:
            body["stacks"] = {"stacks": [{"stack": "main;work", "count": samples}]}
    return json.dumps(body).encode()


def _run(workdir: Path) -> None:
    """One agent: a window at 100 Hz and one that was mostly a reflex burst; then, under
    params that sample nothing (a watch), one carrying the burst's late samples and an
    empty one."""
    now = [1_000_000.0]
    core = ControllerCore(
        ControllerConfig(), Store(str(workdir / "adaprof.db")), clock=lambda: now[0]
    )
    spec = {"service": "bench-static-100", "mode": "static", "duration_s": 3600}
    core.open_session(SessionSpec.parse({**spec, "initial_params": {"sampling_interval_ms": 10}}))
    version = core.poll(read_poll(_poll(0, now[0], 0.0, 0.0, 0))).config_version
    windows = [(0.10, 0.0, 40), (0.12, 2.5, 60), (0.01, 0.0, 25), (0.01, 0.0, 0)]
    for i, (cpu, burst, samples) in enumerate(windows):
        if i == 1:  # the params change to the watch from the next window on
            for session in core.sessions():
                if session["state"] == "open":
                    core.stop_session(session["id"])
            watch = {"sampling_interval_ms": 0}
            core.open_session(SessionSpec.parse({**spec, "initial_params": watch}))
        now[0] += 3.0
        version = core.poll(read_poll(_poll(version, now[0], cpu, burst, samples))).config_version


def test_windows_are_summed_by_action_and_late_samples_go_to_the_last_that_profiled(tmp_path):
    _run(tmp_path)
    db = sqlite3.connect(tmp_path / "adaprof.db")
    got = cpu_by_action.by_action(db, "bench-static-100")
    assert set(got) == {"static", "burst"}
    # the burst's window and the late samples reported after it, under the watch's params
    assert (got["burst"]["windows"], got["burst"]["samples"]) == (1, 85)
    assert got["burst"]["cpu_s"] == 0.12 and got["burst"]["ms_per_sample"] == round(120 / 85, 2)
    assert got["burst"]["parts_ms_per_s"] == {"pyspy": 30.0, "slow_span": 10.0}
    # the 100 Hz window and the watch's two (no samples of their own)
    assert (got["static"]["windows"], got["static"]["samples"]) == (3, 40)
    assert got["static"]["cpu_s"] == 0.12 and got["static"]["seconds"] == 9.0


def _command(workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH / "cpu_by_action.py"), "--workdir", str(workdir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_the_command_refuses_a_directory_without_a_run(tmp_path):
    done = _command(tmp_path)
    assert done.returncode != 0 and "no controller database" in done.stderr
    # a database of something else: named, not a traceback, and left as it was
    other = tmp_path / "adaprof.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    before = other.read_bytes()
    done = _command(tmp_path)
    assert done.returncode != 0 and "not a controller database" in done.stderr
    assert "Traceback" not in done.stderr and other.read_bytes() == before
