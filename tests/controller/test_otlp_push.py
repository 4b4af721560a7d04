"""A session's merged profile as OTLP profiles: ``GET .../profile?format=otlp`` on the real
controller, and ``adaprof session export --otlp-endpoint`` pushing it to a real OTLP/HTTP
receiver on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.profiles import decode, observations, resource_attributes

ADAPROF = Path(sys.executable).with_name("adaprof")
BURN = "main (app.py:1);handle (app.py:9);burn_cpu (work.py:3)"
QUERY = "main (app.py:1);query (db.py:4)"


def _session(ctl: ControllerProcess, interval_ms: int = 20) -> str:
    spec = {"service": "shop", "mode": "static",
            "initial_params": {"sampling_interval_ms": interval_ms}}  # fmt: skip
    sid = str(ctl.request("POST", "/v1/sessions", spec)["id"])
    version = 0
    for _ in range(3):  # two windows of samples
        version = ctl.request(
            "POST", "/v1/agents/poll", poll_body("a-1", version, stacks={BURN: 30, QUERY: 5})
        )["config_version"]
    return sid


def _check(body: bytes, sid: str, period_ns: int) -> None:
    request = decode(body)
    got = {";".join(s.stack): s.value for s in observations(request)}
    assert got == {BURN: 60, QUERY: 10}
    assert all(not s.span_id and not s.time_unix_nano for s in observations(request))
    assert resource_attributes(request) == {"service.name": "shop", "adaprof.session.id": sid}
    d = request.dictionary
    profile = request.resource_profiles[0].scope_profiles[0].profiles[0]
    assert d.string_table[profile.sample_type.type_strindex] == "samples"
    assert d.string_table[profile.period_type.type_strindex] == "cpu"
    assert profile.period == period_ns
    assert profile.time_unix_nano > 0 and profile.duration_nano >= 0


def test_profile_in_otlp_format(controller: ControllerProcess):
    sid = _session(controller, interval_ms=20)
    status, body = controller.raw("GET", f"/v1/sessions/{sid}/profile?format=otlp")
    assert status == 200
    _check(body, sid, period_ns=20_000_000)
    status, _ = controller.raw("GET", f"/v1/sessions/{sid}/profile?format=otlp2")
    assert status == 400


def test_cli_pushes_the_session_profile_to_an_otlp_receiver(tmp_path: Path):
    with ControllerProcess(tmp_path / "adaprof.db") as ctl, OtlpReceiver() as rx:
        sid = _session(ctl, interval_ms=50)
        cmd = [str(ADAPROF), "session", "--controller", ctl.url, "export", sid]
        env_headers = {"OTEL_EXPORTER_OTLP_PROFILES_HEADERS": "x-scope-orgid=tenant-1"}
        env = {**os.environ, **env_headers}
        done = subprocess.run(
            [*cmd, "--otlp-endpoint", rx.endpoint],
            capture_output=True, text=True, timeout=60, check=False, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{rx.endpoint}/v1development/profiles" in done.stdout
        (request,) = rx.profile_requests()
        _check(request.SerializeToString(), sid, period_ns=50_000_000)
        assert rx.profile_headers[0]["x-scope-orgid"] == "tenant-1"

        # a receiver that refuses: a clear error and a non-zero exit
        rx.fail_profiles = 503
        refused = subprocess.run(
            [*cmd, "--otlp-endpoint", rx.endpoint + "/v1development/profiles"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "HTTP 503" in refused.stderr

        # nothing listening: says so
        down = subprocess.run(
            [*cmd, "--otlp-endpoint", "http://127.0.0.1:9"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert down.returncode != 0 and "cannot reach http://127.0.0.1:9" in down.stderr
