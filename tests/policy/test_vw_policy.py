"""The VW policy: logged decisions, learning from credited rewards, snapshots that
survive a kill -9 of the process that wrote them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from otel_adaprof.controller.policy.base import Decision, DecisionContext
from otel_adaprof.controller.policy.catalog import Catalog, load_catalog
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.session_spec import Mode
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS
from otel_adaprof.sim.training import SIM_GOAL


def _ctx() -> DecisionContext:
    return DecisionContext(
        service="s", initial_params=Params(), params_in_force=Params(), mode=Mode.ADAPTIVE
    )


def test_decisions_carry_probability_and_json_features():
    policy = VWPolicy(seed=1)
    d = policy.decide(_ctx())
    assert 0.0 < d.probability <= 1.0
    assert d.action in d.features["offered"]
    assert set(d.features["context"]) == set(d.features["offered"])
    json.dumps(d.features)  # the controller stores them as JSON


def test_learning_moves_the_model_towards_the_rewarded_action():
    full = load_catalog()
    policy = VWPolicy(
        Catalog(
            [
                full[full.index(n)]
                for n in ("off", "watch-reflex", "maintain-2hz-reflex", "learn-20hz")
            ]
        ),
        seed=2,
    )
    ctx = _ctx()
    d = policy.decide(ctx)
    names = d.features["offered"]
    offered = [policy.catalog[policy.catalog.index(n)] for n in names]
    before = policy.scores(d.features["state"], offered, d.features["context"])
    for _ in range(30):
        for name in names:  # logged decisions of a uniform logger, credited one by one
            logged = Decision(
                params=Params(), action=name, probability=1 / len(names), features=d.features
            )
            policy.learn(ctx, logged, 2.0 if name == "maintain-2hz-reflex" else -1.0)
    after = policy.scores(d.features["state"], offered, d.features["context"])
    i = names.index("maintain-2hz-reflex")
    assert after[i] > before[i] and after[i] == max(after)
    assert policy.updates == 30 * len(names)


def test_foreign_or_static_decisions_are_not_learned():
    policy = VWPolicy(seed=2)
    policy.learn(_ctx(), Decision(params=Params(), action="static"), 5.0)
    policy.learn(
        _ctx(),
        Decision(params=Params(), action="nope", features={"state": {}, "offered": ["nope"]}),
        5.0,
    )
    assert policy.updates == 0


class _Recorder(VWPolicy):
    """Counts which decisions were credited (the sim plays the controller)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.decided: list[Decision] = []
        self.credited: list[Decision] = []

    def decide(self, ctx):
        d = super().decide(ctx)
        self.decided.append(d)
        return d

    def learn(self, ctx, decision, reward):
        self.credited.append(decision)
        super().learn(ctx, decision, reward)


def test_each_decision_is_credited_once_with_the_window_it_ran():
    policy = _Recorder(seed=4)
    run = run_policy(policy, SCENARIOS["hot-path"], seed=4, windows=25, goal=SIM_GOAL)
    assert len(run.windows) == 25
    # decision k ran in window k and is credited by that window's report, in order
    assert [id(d) for d in policy.credited] == [id(d) for d in policy.decided[:25]]


CHILD = textwrap.dedent(
    """
    import json, sqlite3, sys
    from otel_adaprof.controller.policy.vw import VWPolicy
    from otel_adaprof.controller.policy.decision_log import write_decisions
    from otel_adaprof.sim.runner import run_policy
    from otel_adaprof.sim.scenario import SCENARIOS
    from otel_adaprof.sim.training import SIM_GOAL

    db = sys.argv[1]
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS model_snapshots "
                 "(id INTEGER PRIMARY KEY, service TEXT, model BLOB, probe TEXT, updates INT)")
    row = conn.execute("SELECT model FROM model_snapshots ORDER BY id DESC LIMIT 1").fetchone()
    policy = VWPolicy(seed=9, model=row[0] if row else None)
    probe = {"first": 0.0, "drift": 0.3, "novel": 0.1, "in_log_rate": 0.2}
    pending = []

    def credit(decision, reward):
        logged = (decision.action, decision.probability, dict(decision.features), reward.total)
        pending.append(logged)
        if len(pending) % 10 == 0:  # decisions and rewards are committed as they come
            write_decisions(conn, "svc", pending[-10:])
        if len(pending) % 30 == 0:  # model snapshot every 30 updates
            offered = list(policy.catalog)
            conn.execute("INSERT INTO model_snapshots (service, model, probe, updates) "
                         "VALUES (?, ?, ?, ?)",
                         ("svc", policy.snapshot(), json.dumps(policy.scores(probe, offered)),
                          policy.updates))
            conn.commit()
            print("snapshot", policy.updates, flush=True)

    for seed in range(1000):
        run_policy(policy, SCENARIOS["hot-path"], seed=seed, goal=SIM_GOAL, on_credit=credit)
    """
)


def test_kill_9_loses_at_most_the_updates_since_the_last_snapshot(tmp_path):
    db = tmp_path / "adaprof.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < 3 and time.monotonic() < deadline:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                break  # the child died: fail below with its stderr
            seen += line.startswith("snapshot")
        assert seen == 3
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    conn = sqlite3.connect(db)
    blob, probe, updates = conn.execute(
        "SELECT model, probe, updates FROM model_snapshots ORDER BY id DESC LIMIT 1"
    ).fetchone()
    decisions = conn.execute("SELECT COUNT(*) FROM decisions WHERE reward IS NOT NULL").fetchone()[
        0
    ]
    conn.close()
    assert updates >= 90
    assert decisions >= updates  # every credited decision up to the snapshot is on disk
    restored = VWPolicy(seed=9, model=blob)
    state = {"first": 0.0, "drift": 0.3, "novel": 0.1, "in_log_rate": 0.2}
    offered = list(restored.catalog)
    assert restored.scores(state, offered) == json.loads(probe)  # exactly the snapshot
    # and it resumes: it keeps learning from there
    run_policy(restored, SCENARIOS["hot-path"], seed=77, windows=10, goal=SIM_GOAL)
    assert restored.updates == 10
