"""The store interface, the same tests on SQLite and on a real PostgreSQL 15 server.

Plus what only the PostgreSQL store has: schema versioning in ``adaprof_schema``,
concurrent polls of one agent from two connections (two replicas), and the model lease.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from otel_adaprof.controller.store import Store, StoreError
from otel_adaprof.controller.store_api import (
    ControllerStore,
    DecisionWrite,
    PollOutcome,
    PollWrite,
    RewardWrite,
)
from otel_adaprof.controller.store_postgres import SCHEMA_VERSION, PostgresStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ControllerStore]:
    """Each test once per backend."""
    if request.param == "sqlite":
        s: ControllerStore = Store(str(tmp_path / "s.db"), report_retention=100)
    else:
        url = request.getfixturevalue("postgres_url")
        s = PostgresStore(url, report_retention=100)
    yield s
    s.close()


def poll(
    instance: str,
    version: int,
    *,
    session: str | None = "x",
    stacks: dict[str, int] | None = None,
    reward: float | None = None,
    policy: str = "static",
    params: dict[str, int] | None = None,
) -> PollWrite:
    return PollWrite(
        instance_id=instance,
        service="s",
        host="h",
        pid=1,
        backend="py-spy",
        sdk_version="1.0",
        now=1000.0 + version,
        state={"n": version} if version else None,
        session_id=session,
        reported_version=version,
        window={"n": version} if version else None,
        stacks=(stacks if stacks is not None else {"f": 1}) if version else None,
        report_session_id=session,
        reward=RewardWrite(total=reward, terms={"t": reward}) if reward is not None else None,
        decision=DecisionWrite(
            policy=policy,
            action="a1",
            probability=0.25,
            features={"state": {"x": 1.0}, "offered": ["a1"]},
            params=params or {"stack_depth": 32},
        ),
    )


def test_sessions_open_complete_expire(store: ControllerStore):
    a = store.create_session("shop", {"service": "shop"}, now=100.0, ends_at=200.0)
    b = store.create_session("shop", {"service": "shop", "n": 2}, now=150.0, ends_at=400.0)
    got = store.get_session(a)
    assert got is not None and got["state"] == "open" and got["spec"] == {"service": "shop"}
    assert store.get_session("nope") is None
    assert [s["id"] for s in store.list_sessions()] == [b, a]
    assert [s["id"] for s in store.list_sessions("other")] == []
    opened = store.open_session_for("shop")
    assert opened is not None and opened["id"] == b
    assert store.expired_sessions(250.0) == [a]
    assert store.complete_session(a, 250.0) is True
    assert store.complete_session(a, 260.0) is False  # once
    done = store.get_session(a)
    assert done is not None and done["state"] == "completed" and done["stopped_at"] == 250.0
    assert store.expired_sessions(250.0) == []


def test_poll_path_versions_credit_profile_timeline(store: ControllerStore):
    first = store.record_poll(poll("i-1", 0))
    assert first == PollOutcome(config_version=1, credited=False)
    ctx = store.poll_context("i-1", "s", 1)
    assert ctx.session is None and ctx.ran_under == {"stack_depth": 32} and ctx.awaiting_reward
    second = store.record_poll(poll("i-1", 1, reward=0.5, stacks={"a;b": 3, "a;c": 1}))
    assert second == PollOutcome(config_version=2, credited=True)
    again = store.record_poll(poll("i-1", 1, reward=0.9))  # the same window reported twice
    assert again == PollOutcome(config_version=3, credited=False)  # credited once only
    assert store.poll_context("i-1", "s", 1).awaiting_reward is False
    # an agent that reports a version the store never gave (another controller's)
    assert store.record_poll(poll("i-2", 7)).config_version == 8
    decision = store.get_decision("i-1", 1)
    assert decision is not None
    assert decision["reward"] == 0.5 and decision["reward_terms"] == {"t": 0.5}
    assert decision["features"] == {"state": {"x": 1.0}, "offered": ["a1"]}
    assert decision["probability"] == 0.25 and decision["session_id"] == "x"
    assert [d["config_version"] for d in store.decisions("x")] == [1, 2, 3, 8]
    assert store.profile("x") == {"a;b": 3, "a;c": 1, "f": 2}
    assert store.session_counts("x") == {"agents": 2, "reports": 3, "decisions": 4}
    timeline = store.timeline("x")
    assert [(w["agent"], w["config_version"]) for w in timeline] == [
        ("i-1", 1),
        ("i-1", 1),
        ("i-2", 7),
    ]
    assert timeline[0]["reward"] == 0.5 and timeline[0]["state"] == {"n": 1}
    agents = {a["instance_id"]: a for a in store.list_agents()}
    assert agents["i-1"]["config_version"] == 3 and agents["i-1"]["state"] == {"n": 1}
    assert agents["i-1"]["params"] == {"stack_depth": 32}


def test_a_batch_commits_together_and_a_failing_poll_loses_only_itself(store: ControllerStore):
    bad = poll("i-9", 1)
    bad = PollWrite(**{**bad.__dict__, "stacks": {"f": "many"}})  # type: ignore[dict-item]
    out = store.record_polls([poll("i-1", 0), bad, poll("i-2", 0)])
    assert isinstance(out[0], PollOutcome) and out[0].config_version == 1
    assert isinstance(out[1], BaseException)
    assert isinstance(out[2], PollOutcome) and out[2].config_version == 1
    assert store.get_decision("i-2", 1) is not None
    assert store.get_decision("i-9", 2) is None


def test_reports_beyond_the_retention_are_dropped(store: ControllerStore):
    for i in range(1, 351):
        store.record_poll(poll("a", i))
    kept = store.count_reports()
    assert 100 <= kept < 200, kept
    assert store.profile("x") == {"f": 350}  # the session profile keeps every sample


def test_models_snapshot_round_trip(store: ControllerStore):
    assert store.load_model("s") is None
    store.save_model("s", b"\x00model-1", 1.0)
    store.save_model("s", b"\x00model-2", 2.0)
    assert store.load_model("s") == b"\x00model-2"
    store.ping()


# PostgreSQL only --------------------------------------------------------------------


def test_postgres_schema_is_versioned_and_a_newer_one_is_refused(postgres_url: str):
    PostgresStore(postgres_url).close()
    PostgresStore(postgres_url).close()  # reopening migrates nothing
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM adaprof_schema").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE adaprof_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this build"):
        PostgresStore(postgres_url)


def test_postgres_unreachable_is_a_clear_error():
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        PostgresStore("postgresql://adaprof:pw@127.0.0.1:1/none", timeout_s=1.0)


def test_two_replicas_polling_one_agent_never_hand_out_a_version_twice(postgres_url: str):
    """Two stores (two replicas' pools) race polls of the same agents: every answer
    is a distinct version and every decision is stored."""
    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    answers: dict[str, list[int]] = {"i-1": [], "i-2": []}
    lock = threading.Lock()

    def run(s: PostgresStore, k: int) -> None:
        for n in range(40):
            agent = "i-1" if (n + k) % 2 else "i-2"
            version = s.record_poll(poll(agent, 0, stacks={"a": 1})).config_version
            with lock:
                answers[agent].append(version)

    threads = [threading.Thread(target=run, args=(s, k)) for k, s in enumerate(stores * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for agent, versions in answers.items():
        assert sorted(versions) == list(range(1, len(versions) + 1)), agent
    assert len(stores[0].decisions("x")) == 160
    for s in stores:
        s.close()


def test_model_lease_is_exclusive_expires_and_fences_the_old_owner(postgres_url: str):
    s = PostgresStore(postgres_url)
    epoch = s.acquire_lease("shop", "r1", lease_s=0.5)
    assert epoch == 1
    assert s.acquire_lease("shop", "r2", lease_s=0.5) is None  # held by r1
    assert s.renew_lease("shop", "r1", 1, lease_s=0.5)
    assert s.acquire_lease("shop", "r1", lease_s=0.5) == 2  # its own: a new epoch
    assert s.save_owned_model("shop", b"m1", 1.0, owner="r1", epoch=2, learned_ids=[])
    threading.Event().wait(0.7)  # r1 stops renewing: the lease expires
    assert s.save_owned_model("shop", b"late", 2.0, owner="r1", epoch=2, learned_ids=[]) is False
    assert s.acquire_lease("shop", "r2", lease_s=5.0) == 3
    assert s.renew_lease("shop", "r1", 2, lease_s=5.0) is False  # r1 learns it lost it
    assert s.load_model("shop") == b"m1"
    assert s.model_generation("shop") == 1
    leases = s.leases()
    assert [(lease["owner"], lease["epoch"]) for lease in leases] == [("r2", 3)]
    assert leases[0]["remaining_s"] > 4
    s.release_lease("shop", "r2", 3)
    assert s.acquire_lease("shop", "r1", lease_s=5.0) == 4  # released: free at once
    s.close()


def test_owner_consumes_credited_decisions_and_marks_them_with_its_snapshot(postgres_url: str):
    s = PostgresStore(postgres_url)
    for agent in ("i-1", "i-2"):
        s.record_poll(poll(agent, 0, policy="adaptive"))
        s.record_poll(poll(agent, 1, policy="adaptive", reward=1.0))  # credits v1
    s.record_poll(poll("i-3", 0, policy="static"))
    s.record_poll(poll("i-3", 1, policy="static", reward=1.0))  # static: nothing to learn
    todo = s.credited_to_learn("s")
    assert [(d["instance_id"], d["config_version"]) for d in todo] == [("i-1", 1), ("i-2", 1)]
    assert s.credited_to_learn("s", exclude=[todo[0]["id"]]) == todo[1:]
    epoch = s.acquire_lease("s", "r1", lease_s=5.0)
    assert epoch is not None
    ids = [d["id"] for d in todo]
    assert s.save_owned_model("s", b"m", 1.0, owner="r1", epoch=epoch, learned_ids=ids)
    assert s.credited_to_learn("s") == []
    assert s.model_generation("s") == 1
    s.close()
