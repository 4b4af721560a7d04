"""Run a real service under ``opentelemetry-instrument`` with the agent, for tests.

Usage::

    from tests.support.instrumented import InstrumentedService

    with SpanSink(tmp_path / "spans.jsonl").start() as sink, \\
         InstrumentedService(tmp_path, sink.endpoint, controller_url=ctl.url) as svc:
        svc.get("/burn")
        svc.pyspy_pids()          # the py-spy children reading the service

Spans are sent over OTLP/HTTP (or gRPC with ``protocol="grpc"``) to ``endpoint``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from otel_adaprof.demo.processes import wait_for_line

APP = Path(__file__).resolve().parent.parent / "agent" / "app.py"
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))


class InstrumentedService:
    """``tests/agent/app.py`` under ``opentelemetry-instrument``; its log in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        endpoint: str,
        *,
        controller_url: str | None = None,
        protocol: str = "http/protobuf",
        env: dict[str, str] | None = None,
        name: str = "agent-test",
    ) -> None:
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"{name}.log"
        self.name = name
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADAPROF_"))}
        base.update(
            {
                "OTEL_SERVICE_NAME": name,
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                "OTEL_BSP_SCHEDULE_DELAY": "300",
                "OTEL_TRACES_SAMPLER": "adaprof",
                "ADAPROF_PROFILE_SEGMENT_S": "1",
                # 1 s py-spy runs whatever the rate: marker spans come back within ~1 s
                "ADAPROF_PROFILE_SEGMENT_MAX_S": "1",
                "ADAPROF_WINDOW_S": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if controller_url:
            base["ADAPROF_CONTROLLER_URL"] = controller_url
        base.update(env or {})
        self.env = base
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> InstrumentedService:
        """Start and wait until it listens."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [INSTRUMENT, sys.executable, str(APP)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        line = wait_for_line(self.proc, "listening on", 30.0, log=self.log_path)
        self.url = line.split("listening on ", 1)[1].strip()
        return self

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, float]:
        """(status, seconds) of one request."""
        t0 = time.monotonic()
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            resp.read()
            return resp.status, time.monotonic() - t0

    def log(self) -> str:
        """What the service wrote on stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pyspy_pids(self) -> list[int]:
        """py-spy processes reading this service (children of it)."""
        assert self.proc is not None
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []
        return [k.pid for k in kids if _is_pyspy(k)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Stop it (SIGTERM: clean exit that flushes spans); its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)

    def __enter__(self) -> InstrumentedService:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _is_pyspy(proc: psutil.Process) -> bool:
    try:
        return "py-spy" in " ".join(proc.cmdline()[:1]) or proc.name() == "py-spy"
    except psutil.Error:
        return False


def pyspy_reading(pid: int) -> list[int]:
    """Every py-spy process on the machine whose command line reads ``pid``."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and "py-spy" in cmd[0] and str(pid) in cmd and proc.status() != "zombie":
            out.append(proc.pid)
    return out
