"""Models of services without an open session are dropped beyond ``models.max_in_memory``
(after a snapshot) and restored from it when the service returns (issue 14.7)."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from otel_adaprof.controller.config import PolicyConfig
from otel_adaprof.controller.policy.vw import VWPolicy
from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

SERVICES = 500
BOUND = 4
#: RSS the controller may gain between the first BOUND*5 services and the last: every
#: session, report and decision kept in memory, but no model beyond the bound (a model
#: is ~2.5 MB of RSS: 500 kept models would be over 1 GB).
RSS_GROWTH_MB = 80


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _session_of(ctl: ControllerProcess, service: str, polls: int) -> int:
    sid = ctl.request("POST", "/v1/sessions", {"service": service, "mode": "adaptive"})["id"]
    version = 0
    for _ in range(polls):  # every poll after the first credits a window: the model learns
        body = poll_body(f"{service}-a", version, service=service)
        version = ctl.request("POST", "/v1/agents/poll", body)["config_version"]
    ctl.request("POST", f"/v1/sessions/{sid}/stop")
    return version


def _snapshot(db_path: Path, service: str) -> bytes:
    db = sqlite3.connect(db_path)
    try:
        row = db.execute("SELECT model FROM model_snapshots WHERE service = ?", (service,))
        return bytes(row.fetchone()[0])
    finally:
        db.close()


def test_models_beyond_the_bound_are_dropped_and_restored(tmp_path: Path):
    config = tmp_path / "controller.yaml"
    config.write_text(
        f"models:\n  max_in_memory: {BOUND}\ndatabase:\n  model_snapshot_interval_s: 3600\n"
    )
    db_path = tmp_path / "adaprof.db"
    started = time.monotonic()
    with ControllerProcess(db_path, "--config", str(config)) as ctl:
        assert ctl.proc is not None
        _session_of(ctl, "svc-0", polls=8)  # 7 windows learned
        learned = _snapshot(db_path, "svc-0")

        warm = BOUND * 5
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: _session_of(ctl, f"svc-{i}", 3), range(1, warm)))
            rss_warm = _rss_mb(ctl.proc.pid)
            list(pool.map(lambda i: _session_of(ctl, f"svc-{i}", 3), range(warm, SERVICES)))
        rss_end = _rss_mb(ctl.proc.pid)
        assert rss_end - rss_warm < RSS_GROWTH_MB, (rss_warm, rss_end)

        # svc-0 returns: a new session, a new agent (no window yet, nothing to learn)
        assert _snapshot(db_path, "svc-0") == learned  # its model, dropped long ago
        ctl.request("POST", "/v1/sessions", {"service": "svc-0", "mode": "adaptive"})
        ctl.request("POST", "/v1/agents/poll", poll_body("svc-0-back", 0, service="svc-0"))
        assert "Traceback" not in ctl.log(), ctl.log()[-3000:]
    seconds = time.monotonic() - started

    db = sqlite3.connect(db_path)
    action, probability, features = db.execute(
        "SELECT action, probability, features FROM decisions WHERE instance_id = 'svc-0-back'"
    ).fetchone()
    db.close()
    logged = json.loads(features)
    state, offered, context = logged["state"], logged["offered"], logged.get("context", {})

    def pmf(policy: VWPolicy) -> list[float]:
        actions = [policy.catalog[policy.catalog.index(name)] for name in offered]
        return policy.scores(state, actions, context)

    restored = pmf(VWPolicy(model=learned))
    assert abs(restored[offered.index(action)] - probability) < 1e-6, (restored, probability)
    # ... and not as a new service's model would have decided
    assert pmf(VWPolicy.from_config(PolicyConfig())) != restored
    print(f"{SERVICES} services in {seconds:.1f} s; RSS {rss_warm:.0f} -> {rss_end:.0f} MB")
