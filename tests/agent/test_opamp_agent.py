"""The agent over OpAMP (``ADAPROF_CONTROL_PROTOCOL=opamp``): a real service under
``opentelemetry-instrument`` against the real controller, and against an OpAMP server
stand-in that sends a config out of bounds."""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry._opamp.proto import opamp_pb2 as pb

from otel_adaprof.opamp_config import CONFIG_FILE, REPORT_CAPABILITY, config_body, config_hash
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollResponse, decode_poll_request
from tests.support.instrumented import InstrumentedService
from tests.support.spans import read_spans
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

OPAMP = {"ADAPROF_CONTROL_PROTOCOL": "opamp"}


def _drive(svc: InstrumentedService, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in ("/burn", "/query"):
            assert svc.get(path)[0] == 200


def _markers(path: Any, since_ns: int) -> list[dict[str, Any]]:
    return [
        s
        for s in read_spans(path)
        if int(s["startTimeUnixNano"]) > since_ns and "adaprof.marker" in s["attrs"]
    ]


def test_the_agent_runs_a_session_over_opamp(tmp_path, sink, fast_controller):
    ctl = fast_controller
    body = {"service": "agent-test", "mode": "static", "duration_s": 600,
            "initial_params": {"sampling_interval_ms": 20, "stack_depth": 5}}  # fmt: skip
    session = ctl.request("POST", "/v1/sessions", body)
    with InstrumentedService(tmp_path, sink.endpoint, controller_url=ctl.url, env=OPAMP) as svc:

        def opamp_row() -> dict[str, Any] | None:
            rows = ctl.request("GET", "/v1/agents")["agents"]
            row = next((r for r in rows if r.get("protocol") == "opamp"), None)
            ok = row and row["opamp"]["remote_config_status"]["status"] == "APPLIED"
            return row if ok and row["opamp"]["reports"] >= 3 else None

        since = time.time_ns()
        _drive(svc, 1.0)
        row = wait_until(opamp_row, 20, "an OpAMP agent with APPLIED params")
        _drive(svc, 1.5)
        # markers under the session's params (the first ones may be from before it
        # applied, and the later ones still in the exporter's batch)
        spans = wait_until(
            lambda: [
                m for m in _markers(sink.path, since) if m["attrs"]["adaprof.config_version"] >= 2
            ],
            10,
            "marker spans under the session's params",
        )
        log = svc.log()
    assert row["service"] == "agent-test" and row["backend"] in ("py-spy", "in-process")
    assert row["params"]["stack_depth"] == 5 and row["opamp"]["connected"]
    assert row["opamp"]["remote_config_status"]["current"]  # about the last config it got
    assert row["opamp"]["effective_config"][CONFIG_FILE]["params"]["stack_depth"] == 5
    late = [s for s in spans if s["attrs"]["adaprof.config_version"] >= 2]
    assert late and all(s["attrs"]["adaprof.stack_depth"] == 5 for s in late), log[-2000:]
    # the windows reported over OpAMP are the session's timeline (reward credited)
    windows = ctl.request("GET", f"/v1/sessions/{session['id']}/timeline")["windows"]
    assert len(windows) >= 2 and any(w["reward"] is not None for w in windows)
    assert "poll failed" not in log
    metrics = ctl.raw("GET", "/metrics")[1].decode()
    polls = float(re.search(r"^adaprof_polls_total (\S+)$", metrics, re.M).group(1))
    assert polls >= row["opamp"]["reports"]  # OpAMP reports count as polls


class _OpampStandIn:
    """An OpAMP server that offers valid params twice, then nothing new once, then
    params out of bounds; it records every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        good = PollResponse(config_version=1, params=Params(sampling_interval_ms=20,
                            stack_depth=7), poll_interval_s=0.5)  # fmt: skip
        self.good = config_body(good)
        self.bad = self.good.replace(b'"stack_depth":7', b'"stack_depth":0').replace(
            b'"config_version":1', b'"config_version":2'
        )
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.messages.append(pb.AgentToServer.FromString(raw))
                n = len(owner.messages)
                body = owner.good if n <= 2 else None if n == 3 else owner.bad
                answer = pb.ServerToAgent(instance_uid=owner.messages[-1].instance_uid)
                if body is not None:  # the third answer has no config: nothing changed
                    answer.remote_config.config_hash = config_hash(body)
                    entry = answer.remote_config.config.config_map[CONFIG_FILE]
                    entry.body, entry.content_type = body, "application/json"
                data = answer.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_bad_opamp_config_is_refused_and_reported_failed(tmp_path, sink):
    stand_in = _OpampStandIn()
    try:
        with InstrumentedService(
            tmp_path, sink.endpoint, controller_url=stand_in.url, env=OPAMP
        ) as svc:
            wait_until(lambda: len(stand_in.messages) >= 5, 20, "five OpAMP messages")
            since = time.time_ns()
            _drive(svc, 1.5)
            spans = wait_until(lambda: _markers(sink.path, since), 10, "marker spans")
            log = svc.log()
    finally:
        stand_in.server.shutdown()
    assert all(s["attrs"]["adaprof.stack_depth"] == 7 for s in spans)  # last good kept
    assert all(s["attrs"]["adaprof.config_version"] == 1 for s in spans)
    assert "refused the controller's config, field params.stack_depth" in log
    statuses = [m.remote_config_status for m in stand_in.messages[1:]]
    for applied in statuses[:3]:  # also after the answer without a config
        assert applied.status == pb.RemoteConfigStatuses_APPLIED
        assert applied.last_remote_config_hash == config_hash(stand_in.good)
    assert "poll failed (invalid config (params.stack_depth)" in log
    assert log.count("poll failed") == 1, log[-3000:]  # the first refusal; none before
    failed = statuses[-1]
    assert failed.status == pb.RemoteConfigStatuses_FAILED
    assert failed.last_remote_config_hash == config_hash(stand_in.bad)
    assert failed.error_message.startswith("params.stack_depth: 0 is out of bounds")
    # every message carries the window report and who the agent is
    report = decode_poll_request(stand_in.messages[-1].custom_message.data)
    assert stand_in.messages[-1].custom_message.capability == REPORT_CAPABILITY
    assert report.agent.service == "agent-test" and report.config_version == 1
    assert stand_in.messages[-1].effective_config.config_map.config_map[CONFIG_FILE].body
