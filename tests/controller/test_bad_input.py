"""Thousands of malformed bodies and queries: never a 5xx, every error names the problem."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    with ControllerProcess(tmp_path_factory.mktemp("fuzz") / "adaprof.db") as proc:
        proc.sid = proc.request("POST", "/v1/sessions", {"service": "shop"})["id"]
        yield proc
        # the process must have survived everything: still running, still answering
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        assert proc.request("GET", "/healthz") == {"status": "ok"}
        assert proc.request("GET", f"/v1/sessions/{proc.sid}")["id"] == proc.sid


def check(ctl: ControllerProcess, method: str, path: str, body: bytes | None) -> None:
    status, raw = ctl.raw(method, path, body, headers={"Content-Type": "application/json"})
    assert status < 500, f"{method} {path} {body!r:.200} -> {status} {raw[:300]!r}"
    if status >= 400:
        error = json.loads(raw)
        assert error["message"], raw
        if status == 400:
            assert error["field"] or error["problems"] or "body" in error["message"], raw


def mutate(base: Any, path: list[str], value: Any) -> Any:
    if not path or not isinstance(base, dict):
        return value
    out = dict(base)
    out[path[0]] = mutate(base.get(path[0]), path[1:], value)
    return out


FIELDS = [
    ["agent"],
    ["agent", "service"],
    ["agent", "instance_id"],
    ["agent", "pid"],
    ["config_version"],
    ["protocol_version"],
    ["window"],
    ["window", "window_seconds"],
    ["window", "node_cpu"],
    ["stacks"],
    ["stacks", "stacks"],
    ["stacks", "depth"],
    ["session_id"],
    ["extra"],
]
SESSION_FIELDS = [
    ["service"],
    ["duration_s"],
    ["mode"],
    ["goal"],
    ["goal", "cpu"],
    ["budget"],
    ["budget", "cpu_fraction"],
    ["initial_params"],
    ["initial_params", "stack_depth"],
    ["initial_params", "span_filters"],
    ["x"],
]

FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.sampled_from(FIELDS), JSON)
def test_poll_with_one_field_broken(ctl: ControllerProcess, field: list[str], value: Any):
    check(
        ctl,
        "POST",
        "/v1/agents/poll",
        json.dumps(mutate(poll_body("f-1", 3), field, value)).encode(),
    )


@FUZZ
@given(st.sampled_from(SESSION_FIELDS), JSON)
def test_session_with_one_field_broken(ctl: ControllerProcess, field: list[str], value: Any):
    base = {"service": "fuzz", "duration_s": 60, "initial_params": {"stack_depth": 8}}
    check(ctl, "POST", "/v1/sessions", json.dumps(mutate(base, field, value)).encode())


@FUZZ
@given(
    st.sampled_from(["/v1/agents/poll", "/v1/sessions", "/v1/sessions/{sid}/stop"]),
    st.binary(max_size=300) | JSON.map(lambda v: json.dumps(v).encode()),
)
def test_arbitrary_bodies(ctl: ControllerProcess, path: str, body: bytes):
    check(ctl, "POST", path.format(sid=ctl.sid), body)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(
        [
            "/v1/sessions/{v}",
            "/v1/sessions/{v}/timeline",
            "/v1/sessions/{sid}/profile?format={v}",
            "/sampling?service={v}",
            "/api/sampling?service={v}",
            "/v1/{v}",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, blacklist_characters="/?#%"),
        max_size=40,
    ),
)
def test_arbitrary_queries(ctl: ControllerProcess, template: str, value: str):
    from urllib.parse import quote

    check(ctl, "GET", template.format(v=quote(value), sid=ctl.sid), None)


def test_oversized_body_is_413_and_server_lives(ctl: ControllerProcess):
    status, raw = ctl.raw("POST", "/v1/agents/poll", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert status == 413 and json.loads(raw)["field"] == "body"
    assert ctl.request("GET", "/healthz") == {"status": "ok"}


def test_unknown_protocol_version_is_a_clear_400(ctl: ControllerProcess):
    status, raw = ctl.raw(
        "POST", "/v1/agents/poll", json.dumps({**poll_body("v-1"), "protocol_version": 9}).encode()
    )
    error = json.loads(raw)
    assert status == 400 and error["field"] == "protocol_version"
    assert "speaks 1" in error["message"]


def test_still_serving_after_the_fuzzing(ctl: ControllerProcess, tmp_path: Path):
    started = time.monotonic()
    assert ctl.request("POST", "/v1/agents/poll", poll_body("after", 0))["config_version"] == 1
    assert time.monotonic() - started < 5
    assert "Traceback" not in ctl.log(), ctl.log()[-3000:]
