"""No ``adaprof-<pid>-*`` folder is left behind (issue #14.1).

Real processes under the agent with real py-spy, each with its own ``TMPDIR``: after a
normal exit, SIGINT or SIGTERM nothing is left; after a SIGKILL the folder stays, and
the next agent to start removes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SERVICE = textwrap.dedent(
    """
    import signal, sys, time
    # As a service started from a terminal: a test runner started in the background
    # (`pytest ... &`, nohup) passes SIGINT on as ignored, and Python keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    agent = otel_adaprof.configure(
        service_name="folders", exporter=InMemorySpanExporter(),
        params={"sampling_interval_ms": 10},
        settings=AgentSettings(profiler="py-spy", segment_s=1))
    print("started", flush=True)
    end = time.monotonic() + (float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
    while time.monotonic() < end:
        time.sleep(0.01)
    """
)


def _start(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", SERVICE, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _folders(tmp: Path, pid: int) -> list[str]:
    return sorted(p.name for p in tmp.glob(f"adaprof-{pid}-*"))


def _wait_for_folder(tmp: Path, proc: subprocess.Popen[str]) -> None:
    wait_until(lambda: _folders(tmp, proc.pid), 20, "the service's py-spy run folder")
    time.sleep(1.3)  # a run or two later: the folder's loop is in full swing


def _dump(pid: int) -> str:
    """Where a process that did not exit is stuck (``py-spy dump``, every thread)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    done = subprocess.run(
        [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20, check=False
    )
    return _signal_state(pid) + (done.stdout + done.stderr)[-6000:]


def _signal_state(pid: int) -> str:
    """Each thread's run state (R, S, T stopped, t traced) and signal masks (pending,
    blocked, caught), to tell a signal never delivered from one never handled."""
    lines = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except OSError:
            continue
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        masks = " ".join(
            line.replace("\t", " ")
            for line in status.splitlines()
            if line.split(":")[0] in ("SigPnd", "ShdPnd", "SigBlk", "SigCgt")
        )
        lines.append(f"{task.name} {name} state={state} {masks}")
    return "\n".join(lines) + "\n"


# A SIGINT exit took over 20 s in two loaded runs (sessions 17 and 18): both runs were
# started in the background, so the service inherited SIGINT as ignored (the service
# now restores the default handler, as one started from a terminal has). A stuck
# process's stacks, thread states and signal masks are printed in the failure.
@pytest.mark.flaky(reruns=1)
@pytest.mark.parametrize("how", ["exit", "SIGINT", "SIGTERM"])
def test_nothing_is_left_after_an_exit(tmp_path: Path, how: str) -> None:
    proc = _start(tmp_path, "3.5" if how == "exit" else "60")
    try:
        _wait_for_folder(tmp_path, proc)
        if how != "exit":
            proc.send_signal(getattr(signal, how))
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 20 s after {how}; where it is stuck:\n{_dump(proc.pid)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = {"exit": 0, "SIGINT": -signal.SIGINT, "SIGTERM": -signal.SIGTERM}[how]
    assert proc.returncode == expected, proc.stderr.read() if proc.stderr else ""
    time.sleep(0.3)  # anything racing the exit has had its chance
    assert _folders(tmp_path, proc.pid) == []


def test_the_next_agent_removes_what_a_sigkill_left(tmp_path: Path) -> None:
    killed = _start(tmp_path, "60")
    try:
        _wait_for_folder(tmp_path, killed)
    finally:
        killed.kill()
        killed.wait()
    left = _folders(tmp_path, killed.pid)
    assert left, "a SIGKILL leaves the folder (nothing can clean up)"
    unrelated = tmp_path / "adaprof-notes"
    unrelated.mkdir()
    survivor = _start(tmp_path, "60")
    try:
        wait_until(lambda: not _folders(tmp_path, killed.pid), 20, "the orphan folder removed")
        _wait_for_folder(tmp_path, survivor)  # its own folder is in use, not removed
        assert _folders(tmp_path, survivor.pid)
        assert unrelated.is_dir()
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=20)
    assert _folders(tmp_path, survivor.pid) == []
