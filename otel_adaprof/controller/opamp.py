"""The controller's OpAMP server: params as remote config, each agent's config status.

An OpAMP agent (for instance one running ``opentelemetry-opamp-client``) posts binary
``AgentToServer`` messages to ``POST /v1/opamp`` and gets ``ServerToAgent`` back.

* Its first message carries an ``agent_description``; ``service.name`` among the
  identifying attributes names its service (``service.instance.id``, ``host.name``
  and ``process.pid`` are read when present).
* The controller offers the params that service should run — the open session's
  params, else the service defaults — as the remote config file ``adaprof.json``
  (:mod:`otel_adaprof.opamp_config`), and sends it again only when its hash differs
  from the last hash the agent reported.
* The agent's ``RemoteConfigStatus`` (APPLIED, FAILED with the error naming the
  field, ...) and effective config are recorded and shown by ``GET /v1/agents``.
* otel-adaprof's own agents also send each window's report as a custom message
  (:data:`~otel_adaprof.opamp_config.REPORT_CAPABILITY`): the controller treats it
  exactly like a native poll (credit, decision) and answers the decided params as
  the next remote config.
* A message from an instance it does not know (e.g. after a controller restart) is
  answered with the ``ReportFullState`` flag: the agent's state is rebuilt from its
  next message, so it lives in memory only (at most :data:`MAX_AGENTS` agents).

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.polling import ControllerCore
    >>> from otel_adaprof.controller.store import Store
    >>> from opentelemetry._opamp.proto import anyvalue_pb2, opamp_pb2 as pb
    >>> server = OpampServer(ControllerCore(ControllerConfig(), Store(":memory:")))
    >>> hello = pb.AgentToServer(instance_uid=bytes(16), capabilities=0x1003,
    ...     agent_description=pb.AgentDescription(identifying_attributes=[
    ...         anyvalue_pb2.KeyValue(key="service.name",
    ...                               value=anyvalue_pb2.AnyValue(string_value="shop"))]))
    >>> status, raw = server.handle(hello.SerializeToString())
    >>> answer = pb.ServerToAgent.FromString(raw)
    >>> status, list(answer.remote_config.config.config_map)
    (200, ['adaprof.json'])
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry._opamp.proto import opamp_pb2 as pb

from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.errors import ContractError
from otel_adaprof.opamp_config import (
    CONFIG_CONTENT_TYPE,
    CONFIG_FILE,
    REPORT_CAPABILITY,
    config_body,
    config_hash,
)
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest, PollResponse, decode_poll_request

__all__ = ["MAX_AGENTS", "OpampAgentState", "OpampServer", "merge_agents"]

log = logging.getLogger(__name__)

#: OpAMP agents remembered (the least recently seen are forgotten beyond it).
MAX_AGENTS = 10_000
#: Longest error message or effective config body kept per agent (characters).
MAX_TEXT = 2_000

SERVER_CAPABILITIES = (
    pb.ServerCapabilities_AcceptsStatus
    | pb.ServerCapabilities_OffersRemoteConfig
    | pb.ServerCapabilities_AcceptsEffectiveConfig
)
_STATUS_NAMES = {
    pb.RemoteConfigStatuses_UNSET: "UNSET",
    pb.RemoteConfigStatuses_APPLIED: "APPLIED",
    pb.RemoteConfigStatuses_APPLYING: "APPLYING",
    pb.RemoteConfigStatuses_FAILED: "FAILED",
}


@dataclass
class OpampAgentState:
    """What the controller knows of one OpAMP agent (shown under ``opamp`` in
    ``GET /v1/agents``)."""

    uid: str
    service: str
    instance_id: str
    host: str = ""
    pid: int = 0
    capabilities: int = 0
    last_seen: float = 0.0
    sequence_num: int = 0
    connected: bool = True
    offered_hash: str = ""
    answerable_hash: str = ""  # the config offered before the agent's last message
    offered_version: int = 0
    offered_params: dict[str, Any] | None = None
    session_id: str | None = None
    status: str = "UNSET"
    status_hash: str = ""
    error_message: str = ""
    effective_config: dict[str, Any] = field(default_factory=dict)
    reports: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``opamp`` object of ``GET /v1/agents``."""
        return {
            "instance_uid": self.uid,
            "connected": self.connected,
            "capabilities": self.capabilities,
            "sequence_num": self.sequence_num,
            "offered_config_hash": self.offered_hash,
            "remote_config_status": {
                "status": self.status,
                "config_hash": self.status_hash,
                "error_message": self.error_message,
                "current": bool(self.status_hash) and self.status_hash == self.answerable_hash,
            },
            "effective_config": self.effective_config,
            "reports": self.reports,
        }


def _attributes(values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in values:
        kind = kv.value.WhichOneof("value")
        if kind in ("string_value", "bool_value", "int_value", "double_value"):
            out[kv.key] = getattr(kv.value, kind)
    return out


def _error(message: str) -> bytes:
    answer = pb.ServerToAgent(
        error_response=pb.ServerErrorResponse(
            type=pb.ServerErrorResponseType_BadRequest, error_message=message[:MAX_TEXT]
        ),
        capabilities=SERVER_CAPABILITIES,
    )
    return bytes(answer.SerializeToString())


@dataclass
class _Step:
    """A received message that still needs params to answer."""

    message: Any
    agent: OpampAgentState
    answer: Any
    report: PollRequest | None


class OpampServer:
    """Answers ``AgentToServer`` messages over a :class:`ControllerCore`."""

    def __init__(self, core: ControllerCore, max_agents: int = MAX_AGENTS) -> None:
        self.core = core
        self.max_agents = max_agents
        self._agents: OrderedDict[str, OpampAgentState] = OrderedDict()
        self.reports = 0  # window reports handled (each one a poll of the core)

    def agents(self) -> list[OpampAgentState]:
        """Every remembered OpAMP agent, most recently seen first."""
        return sorted(self._agents.values(), key=lambda a: a.last_seen, reverse=True)

    def handle(self, raw: bytes) -> tuple[int, bytes]:
        """``(HTTP status, ServerToAgent bytes)`` for one ``AgentToServer`` body
        (database work on the calling thread)."""
        step = self._receive(raw)
        if isinstance(step, tuple):
            return step
        if step.report is not None:
            response = self.core.poll(step.report)
        else:
            response = self._target(step.agent)
        return self._offer(step, response)

    async def handle_async(self, raw: bytes) -> tuple[int, bytes]:
        """:meth:`handle` from the event loop: a report goes through the core's
        asynchronous poll (batched writes), the other reads run on its database threads."""
        step = self._receive(raw)
        if isinstance(step, tuple):
            return step
        if step.report is not None:
            response = await self.core.poll_async(step.report)
        else:
            response = await self.core.run_db(self._target, step.agent)
        return self._offer(step, response)

    def _receive(self, raw: bytes) -> _Step | tuple[int, bytes]:
        """Read the message and record what it says; a finished answer, or the step
        that still needs params (a report to poll, or the service's target)."""
        message = pb.AgentToServer()
        try:
            message.ParseFromString(raw)
        except DecodeError as exc:
            return 400, _error(f"body: not an OpAMP AgentToServer message ({exc})")
        if len(message.instance_uid) != 16:
            return 400, _error(f"instance_uid: must be 16 bytes, got {len(message.instance_uid)}")
        uid = message.instance_uid.hex()
        answer = pb.ServerToAgent(
            instance_uid=message.instance_uid, capabilities=SERVER_CAPABILITIES
        )
        agent: OpampAgentState | None
        if message.HasField("agent_description"):
            try:
                agent = self._register(uid, message.agent_description)
            except ContractError as exc:
                return 400, _error(str(exc))
        else:
            agent = self._agents.get(uid)
        if agent is None:  # unknown instance (e.g. the controller restarted): ask for it all
            answer.flags |= pb.ServerToAgentFlags_ReportFullState
            return 200, bytes(answer.SerializeToString())
        self._agents.move_to_end(uid)
        agent.last_seen = self.core.clock()
        agent.answerable_hash = agent.offered_hash
        agent.sequence_num = message.sequence_num
        agent.capabilities = message.capabilities
        if message.HasField("agent_disconnect"):
            agent.connected = False
            return 200, bytes(answer.SerializeToString())
        agent.connected = True
        if message.HasField("remote_config_status"):
            self._record_status(agent, message.remote_config_status)
        if message.HasField("effective_config"):
            agent.effective_config = self._effective(message.effective_config)

        custom = message.custom_message if message.HasField("custom_message") else None
        if custom is not None and custom.capability == REPORT_CAPABILITY:
            try:
                report = decode_poll_request(custom.data)
            except ContractError as exc:
                return 200, _error(str(exc))
            agent.instance_id = report.agent.instance_id
            return _Step(message, agent, answer, report)
        if agent.reports or not message.capabilities & pb.AgentCapabilities_AcceptsRemoteConfig:
            # a reporting agent gets params only in answer to a report
            return 200, bytes(answer.SerializeToString())
        return _Step(message, agent, answer, None)

    def _offer(self, step: _Step, response: PollResponse) -> tuple[int, bytes]:
        """Put ``response`` in the answer as remote config unless the agent has it."""
        agent, answer = step.agent, step.answer
        if step.report is not None:
            agent.reports += 1
            self.reports += 1
        body = config_body(response)
        digest = config_hash(body)
        reported = (
            agent.status_hash
            if (step.message.capabilities & pb.AgentCapabilities_ReportsRemoteConfig)
            else agent.offered_hash
        )
        # every report is answered with its decision (a new version); else only news
        if step.report is not None or digest.hex() != reported:
            answer.remote_config.config_hash = digest
            entry = answer.remote_config.config.config_map[CONFIG_FILE]
            entry.body = body
            entry.content_type = CONFIG_CONTENT_TYPE
        agent.offered_hash = digest.hex()
        agent.offered_version = response.config_version
        agent.offered_params = response.params.to_json()
        agent.session_id = response.session_id
        return 200, bytes(answer.SerializeToString())

    # ------------------------------------------------------------------------------

    def _register(self, uid: str, description: Any) -> OpampAgentState:
        ident = _attributes(description.identifying_attributes)
        other = _attributes(description.non_identifying_attributes)
        service = ident.get("service.name")
        if not isinstance(service, str) or not service or len(service) > 256:
            raise ContractError(
                [
                    (
                        "agent_description.identifying_attributes.service.name",
                        "a non-empty string attribute (1-256 chars) is required",
                    )
                ]
            )
        found = {**other, **ident}
        instance_id = str(found.get("service.instance.id") or uid)[:256]
        agent = self._agents.get(uid)
        if agent is None:
            agent = OpampAgentState(uid=uid, service=service, instance_id=instance_id)
            self._agents[uid] = agent
            while len(self._agents) > self.max_agents:
                self._agents.popitem(last=False)
        agent.service, agent.instance_id = service, instance_id
        agent.host = str(found.get("host.name", ""))[:256]
        pid = found.get("process.pid", 0)
        agent.pid = pid if isinstance(pid, int) and 0 <= pid <= 2**31 else 0
        return agent

    @staticmethod
    def _record_status(agent: OpampAgentState, status: Any) -> None:
        agent.status = _STATUS_NAMES.get(status.status, str(status.status))
        agent.status_hash = bytes(status.last_remote_config_hash).hex()
        agent.error_message = status.error_message[:MAX_TEXT]
        if agent.status == "FAILED":
            log.warning(
                "OpAMP agent %s (%s) failed to apply config %s: %s",
                agent.instance_id, agent.service, agent.status_hash[:12], agent.error_message,
            )  # fmt: skip

    @staticmethod
    def _effective(effective: Any) -> dict[str, Any]:
        files: dict[str, Any] = {}
        for name, entry in effective.config_map.config_map.items():
            text = bytes(entry.body)[: MAX_TEXT * 4].decode(errors="replace")
            value: Any = text[:MAX_TEXT]
            if entry.content_type in ("application/json", "text/json"):
                with contextlib.suppress(ValueError):
                    value = json.loads(text)
            files[name[:256]] = value
        return files

    def _target(self, agent: OpampAgentState) -> PollResponse:
        """The params the agent's service runs now: its open session's, else defaults."""
        core = self.core
        session = core.store.open_session_for(agent.service)
        if session is not None:
            params = Params.parse(core.session(session["id"])["params"])
            session_id: str | None = session["id"]
        else:
            params, session_id = core.config.params_for(agent.service), None
        same = params.to_json() == agent.offered_params and session_id == agent.session_id
        version = agent.offered_version if same else agent.offered_version + 1
        return PollResponse(
            config_version=max(version, 1),
            params=params,
            session_id=session_id,
            poll_interval_s=core.config.agents.poll_interval_s,
        )


def merge_agents(
    agents: list[dict[str, Any]], opamp_agents: list[OpampAgentState]
) -> list[dict[str, Any]]:
    """``GET /v1/agents`` rows with OpAMP agents: each row gets ``protocol``
    (``native`` or ``opamp``) and, for OpAMP agents, an ``opamp`` object; an OpAMP
    agent that never sent a native report gets a row of its own (``state`` null)."""
    by_id = {row["instance_id"]: row for row in agents}
    for native in agents:
        native["protocol"] = "native"
    for agent in opamp_agents:
        row: dict[str, Any] | None = by_id.get(agent.instance_id)
        if row is not None and "opamp" in row:
            continue  # an older OpAMP instance under the same id: the newest one shows
        if row is None:
            row = {
                "instance_id": agent.instance_id,
                "service": agent.service,
                "host": agent.host,
                "pid": agent.pid,
                "backend": None,
                "sdk_version": None,
                "last_seen": agent.last_seen,
                "config_version": agent.offered_version,
                "params": agent.offered_params,
                "state": None,
            }
            agents.append(row)
            by_id[agent.instance_id] = row
        row["protocol"] = "opamp"
        row["opamp"] = agent.to_json()
    agents.sort(key=lambda r: r["last_seen"], reverse=True)
    return agents
