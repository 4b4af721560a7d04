"""The service comes first: py-spy missing or killed, controller down or answering
garbage, service exit — the app answers every request and the agent recovers."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from otel_adaprof.params import Params
from otel_adaprof.protocol import PollResponse, encode
from tests.support.controller import ControllerProcess
from tests.support.instrumented import InstrumentedService, pyspy_reading
from tests.support.spans import read_spans
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

HOT = "burn_cpu_hotspot"


def _drive(svc: InstrumentedService, seconds: float) -> list[float]:
    took = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in ("/burn", "/query"):
            status, dt = svc.get(path)
            assert status == 200
            took.append(dt)
    return took


def _sampled(path: Path, since_ns: int = 0, backend: str | None = None) -> list[dict[str, Any]]:
    return [
        s for s in read_spans(path)
        if s["name"] == "burn" and int(s["startTimeUnixNano"]) > since_ns
        and s["attrs"].get("adaprof.sample_count", 0) > 0
        and (backend is None or s["attrs"].get("adaprof.profiler") == backend)
    ]  # fmt: skip


def test_py_spy_refused_permission_falls_back_to_the_in_process_sampler(tmp_path, sink):
    # What py-spy says in a container without CAP_SYS_PTRACE, found first on PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Error: Permission Denied (os error 13)' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin",
           "ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 5})}  # fmt: skip
    with InstrumentedService(tmp_path, sink.endpoint, env=env) as svc:
        _drive(svc, 4.0)
        spans = wait_until(lambda: _sampled(sink.path, backend="in-process"), 10)
        assert spans, svc.log()[-2000:]
        assert any(HOT in s["attrs"]["adaprof.top_frame"] for s in spans)
    assert "falling back to the in-process sampler" in svc.log()
    assert "ADAPROF_CONTROLLER_URL is not set" in svc.log()


def test_py_spy_missing_uses_the_in_process_sampler(tmp_path, sink):
    env = {"PATH": "/usr/bin:/bin", "ADAPROF_PY_SPY": str(tmp_path / "no-such-py-spy"),
           "ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 5})}  # fmt: skip
    with InstrumentedService(tmp_path, sink.endpoint, env=env) as svc:
        _drive(svc, 2.0)
        assert wait_until(lambda: _sampled(sink.path, backend="in-process"), 10), svc.log()[-2000:]
        assert svc.pyspy_pids() == []


def test_py_spy_killed_mid_run_is_restarted_and_the_app_is_unaffected(tmp_path, sink):
    env = {"ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 10})}
    with InstrumentedService(tmp_path, sink.endpoint, env=env) as svc:
        _drive(svc, 1.5)
        killed = 0
        for _ in range(3):
            pids = wait_until(svc.pyspy_pids, 5)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            _drive(svc, 0.7)  # every request still answers 200
        assert killed >= 3
        after = time.time_ns()
        _drive(svc, 3.0)
        spans = wait_until(lambda: _sampled(sink.path, after, backend="py-spy"), 10)
        assert spans, svc.log()[-2000:]
    assert "py-spy run failed" in svc.log()


def test_controller_down_then_back(tmp_path, sink):
    cfg = tmp_path / "controller.yaml"
    cfg.write_text("agents:\n  poll_interval_s: 1.0\n")
    ctl = ControllerProcess(tmp_path / "adaprof.db", "--config", str(cfg)).start()
    port = ctl.url.rsplit(":", 1)[1]
    try:
        body = {"service": "agent-test", "mode": "static", "duration_s": 600,
                "initial_params": {"sampling_interval_ms": 20, "stack_depth": 5}}  # fmt: skip
        ctl.request("POST", "/v1/sessions", body)
        env = {"ADAPROF_POLL_TIMEOUT_S": "0.5"}
        with InstrumentedService(tmp_path, sink.endpoint, controller_url=ctl.url, env=env) as svc:
            wait_until(lambda: ctl.request("GET", "/v1/agents")["agents"], 10)
            baseline = _drive(svc, 2.0)
            ctl.kill()
            down_at = time.time_ns()
            during = _drive(svc, 4.0)  # all answered while the controller is gone
            # the last good params stay in force
            time.sleep(1.5)
            kept = [
                s
                for s in read_spans(sink.path)
                if int(s["startTimeUnixNano"]) > down_at and "adaprof.marker" in s["attrs"]
            ]
            assert kept and all(s["attrs"]["adaprof.stack_depth"] == 5 for s in kept)
            assert (
                sorted(during)[len(during) // 2] < 5 * sorted(baseline)[len(baseline) // 2] + 0.05
            )
            # back on the same port, same database: the agent finds it by itself
            ctl = ControllerProcess(tmp_path / "adaprof.db", "--config", str(cfg), "--port", port)
            ctl.start()
            back_at = time.time()
            agents = wait_until(
                lambda: [a for a in ctl.request("GET", "/v1/agents")["agents"]
                         if a["last_seen"] > back_at],
                30,
            )  # fmt: skip
            assert agents, svc.log()[-2000:]
        assert "poll failed" in svc.log() and "answers again" in svc.log()
    finally:
        ctl.stop()


class _BadController:
    """A controller stand-in that answers valid params first, then out-of-bounds ones.

    The real controller validates params before answering, so only a faulty or
    hostile controller can send these; the agent must refuse them.
    """

    def __init__(self) -> None:
        self.polls = 0
        params = Params(sampling_interval_ms=20, stack_depth=7)
        good = PollResponse(config_version=1, params=params, poll_interval_s=0.5)
        self.good = encode(good)
        bad = json.loads(self.good)
        bad["config_version"] = 2
        bad["params"]["stack_depth"] = 0
        self.bad = json.dumps(bad).encode()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.polls += 1
                body = owner.good if owner.polls <= 2 else owner.bad
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_params_out_of_bounds_from_the_controller_are_refused(tmp_path, sink):
    bad = _BadController()
    try:
        with InstrumentedService(tmp_path, sink.endpoint, controller_url=bad.url) as svc:
            wait_until(lambda: bad.polls >= 5, 20)
            since = time.time_ns()
            _drive(svc, 2.0)
            time.sleep(1.0)
            spans = wait_until(lambda: [s for s in read_spans(sink.path)
                                   if int(s["startTimeUnixNano"]) > since
                                   and "adaprof.marker" in s["attrs"]], 10)  # fmt: skip
            assert spans and all(s["attrs"]["adaprof.stack_depth"] == 7 for s in spans)
            assert all(s["attrs"]["adaprof.config_version"] == 1 for s in spans)
        assert "refused the controller's answer, field params.stack_depth" in svc.log()
    finally:
        bad.server.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_service_exit_leaves_no_py_spy_behind(tmp_path, sink, sig):
    env = {"ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 10}),
           "ADAPROF_PROFILE_SEGMENT_S": "3"}  # fmt: skip
    svc = InstrumentedService(tmp_path, sink.endpoint, env=env).start()
    _drive(svc, 1.0)
    pid = svc.proc.pid
    assert wait_until(lambda: pyspy_reading(pid), 5)
    svc.stop(sig)
    # SIGTERM: killed at exit; SIGKILL: py-spy stops by itself when its target is gone
    left = wait_until(lambda: not pyspy_reading(pid), 8 if sig == signal.SIGKILL else 3)
    assert left, pyspy_reading(pid)
