"""Fixtures of the demo tests: the real demo service as a subprocess on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture
def demo_service(tmp_path) -> Iterator[tuple[int, int]]:
    """(port, pid) of ``python -m otel_adaprof.demo.service`` without instrumentation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADAPROF_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_adaprof.demo.service", "--port", "0",
         "--db", str(tmp_path / "shop.db")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on"), line
        yield int(line.rsplit(":", 1)[1]), proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
