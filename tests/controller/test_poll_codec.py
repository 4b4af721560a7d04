"""The controller's fast poll codec reads and writes what the protocol module does."""

from __future__ import annotations

import json

import pytest

from otel_adaprof.controller.poll_codec import read_poll, write_answer
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.protocol import MAX_MESSAGE_BYTES, PollResponse, decode_poll_request, encode

GOOD = {
    "protocol_version": 1,
    "agent": {"service": "shop", "instance_id": "i-é", "host": "h", "pid": 7},
    "config_version": 3,
    "window": {
        "window_start": 1.7e9 + 0.123456789,
        "window_seconds": 5.0,
        "process_cpu": 0.1 + 0.2,
        "markers_per_s": 1e-05,
        "samples_per_s": 19.999999999999996,
    },
    "stacks": {"stacks": [{"stack": "main (a.py:1)", "count": 4}], "total_samples": 4},
}


def test_a_poll_reads_as_the_protocol_reads_it() -> None:
    raw = json.dumps(GOOD).encode()
    assert read_poll(raw) == decode_poll_request(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[1, 2]",
        b'{"agent": {"service": "shop"',
        '{"agent": 1}'.encode("utf-16"),
        json.dumps({**GOOD, "config_version": -1}).encode(),
        json.dumps({**GOOD, "protocol_version": "1"}).encode(),
        json.dumps({**GOOD, "extra": 1}).encode(),
        b'{"agent": {"service": "shop", "instance_id": "i"}, "pad": "'
        + b"x" * MAX_MESSAGE_BYTES
        + b'"}',
    ],
)
def test_a_bad_poll_gets_the_protocol_s_error(raw: bytes) -> None:
    with pytest.raises(ContractError) as expected:
        decode_poll_request(raw)
    with pytest.raises(ContractError) as got:
        read_poll(raw)
    assert type(got.value) is type(expected.value)
    assert got.value.to_json() == expected.value.to_json()


def test_an_answer_writes_the_protocol_s_json() -> None:
    params = Params(sampling_interval_ms=7, trace_ratio=0.3, operation_ratios={"GET /": 0.05})
    for answer in (
        PollResponse(config_version=2, params=params, session_id="s-1", poll_interval_s=2.5),
        PollResponse(config_version=1, params=Params()),
    ):
        assert json.loads(write_answer(answer)) == json.loads(encode(answer))
