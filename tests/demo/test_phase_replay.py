"""``bench/phase_replay.py`` on a controller database written by the real controller: a
benchmark-like run whose hot path (14 % of the samples, a function of its own) ends with
a signalled change. Replayed with the tree's reward, the phase after the end is its own
(a function gone confirms it); with session 48's, it merges back as a false alarm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.poll_codec import read_poll
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.session_spec import SessionSpec
from tests.support.bench_scripts import BENCH, load

phase_replay = load("phase_replay")

STEADY = {"main;a (a.py:1)": 50, "main;b (b.py:1)": 30, "main;c (c.py:1)": 20}
HOT = {**STEADY, "main;compress (c.py:9)": 16}
T0 = 1_000_000.0


def _poll(version: int, end: float, stacks: dict[str, int], change: str) -> bytes:
    body: dict = {
        "protocol_version": 1,
        "agent": {"service": "bench-adaptive", "instance_id": "i1", "host": "h", "pid": 1},
        "config_version": version,
    }
    if version:
        signalled = change == "signal"
        signals: dict = {"profile_changes": int(signalled), "changes": int(signalled)}
        signals["new_code"] = int(change == "new code")
        if signalled:
            signals |= {"last_change_unix": end - 1.0, "last_profile_change_unix": end - 1.0}
        body["window"] = {
            "window_start": end - 3.0,
            "window_seconds": 3.0,
            "process_cpu": 0.1,
            "profiler_cpu_seconds": 0.01,
            "change_signals": signals,
        }
        rows = [{"stack": stack, "count": count} for stack, count in stacks.items()]
        body["stacks"] = {"stacks": rows}
    return json.dumps(body).encode()


def _run(workdir: Path) -> None:
    """Steady windows, the hot path's (its function new code, as the agent reports it),
    then its end, signalled, and the steady shares again; the four phases' control
    spans."""
    now = [T0]
    core = ControllerCore(
        ControllerConfig(), Store(str(workdir / "adaprof.db")), clock=lambda: now[0]
    )
    spec = {"service": "bench-adaptive", "mode": "static", "duration_s": 3600}
    core.open_session(SessionSpec.parse({**spec, "initial_params": {"sampling_interval_ms": 10}}))
    version = core.poll(read_poll(_poll(0, now[0], {}, ""))).config_version
    windows = [(STEADY, "")] * 8 + [(HOT, "new code")] + [(HOT, "")] * 7
    windows += [(STEADY, "signal")] + [(STEADY, "")] * 6
    for stacks, change in windows:
        now[0] += 3.0
        version = core.poll(read_poll(_poll(version, now[0], stacks, change))).config_version
    starts = [T0, T0 + 24.0, T0 + 45.0, T0 + 48.0]  # steady, hot_path, load_change, gone
    with open(workdir / "spans-adaptive.jsonl", "w", encoding="utf-8") as spans:
        for start in starts:
            span = {"name": "POST /control", "startTimeUnixNano": int(start * 1e9)}
            spans.write(json.dumps(span) + "\n")


def test_a_hot_paths_end_is_its_own_phase_with_the_trees_reward_not_session_48s(tmp_path):
    _run(tmp_path)
    tree = phase_replay.replay(tmp_path)
    before = phase_replay.replay(tmp_path, "vanished")
    gone = [c for c in tree if c["phase"] == "hot_path_gone"]
    assert [c["outcome"] for c in gone] == ["confirmed"], tree
    assert [c["outcome"] for c in before if c["phase"] == "hot_path_gone"] == ["false alarm"]
    # the hot path's own start (new code) is confirmed under both
    assert any(c["phase"] == "hot_path" and c["outcome"] == "confirmed" for c in before), before


def test_the_command_prints_both_rules_and_refuses_a_folder_without_a_run(tmp_path):
    _run(tmp_path)
    done = subprocess.run(
        [sys.executable, str(BENCH / "phase_replay.py"), str(tmp_path), "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)[str(tmp_path)]
    assert set(got) == {"tree", "session 48 (no vanished key)"}
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, str(BENCH / "phase_replay.py"), str(empty)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "no adaprof.db" in done.stderr
    assert "Traceback" not in done.stderr
