"""OpAMP instead of the native poll (``ADAPROF_CONTROL_PROTOCOL=opamp``).

:class:`OpampPoller` is the :class:`~otel_adaprof.instrumentation.control.poller.Poller`
with another transport: once per window it posts a binary OpAMP ``AgentToServer`` to
``POST /v1/opamp`` (``application/x-protobuf``) carrying

* its ``agent_description`` (``service.name``, ``service.instance.id``, ``host.name``,
  ``process.pid``), capabilities, and the status of the last remote config it got
  (APPLIED, or FAILED with the error naming the field) and its effective config;
* the window's report as a custom message
  (:data:`~otel_adaprof.opamp_config.REPORT_CAPABILITY`, a ``PollRequest`` in JSON),

and takes its next params from the ``ServerToAgent`` remote config file
``adaprof.json`` (:mod:`otel_adaprof.opamp_config`). The native poll's guarantees hold
unchanged, since the loop, backoff, timeout and fallback are the poller's: a config
that does not validate is refused naming the field and the last good params stay;
an unreachable controller keeps the params in force, then falls back to local params
after ``ADAPROF_STALE_PARAMS_S``.

:class:`OpampParamsCallbacks` does the same for a process that runs the
``opentelemetry-opamp-client`` package's own ``OpAMPAgent`` (any OpAMP server that
sends ``adaprof.json``)::

    from opentelemetry._opamp import OpAMPAgent, OpAMPClient
    client = OpAMPClient(endpoint="http://127.0.0.1:8080/v1/opamp",
                         agent_identifying_attributes={"service.name": "shop"})
    OpAMPAgent(interval=30, callbacks=OpampParamsCallbacks(live), client=client).start()

Usage of the status helper::

    >>> status = config_status(b"h" * 32, None)
    >>> status.status == pb.RemoteConfigStatuses_APPLIED
    True
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry._opamp.callbacks import OpAMPCallbacks
from opentelemetry._opamp.proto import anyvalue_pb2
from opentelemetry._opamp.proto import opamp_pb2 as pb

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.poller import (
    Poller,
    PollError,
)
from otel_adaprof.opamp_config import (
    CONFIG_CONTENT_TYPE,
    CONFIG_FILE,
    REPORT_CAPABILITY,
    REPORT_TYPE,
    read_config_body,
)
from otel_adaprof.protocol import AgentIdentity, PollRequest, PollResponse, encode

log = logging.getLogger("otel_adaprof.agent")

#: Capabilities an otel-adaprof agent declares.
AGENT_CAPABILITIES = (
    pb.AgentCapabilities_ReportsStatus
    | pb.AgentCapabilities_AcceptsRemoteConfig
    | pb.AgentCapabilities_ReportsRemoteConfig
    | pb.AgentCapabilities_ReportsEffectiveConfig
    | pb.AgentCapabilities_ReportsHeartbeat
)


def config_status(config_hash: bytes, error: ContractError | None) -> Any:
    """``RemoteConfigStatus``: APPLIED, or FAILED with the error (which names the field)."""
    if error is None:
        return pb.RemoteConfigStatus(
            last_remote_config_hash=config_hash, status=pb.RemoteConfigStatuses_APPLIED
        )
    return pb.RemoteConfigStatus(
        last_remote_config_hash=config_hash,
        status=pb.RemoteConfigStatuses_FAILED,
        error_message=str(error),
    )


def read_remote_config(remote_config: Any) -> PollResponse:
    """The validated ``adaprof.json`` of an ``AgentRemoteConfig``; :class:`ContractError`
    names the field (``config_map`` when the file is missing)."""
    files = remote_config.config.config_map
    if CONFIG_FILE not in files:
        names = ", ".join(sorted(files)) or "none"
        raise ContractError([("config_map", f"no {CONFIG_FILE} in the remote config ({names})")])
    entry = files[CONFIG_FILE]
    return read_config_body(bytes(entry.body), entry.content_type)


def _attr(key: str, value: str | int) -> Any:
    any_value = (
        anyvalue_pb2.AnyValue(int_value=value)
        if isinstance(value, int)
        else anyvalue_pb2.AnyValue(string_value=value)
    )
    return anyvalue_pb2.KeyValue(key=key, value=any_value)


class OpampPoller(Poller):
    """The poller over OpAMP: same loop and guarantees, binary OpAMP on the wire."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance_uid = uuid.uuid4().bytes
        self.sequence_num = 0
        self.status: Any = None
        self.effective: bytes | None = None

    def _message(self, request: PollRequest) -> Any:
        agent: AgentIdentity = request.agent
        message = pb.AgentToServer(
            instance_uid=self.instance_uid,
            sequence_num=self.sequence_num,
            capabilities=AGENT_CAPABILITIES,
            agent_description=pb.AgentDescription(
                identifying_attributes=[
                    _attr("service.name", agent.service),
                    _attr("service.instance.id", agent.instance_id),
                ],
                non_identifying_attributes=[
                    _attr("host.name", agent.host),
                    _attr("process.pid", agent.pid),
                    _attr("telemetry.distro.name", "otel-adaprof"),
                    _attr("telemetry.distro.version", agent.agent_version),
                ],
            ),
            custom_message=pb.CustomMessage(
                capability=REPORT_CAPABILITY, type=REPORT_TYPE, data=encode(request)
            ),
        )
        if self.status is not None:
            message.remote_config_status.CopyFrom(self.status)
        if self.effective is not None:
            entry = message.effective_config.config_map.config_map[CONFIG_FILE]
            entry.body = self.effective
            entry.content_type = CONFIG_CONTENT_TYPE
        return message

    def _send(self, request: PollRequest) -> PollResponse:
        body = bytes(self._message(request).SerializeToString())
        self.sequence_num += 1
        status, raw = self._post("/v1/opamp", body, "application/x-protobuf")
        answer: pb.ServerToAgent | None = pb.ServerToAgent()
        try:
            answer.ParseFromString(raw)  # type: ignore[union-attr]
        except DecodeError:
            answer = None
        if answer is not None and answer.HasField("error_response"):
            reason = answer.error_response.error_message
            raise PollError(f"controller refused the message: {reason}")
        if status != 200 or answer is None:
            raise PollError(
                f"controller answered HTTP {status}: {raw[:300].decode(errors='replace')}"
            )
        if not answer.HasField("remote_config"):  # OpAMP: no config = nothing changed
            current = self.live.current
            return PollResponse(
                config_version=current.version,
                params=current.params,
                session_id=current.session_id,
                poll_interval_s=self.window_s,
            )
        config_hash = bytes(answer.remote_config.config_hash)
        try:
            response = read_remote_config(answer.remote_config)
        except ContractError as exc:
            self.refused += 1
            self.status = config_status(config_hash, exc)
            log.error("otel-adaprof: refused the controller's config, field %s: %s", exc.field, exc)
            raise PollError(f"invalid config ({exc.field or 'body'}): {exc}") from None
        self.status = config_status(config_hash, None)
        self.effective = bytes(answer.remote_config.config.config_map[CONFIG_FILE].body)
        return response


class OpampParamsCallbacks(OpAMPCallbacks):
    """Callbacks for ``opentelemetry-opamp-client``'s ``OpAMPAgent``: puts the params of
    ``adaprof.json`` in force, or keeps the last good ones and reports FAILED naming
    the field; then sends the full state (status and effective config) at once."""

    def __init__(
        self, live: LiveParams, on_applied: Callable[[PollResponse], None] | None = None
    ) -> None:
        self.live = live
        self.on_applied = on_applied
        self.applied = 0
        self.refused = 0

    def on_message(self, agent: Any, client: Any, message: Any) -> None:
        remote = message.remote_config
        if remote is None:
            return
        try:
            response = read_remote_config(remote)
        except ContractError as exc:
            self.refused += 1
            log.error("otel-adaprof: refused the OpAMP config, field %s: %s", exc.field, exc)
            status, error = pb.RemoteConfigStatuses_FAILED, str(exc)
        else:
            self.live.apply(response.params, response.config_version, response.session_id)
            self.applied += 1
            status, error = pb.RemoteConfigStatuses_APPLIED, ""
            client.update_effective_config(
                {CONFIG_FILE: json.loads(encode(response))}, CONFIG_CONTENT_TYPE
            )
            if self.on_applied is not None:
                self.on_applied(response)
        changed = client.update_remote_config_status(
            remote_config_hash=remote.config_hash, status=status, error_message=error
        )
        if changed is not None:
            agent.send(client.build_full_state_message())
