"""SIGKILL during polling loses nothing acknowledged; agents continue after a restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess


def test_kill_9_during_polling_then_restart(tmp_path: Path):
    ctl = ControllerProcess(tmp_path / "adaprof.db").start()
    acknowledged: dict[str, int] = {}  # agent -> last config version answered
    sessions = [
        ctl.request("POST", "/v1/sessions", {"service": "shop", "mode": mode})["id"]
        for mode in ("adaptive",)
    ]
    stop = threading.Event()
    killing = threading.Event()
    lock = threading.Lock()

    def agent(name: str) -> None:
        version = 0
        while not stop.is_set():
            try:
                answer = ctl.request("POST", "/v1/agents/poll", poll_body(name, version), timeout=2)
            except (OSError, AssertionError):
                if killing.is_set():
                    return  # the controller died under us: this poll was never acknowledged
                continue  # a poll that timed out on a loaded machine: poll again, as agents do
            version = answer["config_version"]
            with lock:
                acknowledged[name] = version

    threads = [threading.Thread(target=agent, args=(f"a-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while min((acknowledged.get(f"a-{i}", 0) for i in range(3)), default=0) < 8:
        # (an agent thread that gave up on a timed-out poll left this loop spinning for
        # the whole test timeout on a loaded machine: the agents now poll again)
        assert time.monotonic() < deadline, f"agents stuck at {acknowledged}"
        time.sleep(0.005)
    killing.set()
    ctl.kill()  # SIGKILL mid-traffic
    stop.set()
    for t in threads:
        t.join(timeout=10)
    with lock:
        acked = dict(acknowledged)

    db = sqlite3.connect(tmp_path / "adaprof.db")
    for name, version in acked.items():
        got = db.execute(
            "SELECT MAX(config_version) FROM decisions WHERE instance_id = ?", (name,)
        ).fetchone()[0]
        assert got >= version, f"{name}: acknowledged v{version}, database has v{got}"
        reports = db.execute(
            "SELECT COUNT(*) FROM reports WHERE instance_id = ?", (name,)
        ).fetchone()[0]
        assert reports >= version - 1  # every acknowledged window report is there
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == len(sessions)
    db.close()

    ctl.start()  # same database
    try:
        session = ctl.request("GET", f"/v1/sessions/{sessions[0]}")
        assert session["state"] == "open"
        assert session["counts"]["decisions"] >= sum(acked.values())
        for name, version in acked.items():  # agents continue from their last version
            answer = ctl.request("POST", "/v1/agents/poll", poll_body(name, version))
            assert answer["config_version"] > version
        timeline = ctl.request("GET", f"/v1/sessions/{sessions[0]}/timeline")["windows"]
        assert len(timeline) >= sum(v - 1 for v in acked.values())
    finally:
        ctl.stop()
