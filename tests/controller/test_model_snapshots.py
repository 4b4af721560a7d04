"""Kill -9 loses at most the model updates since the last snapshot; the model resumes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from otel_adaprof.controller.policy.vw import VWPolicy
from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess


def _snapshot(db_path: Path) -> tuple[bytes, float] | None:
    db = sqlite3.connect(db_path)
    try:
        row = db.execute(
            "SELECT model, saved_at FROM model_snapshots WHERE service = 'shop'"
        ).fetchone()
    finally:
        db.close()
    return (bytes(row[0]), float(row[1])) if row else None


def test_kill_9_resumes_the_model_from_its_last_snapshot(tmp_path: Path):
    config = tmp_path / "controller.yaml"
    config.write_text("database:\n  model_snapshot_interval_s: 1\n")
    db_path = tmp_path / "adaprof.db"
    ctl = ControllerProcess(db_path, "--config", str(config)).start()
    try:
        sid = ctl.request("POST", "/v1/sessions", {"service": "shop", "mode": "adaptive"})["id"]
        version = 0
        for _ in range(12):  # 11 credited windows: 11 model updates
            version = ctl.request("POST", "/v1/agents/poll", poll_body("a-1", version))[
                "config_version"
            ]
        learned_at = time.time()
        deadline = time.monotonic() + 10
        snap = _snapshot(db_path)
        while snap is None or snap[1] < learned_at:  # a periodic snapshot after the updates
            assert time.monotonic() < deadline, "no periodic model snapshot"
            time.sleep(0.2)
            snap = _snapshot(db_path)
    finally:
        ctl.kill()

    db = sqlite3.connect(db_path)
    decisions = db.execute(
        "SELECT probability, reward FROM decisions WHERE session_id = ? ORDER BY id", (sid,)
    ).fetchall()
    state = json.loads(db.execute("SELECT features FROM decisions ORDER BY id DESC").fetchone()[0])[
        "state"
    ]
    db.close()
    assert len(decisions) == 12
    assert all(0.0 < p <= 1.0 for p, _ in decisions)
    assert sum(r is not None for _, r in decisions) == 11  # every reported window's reward

    def scores(blob: bytes | None) -> list[float]:
        policy = VWPolicy(seed=1, model=blob)
        return list(policy.scores(state, list(policy.catalog)))

    assert scores(snap[0]) != scores(None), "the snapshot holds what the model learned"

    ctl.start()  # same database: the service's model is restored from the snapshot
    try:
        answer = ctl.request("POST", "/v1/agents/poll", poll_body("a-1", version))
        assert answer["config_version"] == version + 1 and answer["session_id"] == sid
    finally:
        assert ctl.stop() == 0
    after = _snapshot(db_path)
    assert after is not None
    # The window decided before the crash cannot be learned from (its context died with
    # the process), so the model written on shutdown predicts exactly as the one it
    # resumed from (VW's bytes also carry counters that predictions advance).
    assert scores(after[0]) == scores(snap[0])
