"""An adaptive service's agents share a decision for ``policy.share_decision_s``.

Real poll handling (:class:`ControllerCore`, a SQLite file, the packaged Vowpal
Wabbit model), real poll requests and an injected clock: the first poll decides; another
agent's poll within the hold gets the same params without a prediction (logged
``{"shared": true}``, so neither learned from nor evaluated offline), unless its own
window leaves the budget bank spent; an agent's own next poll, and any poll after the
hold, decide again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.protocol import PollRequest
from otel_adaprof.session_spec import SessionSpec
from tests.controller.polls import poll_body

EPOCH = 1_800_000_000.0


def _core(
    tmp_path: Path, hold_s: float, horizon_s: float = 300.0
) -> tuple[ControllerCore, list[float]]:
    clock = [EPOCH]
    config = ControllerConfig.parse({"policy": {"share_decision_s": hold_s}})
    core = ControllerCore(config, Store(str(tmp_path / "adaprof.db")), clock=lambda: clock[0])
    spec = {"service": "shop", "duration_s": 3600, "goal": {"cost_horizon_s": horizon_s}}
    core.open_session(SessionSpec.model_validate(spec))
    return core, clock


def _poll(core: ControllerCore, agent: str, version: int, **window: float):  # type: ignore[no-untyped-def]
    return core.poll(PollRequest.model_validate(poll_body(agent, version, **window)))


def _db(tmp_path: Path, query: str) -> list[tuple]:
    db = sqlite3.connect(tmp_path / "adaprof.db")
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def _logged(tmp_path: Path) -> list[tuple[str, dict]]:
    rows = _db(tmp_path, "SELECT action, features FROM decisions ORDER BY id")
    return [(action, json.loads(features) if features else {}) for action, features in rows]


def test_other_agents_share_a_decision_within_the_hold_and_decide_after_it(tmp_path):
    core, clock = _core(tmp_path, 1.0)
    try:
        a1 = _poll(core, "a-1", 0)
        clock[0] += 0.4
        a2 = _poll(core, "a-2", 0)  # another agent within the hold: shared
        assert a2.params == a1.params
        clock[0] += 0.2
        a1_again = _poll(core, "a-1", a1.config_version)  # its own next poll: decides
        clock[0] += 1.5
        a2_after = _poll(core, "a-2", a2.config_version)  # past the hold: decides
        logged = _logged(tmp_path)
        assert [("offered" in f, f.get("shared", False)) for _, f in logged] == [
            (True, False), (False, True), (True, False), (True, False),
        ]  # fmt: skip
        assert logged[1][0] == logged[0][0]  # the same action
        assert core.polls.decisions_shared == 1 and core.decisions_made == 4
        assert a1_again.config_version > 0 and a2_after.config_version > 0
    finally:
        core.close()


def test_a_shared_decision_is_credited_but_not_learned_from(tmp_path):
    core, clock = _core(tmp_path, 1.0)
    try:
        a1 = _poll(core, "a-1", 0)
        clock[0] += 0.1
        a2 = _poll(core, "a-2", 0)  # shared
        policy = core.adaptive_policy("shop")
        before = policy.updates  # type: ignore[attr-defined]
        clock[0] += 0.1
        _poll(core, "a-2", a2.config_version)  # credits the shared decision
        assert policy.updates == before  # type: ignore[attr-defined]
        clock[0] += 0.1
        _poll(core, "a-1", a1.config_version)  # credits the bandit's own decision
        assert policy.updates == before + 1  # type: ignore[attr-defined]
        rewards = _db(tmp_path, "SELECT COUNT(*) FROM decisions WHERE reward IS NOT NULL")
        assert rewards == [(2,)]  # both windows' rewards are on record
    finally:
        core.close()


def test_an_agent_over_the_budget_gets_the_retreat_not_the_shared_decision(tmp_path):
    core, clock = _core(tmp_path, 1.0, horizon_s=10.0)  # one window moves the bank
    try:
        a1 = _poll(core, "a-1", 0)
        clock[0] += 0.1
        a2 = _poll(core, "a-2", 0)
        clock[0] += 0.1
        a1 = _poll(core, "a-1", a1.config_version)  # decides (its own next poll)
        clock[0] += 0.1
        # a-2's window used 0.8 of a core against a budget of 0.02: the bank is spent
        retreat = _poll(core, "a-2", a2.config_version, cpu_s=4.0)
        action, features = _logged(tmp_path)[-1]
        assert features.get("forced") == "over_budget", (action, features)
        assert retreat.params != a1.params
    finally:
        core.close()


def test_with_no_hold_every_poll_decides(tmp_path):
    core, clock = _core(tmp_path, 0.0)
    try:
        for agent in ("a-1", "a-2", "a-3"):
            _poll(core, agent, 0)
            clock[0] += 0.1
        assert all("offered" in f for _, f in _logged(tmp_path))
        assert core.polls.decisions_shared == 0
    finally:
        core.close()
