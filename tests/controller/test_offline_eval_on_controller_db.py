"""``adaprof policy eval`` reads the decisions a real controller logged."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

ADAPROF = Path(sys.executable).with_name("adaprof")


def test_policy_eval_on_a_controller_database(tmp_path: Path):
    db = tmp_path / "adaprof.db"
    # every poll decides (two agents polling within a second otherwise share decisions,
    # and a shared one logs nothing to evaluate from: test_shared_decisions.py)
    config = tmp_path / "controller.yaml"
    config.write_text("policy:\n  share_decision_s: 0\n")
    with ControllerProcess(db, "--config", str(config)) as ctl:
        sid = ctl.request("POST", "/v1/sessions", {"service": "shop", "mode": "adaptive"})["id"]
        for agent in ("a-1", "a-2"):
            version = 0
            for i in range(8):
                version = ctl.request(
                    "POST", "/v1/agents/poll", poll_body(agent, version, cpu_s=0.02 * (i % 3))
                )["config_version"]
        ctl.request("POST", f"/v1/sessions/{sid}/stop")
    credited = (
        sqlite3.connect(db)
        .execute("SELECT COUNT(*) FROM decisions WHERE reward IS NOT NULL")
        .fetchone()[0]
    )
    result = subprocess.run(
        [str(ADAPROF), "policy", "eval", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["decisions"] == credited == 14
    estimates = report["estimates"]
    assert {"logged", "model", "static:off"} <= set(estimates)
    logged = estimates["logged"]
    assert logged["n"] == 14 and logged["ips"] == logged["dr"]  # on-policy: both are the mean
