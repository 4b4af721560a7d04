"""What otel-adaprof puts in an OpAMP remote config, shared by controller and agent.

The controller offers each OpAMP agent one config file, :data:`CONFIG_FILE`, with
content type ``application/json``: the body is a
:class:`~otel_adaprof.protocol.PollResponse` (``config_version``, ``params``,
``session_id``, ``poll_interval_s``), and the config hash is the SHA-256 of that body.
An agent validates it exactly like a native poll answer: params outside their bounds,
an unknown field or protocol version are refused, naming the field.

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.protocol import PollResponse
    >>> body = config_body(PollResponse(config_version=3, params=Params()))
    >>> read_config_body(body).config_version
    3
    >>> len(config_hash(body))
    32
    >>> try:
    ...     read_config_body(body.replace(b'"stack_depth":64', b'"stack_depth":999'))
    ... except ContractError as exc:
    ...     print(exc.field)
    params.stack_depth

Agents of otel-adaprof also send each window's report inside the OpAMP exchange, as a
custom message of capability :data:`REPORT_CAPABILITY` whose data is a
:class:`~otel_adaprof.protocol.PollRequest` in JSON.
"""

from __future__ import annotations

import hashlib

from otel_adaprof.errors import ContractError
from otel_adaprof.protocol import PollResponse, decode_poll_response, encode

#: Name of the config file in ``AgentRemoteConfig.config.config_map``.
CONFIG_FILE = "adaprof.json"
#: Content type of that file (the OpAMP Python client reads application/json and text/json).
CONFIG_CONTENT_TYPE = "application/json"
#: Content types an agent accepts for :data:`CONFIG_FILE`.
ACCEPTED_CONTENT_TYPES = ("application/json", "text/json")
#: OpAMP custom capability under which otel-adaprof agents send window reports.
REPORT_CAPABILITY = "io.github.otel-adaprof.window"
#: ``CustomMessage.type`` of a window report (data: a ``PollRequest`` in JSON).
REPORT_TYPE = "PollRequest"


def config_body(response: PollResponse) -> bytes:
    """The config file body for ``response`` (compact JSON)."""
    return encode(response)


def config_hash(body: bytes) -> bytes:
    """The OpAMP config hash of a body (SHA-256, 32 bytes)."""
    return hashlib.sha256(body).digest()


def read_config_body(body: bytes | str, content_type: str = CONFIG_CONTENT_TYPE) -> PollResponse:
    """Validate a config file; :class:`ContractError` names the offending field."""
    if content_type not in ACCEPTED_CONTENT_TYPES:
        allowed = ", ".join(ACCEPTED_CONTENT_TYPES)
        raise ContractError([("content_type", f"{content_type!r} is not one of {allowed}")])
    return decode_poll_response(body)
