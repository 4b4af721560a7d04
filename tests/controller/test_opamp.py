"""OpAMP on the real controller: the real ``opentelemetry-opamp-client`` against a
controller subprocess on 127.0.0.1, and the transport's edge cases."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry._opamp import OpAMPAgent, OpAMPClient
from opentelemetry._opamp.proto import opamp_pb2 as pb

from otel_adaprof import params as params_module
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.opamp_poller import OpampParamsCallbacks
from otel_adaprof.opamp_config import CONFIG_FILE
from otel_adaprof.params import Bound, Params
from tests.support.controller import ControllerProcess
from tests.support.waiting import wait_until

SESSION = {
    "service": "shop",
    "mode": "static",
    "duration_s": 600,
    "initial_params": {"sampling_interval_ms": 20, "stack_depth": 48},
}


@contextmanager
def opamp_agent(url: str, live: LiveParams, instance: str) -> Iterator[OpampParamsCallbacks]:
    """The package's own client and agent threads, with otel-adaprof's callbacks."""
    callbacks = OpampParamsCallbacks(live)
    client = OpAMPClient(
        endpoint=url + "/v1/opamp",
        agent_identifying_attributes={"service.name": "shop", "service.instance.id": instance},
        agent_non_identifying_attributes={"host.name": "test-host", "process.pid": 4242},
    )
    agent = OpAMPAgent(interval=0.3, callbacks=callbacks, client=client, initial_backoff=0.2)
    agent.start()
    try:
        yield callbacks
    finally:
        agent.stop(timeout=2)


def opamp_row(controller: ControllerProcess, instance: str) -> dict | None:
    rows = controller.request("GET", "/v1/agents")["agents"]
    return next((r for r in rows if r["instance_id"] == instance and "opamp" in r), None)


def test_session_params_reach_the_opamp_client_and_its_status_is_shown(controller):
    session = controller.request("POST", "/v1/sessions", SESSION)
    live = LiveParams(Params(stack_depth=16))
    with opamp_agent(controller.url, live, "shop-opamp-1") as callbacks:
        wait_until(lambda: live.current.session_id == session["id"], 15, "remote config")
        assert live.params.stack_depth == 48 and live.params.sampling_interval_ms == 20
        assert callbacks.applied >= 1 and callbacks.refused == 0

        def applied() -> dict | None:
            row = opamp_row(controller, "shop-opamp-1")
            status = row and row["opamp"]["remote_config_status"]
            return row if status and status["status"] == "APPLIED" and status["current"] else None

        row = wait_until(applied, 15, "APPLIED in GET /v1/agents")
        assert row["protocol"] == "opamp" and row["service"] == "shop"
        assert row["host"] == "test-host" and row["pid"] == 4242
        assert row["params"] == session["params"]
        effective = row["opamp"]["effective_config"][CONFIG_FILE]
        assert effective["params"]["stack_depth"] == 48
        assert effective["session_id"] == session["id"]
        assert row["opamp"]["remote_config_status"]["error_message"] == ""

        # the session ends: the next heartbeat brings the service defaults
        controller.request("POST", f"/v1/sessions/{session['id']}/stop")
        wait_until(lambda: live.current.session_id is None, 15, "defaults after the stop")
        assert live.params.stack_depth == Params().stack_depth


def test_a_bad_config_is_reported_failed_naming_the_field(controller, monkeypatch):
    """An agent whose bounds are narrower than the controller's (an older release, say)
    refuses the config, keeps its params, and the controller shows FAILED and why."""
    live = LiveParams(Params(stack_depth=16, sampling_interval_ms=30))
    # Only this process (the agent) narrows the bound; the controller subprocess keeps 128.
    monkeypatch.setitem(params_module.BOUNDS, "stack_depth", Bound(1, 32, "frames", "older"))
    session = controller.request("POST", "/v1/sessions", SESSION)
    with opamp_agent(controller.url, live, "shop-opamp-old") as callbacks:

        def failed() -> dict | None:
            row = opamp_row(controller, "shop-opamp-old")
            status = row and row["opamp"]["remote_config_status"]
            return row if status and status["status"] == "FAILED" else None

        row = wait_until(failed, 15, "FAILED in GET /v1/agents")
        status = row["opamp"]["remote_config_status"]
        assert status["error_message"].startswith("params.stack_depth: 48 is out of bounds")
        assert status["current"] and status["config_hash"] == row["opamp"]["offered_config_hash"]
        assert callbacks.refused >= 1 and callbacks.applied == 0
        assert live.params == Params(stack_depth=16, sampling_interval_ms=30)  # last good kept
        assert live.current.version == 0

        # a config it can take: a new session within its bounds is applied
        controller.request("POST", f"/v1/sessions/{session['id']}/stop")
        fitting = {**SESSION, "initial_params": {"sampling_interval_ms": 20, "stack_depth": 24}}
        second = controller.request("POST", "/v1/sessions", fitting)
        wait_until(lambda: live.current.session_id == second["id"], 15, "the fitting config")
        assert live.params.stack_depth == 24
        wait_until(
            lambda: (
                (r := opamp_row(controller, "shop-opamp-old"))
                and r["opamp"]["remote_config_status"]["status"] == "APPLIED"
            ),
            15,
            "APPLIED after FAILED",
        )


def _hello(uid: bytes = b"u" * 16, service: str = "shop") -> pb.AgentToServer:
    return pb.AgentToServer(
        instance_uid=uid,
        capabilities=pb.AgentCapabilities_ReportsStatus | pb.AgentCapabilities_AcceptsRemoteConfig,
        agent_description=pb.AgentDescription(
            identifying_attributes=[
                {"key": "service.name", "value": {"string_value": service}},
            ]
        ),
    )


def _post(controller: ControllerProcess, body: bytes, **headers: str) -> tuple[int, bytes]:
    return controller.raw(
        "POST",
        "/v1/opamp",
        body,
        headers={"Content-Type": "application/x-protobuf", **headers},
    )


def test_gzip_bodies_are_accepted(controller):
    status, raw = _post(
        controller, gzip.compress(_hello().SerializeToString()), **{"Content-Encoding": "gzip"}
    )
    assert status == 200
    answer = pb.ServerToAgent.FromString(raw)
    body = json.loads(answer.remote_config.config.config_map[CONFIG_FILE].body)
    assert body["params"] == Params().to_json()


def test_an_unknown_instance_is_asked_for_its_full_state(controller):
    heartbeat = pb.AgentToServer(instance_uid=b"z" * 16, capabilities=1)
    status, raw = _post(controller, heartbeat.SerializeToString())
    answer = pb.ServerToAgent.FromString(raw)
    assert status == 200 and answer.flags & pb.ServerToAgentFlags_ReportFullState
    assert not answer.HasField("remote_config")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"\xff\xff\xff", "body: not an OpAMP AgentToServer message"),
        (pb.AgentToServer(instance_uid=b"short").SerializeToString(), "instance_uid: must be 16"),
        (_hello(service="").SerializeToString(), "service.name"),
    ],
)
def test_bad_messages_are_refused_naming_the_field(controller, body, field):
    status, raw = _post(controller, body)
    assert status == 400
    answer = pb.ServerToAgent.FromString(raw)
    assert field in answer.error_response.error_message
    assert answer.error_response.type == pb.ServerErrorResponseType_BadRequest


def test_a_json_body_is_refused_with_415(controller):
    status, raw = controller.raw("POST", "/v1/opamp", b"{}", headers={"Content-Type": "a/json"})
    assert status == 415 and json.loads(raw)["field"] == "Content-Type"


def test_the_agent_token_opens_opamp(tmp_path):
    with ControllerProcess(tmp_path / "a.db", "--agent-token", "agent-secret") as ctl:
        body = _hello().SerializeToString()
        assert _post(ctl, body)[0] == 401
        assert _post(ctl, body, Authorization="Bearer wrong")[0] == 403
        assert _post(ctl, body, Authorization="Bearer agent-secret")[0] == 200


def test_the_status_is_current_only_until_a_newer_config_is_offered(controller):
    """Raw OpAMP messages, step by step: a new session's config is offered at the next
    heartbeat, and until the agent answers it the recorded status is not current."""
    uid = b"c" * 16
    caps = (
        pb.AgentCapabilities_ReportsStatus
        | pb.AgentCapabilities_AcceptsRemoteConfig
        | pb.AgentCapabilities_ReportsRemoteConfig
    )

    def send(**fields) -> pb.ServerToAgent:
        status, raw = _post(controller, pb.AgentToServer(
            instance_uid=uid, capabilities=caps, **fields).SerializeToString())  # fmt: skip
        assert status == 200
        return pb.ServerToAgent.FromString(raw)

    def applied(config_hash: bytes) -> pb.RemoteConfigStatus:
        return pb.RemoteConfigStatus(
            last_remote_config_hash=config_hash, status=pb.RemoteConfigStatuses_APPLIED
        )

    def shown() -> dict:
        row = opamp_row(controller, uid.hex())
        assert row is not None
        return row["opamp"]["remote_config_status"]

    first = send(agent_description=_hello(uid).agent_description)
    assert shown()["status"] == "UNSET" and not shown()["current"]
    assert not send(remote_config_status=applied(first.remote_config.config_hash)).HasField(
        "remote_config"
    )  # the agent has it: not sent again
    assert shown() == {"status": "APPLIED", "config_hash": first.remote_config.config_hash.hex(),
                       "error_message": "", "current": True}  # fmt: skip
    session = controller.request("POST", "/v1/sessions", SESSION)
    second = send()  # a heartbeat brings the session's params
    body = json.loads(second.remote_config.config.config_map[CONFIG_FILE].body)
    assert body["session_id"] == session["id"] and body["params"]["stack_depth"] == 48
    send()  # another heartbeat, the new config not answered yet
    assert shown()["status"] == "APPLIED" and not shown()["current"]
    send(remote_config_status=applied(second.remote_config.config_hash))
    assert shown()["current"] and shown()["config_hash"] == second.remote_config.config_hash.hex()
