"""Wire protocol: round trips of every message, size limits, malformed and unknown versions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from otel_adaprof.errors import ContractError, UnsupportedProtocolVersion
from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_CHARS,
    MAX_STACK_CHARS,
    MAX_STACKS,
    PROTOCOL_VERSION,
    AgentIdentity,
    ErrorResponse,
    ObservedState,
    PollRequest,
    PollResponse,
    ProfilerBackend,
    StackCount,
    StackHistogram,
    decode,
    decode_poll_request,
    decode_poll_response,
    encode,
)

AGENT = AgentIdentity(
    service="shop",
    instance_id="shop-7f3a",
    host="web-1",
    pid=4242,
    sdk_version="1.45.1",
    agent_version="0.1.0",
    profiler_backend=ProfilerBackend.PY_SPY,
)
WINDOW = ObservedState(
    window_start=1_790_000_000.0,
    window_seconds=5.0,
    process_cpu=0.42,
    node_cpu=0.3,
    process_memory_bytes=120_000_000,
    node_memory=0.5,
    poll_rtt_ms=1.8,
    spans_per_s=40.0,
    markers_per_s=6.0,
    samples_per_s=98.0,
    bytes_exported_per_s=25_000.0,
    profiler_cpu_seconds=0.2,
    queue_drops=0,
)
STACKS = StackHistogram(
    stacks=[
        StackCount(stack="main (app.py:10);handle (app.py:30);burn (work.py:5)", count=80),
        StackCount(stack="main (app.py:10);query (db.py:9)", count=18),
    ],
    total_samples=100,
    depth=32,
)


def full_request() -> PollRequest:
    return PollRequest(
        agent=AGENT, config_version=7, session_id="s-1", window=WINDOW, stacks=STACKS
    )


def full_response() -> PollResponse:
    params = Params.parse({"sampling_interval_ms": 10, "operation_ratios": {"GET /a": 0.5}})
    return PollResponse(config_version=8, params=params, session_id="s-1", poll_interval_s=5.0)


def _json(message: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(message))
    return data


def test_poll_request_round_trip():
    req = full_request()
    assert decode_poll_request(encode(req)) == req
    assert decode_poll_request(encode(req).decode()) == req
    assert decode_poll_request(_json(req)) == req


def test_first_poll_round_trip_without_window():
    req = PollRequest(agent=AgentIdentity(service="shop", instance_id="i"))
    data = _json(req)
    assert data["protocol_version"] == PROTOCOL_VERSION
    assert data["window"] is None and data["stacks"] is None
    assert decode_poll_request(encode(req)) == req


def test_poll_response_round_trip():
    resp = full_response()
    again = decode_poll_response(encode(resp))
    assert again == resp
    assert again.params.rate_hz == 100


def test_error_response_round_trip():
    err = ContractError([("window.window_seconds", "required field is missing")])
    body = ErrorResponse.model_validate(err.to_json())
    assert decode(ErrorResponse, encode(body)) == body
    assert body.field == "window.window_seconds"


def test_derived_values():
    assert WINDOW.profiler_cpu_fraction == pytest.approx(0.04)
    hist = StackHistogram(stacks=[StackCount(stack="a", count=2), StackCount(stack="a", count=3)])
    assert hist.as_dict() == {"a": 5}


@pytest.mark.parametrize("version", [0, 2, 99, "1", None, True, 1.5])
def test_unknown_protocol_version(version: Any):
    data = _json(full_request())
    data["protocol_version"] = version
    with pytest.raises(UnsupportedProtocolVersion) as info:
        decode_poll_request(data)
    assert info.value.field == "protocol_version"
    assert "unsupported version" in str(info.value) and "speaks 1" in str(info.value)
    resp = _json(full_response())
    resp["protocol_version"] = version
    with pytest.raises(UnsupportedProtocolVersion):
        decode_poll_response(resp)


def test_too_many_stacks_names_the_list():
    data = _json(full_request())
    data["stacks"]["stacks"] = [{"stack": f"f{i}", "count": 1} for i in range(MAX_STACKS + 1)]
    with pytest.raises(ContractError) as info:
        decode_poll_request(data)
    assert info.value.field == "stacks.stacks"
    assert str(MAX_STACKS) in str(info.value)


def test_stack_string_too_long_names_the_item():
    data = _json(full_request())
    data["stacks"]["stacks"][1]["stack"] = "f;" * (MAX_STACK_CHARS // 2 + 1)
    with pytest.raises(ContractError) as info:
        decode_poll_request(data)
    assert info.value.field == "stacks.stacks[1].stack"
    assert f"at most {MAX_STACK_CHARS} characters" in str(info.value)


def test_identity_string_too_long():
    data = _json(full_request())
    data["agent"]["service"] = "s" * (MAX_NAME_CHARS + 1)
    with pytest.raises(ContractError) as info:
        decode_poll_request(data)
    assert info.value.field == "agent.service"


def test_message_over_byte_limit():
    raw = b'{"pad":"' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    with pytest.raises(ContractError, match=f"exceeds {MAX_MESSAGE_BYTES} bytes"):
        decode_poll_request(raw)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "must be a JSON object, got list"),
        (b"\xff\xfe", "not valid JSON"),
        (b'"text"', "must be a JSON object, got str"),
    ],
)
def test_malformed_bodies(raw: bytes, needle: str):
    with pytest.raises(ContractError, match=needle):
        decode_poll_request(raw)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.pop("agent"), "agent"),
        (lambda d: d["agent"].pop("service"), "agent.service"),
        (lambda d: d["agent"].update(pid=-1), "agent.pid"),
        (lambda d: d["agent"].update(profiler_backend="perf"), "agent.profiler_backend"),
        (lambda d: d.update(config_version=-3), "config_version"),
        (lambda d: d["window"].update(window_seconds=0), "window.window_seconds"),
        (lambda d: d["window"].update(node_cpu=1.5), "window.node_cpu"),
        (lambda d: d["window"].update(extra=1), "window.extra"),
        (lambda d: d["stacks"]["stacks"][0].update(count=0), "stacks.stacks[0].count"),
        (lambda d: d["stacks"].update(depth=500), "stacks.depth"),
    ],
)
def test_invalid_request_fields_are_named(mutate: Any, field: str):
    data = _json(full_request())
    mutate(data)
    with pytest.raises(ContractError) as info:
        decode_poll_request(data)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_response_with_params_out_of_bounds_is_refused_by_field():
    data = _json(full_response())
    data["params"]["stack_depth"] = 1000
    with pytest.raises(ContractError) as info:
        decode_poll_response(data)
    assert info.value.field == "params.stack_depth"
    assert "[1, 128]" in str(info.value)


def test_response_poll_interval_bounds():
    data = _json(full_response())
    data["poll_interval_s"] = 0.01
    with pytest.raises(ContractError) as info:
        decode_poll_response(data)
    assert info.value.field == "poll_interval_s"
