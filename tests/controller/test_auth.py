"""A configured token guards every mutating endpoint; agents may use their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

TOKEN = "admin-token-123"
AGENT_TOKEN = "agent-token-456"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("auth") / "adaprof.db"
    with ControllerProcess(db, "--agent-token", AGENT_TOKEN, token=TOKEN) as ctl:
        ctl.sid = ctl.request("POST", "/v1/sessions", {"service": "shop"})["id"]
        yield ctl


def mutating(sid: str) -> list[tuple[str, bytes]]:
    return [
        ("/v1/sessions", json.dumps({"service": "shop"}).encode()),
        (f"/v1/sessions/{sid}/stop", b""),
        ("/v1/agents/poll", json.dumps(poll_body("a-1")).encode()),
    ]


def test_missing_token_is_401_on_every_mutating_endpoint(guarded: ControllerProcess):
    for path, body in mutating(guarded.sid):
        status, raw = guarded.raw("POST", path, body, token=None)
        assert status == 401, path
        assert json.loads(raw)["field"] == "Authorization"


def test_wrong_token_is_403_on_every_mutating_endpoint(guarded: ControllerProcess):
    for path, body in mutating(guarded.sid):
        for header in ("Bearer wrong-token", "Basic " + TOKEN, TOKEN):
            status, _ = guarded.raw(
                "POST", path, body, token=None, headers={"Authorization": header}
            )
            assert status == 403, (path, header)


def test_agent_token_only_opens_the_poll(guarded: ControllerProcess):
    status, _ = guarded.raw(
        "POST", "/v1/agents/poll", json.dumps(poll_body("a-2")).encode(), token=AGENT_TOKEN
    )
    assert status == 200
    status, _ = guarded.raw(
        "POST", "/v1/sessions", json.dumps({"service": "x"}).encode(), token=AGENT_TOKEN
    )
    assert status == 403


def test_reads_stay_open_and_the_right_token_works(guarded: ControllerProcess):
    status, _ = guarded.raw("GET", "/v1/sessions", token=None)
    assert status == 200
    assert guarded.request("POST", f"/v1/sessions/{guarded.sid}/stop")["state"] == "completed"


def test_token_from_config_file(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(f"token: {TOKEN}\n")
    with ControllerProcess(tmp_path / "db", "--config", str(config)) as ctl:
        status, _ = ctl.raw("POST", "/v1/sessions", b'{"service":"s"}', token=None)
        assert status == 401
