"""Group commit: concurrent polls share transactions; one bad poll does not sink a batch."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from otel_adaprof.controller.group_commit import GroupCommitter
from otel_adaprof.controller.store import Store
from otel_adaprof.controller.store_api import DecisionWrite, PollOutcome, PollWrite


def _write(agent: str, features: dict[str, object] | None = None) -> PollWrite:
    return PollWrite(
        instance_id=agent,
        service="shop",
        host="h",
        pid=1,
        backend="py-spy",
        sdk_version="",
        now=1.0,
        state=None,
        session_id=None,
        reported_version=0,
        window=None,
        stacks=None,
        report_session_id=None,
        reward=None,
        decision=DecisionWrite(
            policy="static", action="static", probability=1.0, features=features or {}, params={}
        ),
    )


def test_concurrent_polls_share_durable_transactions(tmp_path: Path):
    store = Store(str(tmp_path / "g.db"))

    async def main() -> list[PollOutcome]:
        committer = GroupCommitter(store)
        try:
            return await asyncio.gather(*(committer.submit(_write(f"a{i}")) for i in range(200)))
        finally:
            committer.close()
            stats = committer.stats
            assert stats.polls == 200 and stats.failures == 0
            assert stats.transactions < 20, stats  # batched, not one fsync per poll

    outcomes = asyncio.run(main())
    assert [o.config_version for o in outcomes] == [1] * 200
    store.close()
    db = sqlite3.connect(tmp_path / "g.db")  # on disk, through another connection
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 200
    db.close()


def test_a_failing_poll_is_isolated_from_its_batch(tmp_path: Path):
    store = Store(str(tmp_path / "g.db"))
    bad = _write("bad", features={"x": object()})  # not JSON: this poll's write fails
    results = store.record_polls([_write("a"), bad, _write("b")])
    assert isinstance(results[1], TypeError)
    assert [r.config_version for r in (results[0], results[2])] == [1, 1]  # type: ignore[union-attr]
    agents = {a["instance_id"] for a in store.list_agents()}
    assert agents == {"a", "b"}  # nothing of the failed poll, everything of the others
    assert store.get_decision("bad", 1) is None
    store.close()
