"""The SQLite store on its own: schema versioning and report retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from otel_adaprof.controller.store import SCHEMA_VERSION, Store, StoreError
from otel_adaprof.controller.store_api import DecisionWrite, PollWrite


def test_schema_is_versioned_and_a_newer_file_is_refused(tmp_path: Path):
    path = tmp_path / "a.db"
    Store(str(path)).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this build"):
        Store(str(path))


def _poll(version: int) -> PollWrite:
    return PollWrite(
        instance_id="a",
        service="s",
        host="h",
        pid=1,
        backend="py-spy",
        sdk_version="",
        now=float(version),
        state={"n": version},
        session_id="x",
        reported_version=version,
        window={"n": version},
        stacks={"f": 1},
        report_session_id="x",
        reward=None,
        decision=DecisionWrite(
            policy="static", action="static", probability=1.0, features={}, params={}
        ),
    )


def test_reports_beyond_the_retention_are_dropped(tmp_path: Path):
    store = Store(str(tmp_path / "r.db"), report_retention=100)
    for i in range(350):
        store.record_poll(_poll(i))
    kept = store.count_reports()
    assert 100 <= kept < 200, kept
    assert store.profile("x") == {"f": 350}  # the session profile keeps every sample
    store.close()
