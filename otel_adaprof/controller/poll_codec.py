"""A poll's body in, its answer out: the protocol's JSON, on the controller's hot path.

The same messages as :func:`otel_adaprof.protocol.decode_poll_request` and
:func:`otel_adaprof.protocol.encode`, with pydantic-core's JSON parser and encoder
(written in Rust) instead of the standard library's, and each params object's JSON
computed once (params are immutable and decisions return a few catalog objects). A
body the fast parser refuses goes through :func:`decode_poll_request`, so a bad poll
gets exactly the error it got before, naming the field.

Usage::

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.protocol import PollResponse, encode
    >>> req = read_poll(b'{"agent": {"service": "shop", "instance_id": "i-1"}}')
    >>> req.agent.service, req.config_version
    ('shop', 0)
    >>> answer = PollResponse(config_version=1, params=Params())
    >>> json.loads(write_answer(answer)) == json.loads(encode(answer))
    True
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    MAX_MESSAGE_BYTES,
    PollRequest,
    PollResponse,
    decode_poll_request,
    encode,
)

#: JSON form of the params objects decisions return (cleared beyond the bound).
_PARAMS_JSON: dict[int, tuple[Params, dict[str, Any]]] = {}
_PARAMS_JSON_MAX = 4096
#: Types a field of :class:`PollResponse` other than ``params`` may hold to be written
#: as is (anything else goes through :func:`~otel_adaprof.protocol.encode`).
_PLAIN = (int, float, str, bool, type(None))


def params_json(params: Params) -> dict[str, Any]:
    """``params.to_json()``, computed once per params object (they are immutable).

    >>> p = Params()
    >>> params_json(p) is params_json(p), params_json(p) == p.to_json()
    (True, True)
    """
    hit = _PARAMS_JSON.get(id(params))
    if hit is not None and hit[0] is params:
        return hit[1]
    data = params.to_json()
    if len(_PARAMS_JSON) >= _PARAMS_JSON_MAX:
        _PARAMS_JSON.clear()
    _PARAMS_JSON[id(params)] = (params, data)
    return data


def read_poll(raw: bytes) -> PollRequest:
    """Validate an agent's poll body (as :func:`decode_poll_request`)."""
    if len(raw) <= MAX_MESSAGE_BYTES:
        try:
            data = from_json(raw)
        except ValueError:
            data = None
        if isinstance(data, dict):
            return decode_poll_request(data)
    return decode_poll_request(raw)  # too large or not a JSON object: its exact error


def write_answer(response: PollResponse) -> bytes:
    """The answer's JSON body (the same JSON as :func:`~otel_adaprof.protocol.encode`)."""
    data: dict[str, Any] = {}
    for name in PollResponse.model_fields:
        value = getattr(response, name)
        if name == "params":
            value = params_json(value)
        elif not isinstance(value, _PLAIN):
            return encode(response)
        data[name] = value
    try:
        return to_json(data)
    except (PydanticSerializationError, ValueError):
        return json.dumps(data, separators=(",", ":")).encode()
