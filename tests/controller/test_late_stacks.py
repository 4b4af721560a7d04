"""Late samples reach the session profile: an agent whose py-spy run spans a window's
close reports that run's samples later, per version (``late_stacks``); the real
controller adds them to the session's profile in the window they arrive in."""

from __future__ import annotations

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

BURN = "main (app.py:1);handle (app.py:9);burn_cpu (work.py:3)"
QUERY = "main (app.py:1);query (db.py:4)"


def test_late_stacks_of_an_earlier_version_count_in_the_session_profile(
    controller: ControllerProcess,
):
    spec = {"service": "late", "mode": "static", "initial_params": {"sampling_interval_ms": 20}}
    sid = str(controller.request("POST", "/v1/sessions", spec)["id"])
    version = controller.request("POST", "/v1/agents/poll", poll_body("l-1", 0, service="late"))[
        "config_version"
    ]
    body = poll_body("l-1", version, service="late", stacks={BURN: 10})
    version2 = controller.request("POST", "/v1/agents/poll", body)["config_version"]
    body = poll_body("l-1", version2, service="late", stacks={QUERY: 4})
    body["late_stacks"] = [
        {"config_version": version, "stacks": {"stacks": [{"stack": BURN, "count": 25}]}}
    ]
    controller.request("POST", "/v1/agents/poll", body)
    status, raw = controller.raw("GET", f"/v1/sessions/{sid}/profile?format=collapsed")
    assert status == 200
    got = dict(line.rsplit(" ", 1) for line in raw.decode().splitlines() if line.strip())
    assert got == {BURN: "35", QUERY: "4"}
