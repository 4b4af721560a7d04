"""SQLite persistence of the controller: sessions, agents, reports, decisions, models.

One file in WAL mode with ``synchronous=FULL``: a write is on disk before the HTTP
answer that acknowledges it, so a ``kill -9`` loses nothing acknowledged. The schema is
versioned with ``PRAGMA user_version`` and migrated forward on open (see
:data:`MIGRATIONS`).

Usage::

    >>> store = Store(":memory:")
    >>> sid = store.create_session("shop", {"service": "shop"}, now=100.0, ends_at=400.0)
    >>> store.get_session(sid)["state"]
    'open'
    >>> store.close()

Tables (offline evaluation, ``adaprof policy eval --db``, reads ``decisions`` and
``model_snapshots``):

``sessions(id, service, spec, state, created_at, ends_at, stopped_at)``
``agents(instance_id, service, host, pid, backend, last_seen, config_version, params, state)``
``reports(id, instance_id, service, session_id, config_version, window, stacks, received_at)``
``decisions(id, service, instance_id, session_id, config_version, action, probability,
features, params, reward, reward_terms, created_at)`` — ``reward`` is NULL until the
report of a window that ran under ``config_version`` arrives.
``model_snapshots(service, model, saved_at)``, ``profiles(session_id, stack, count)``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from otel_adaprof.controller.store_api import PollContext, PollOutcome, PollWrite

#: Ordered schema migrations; migration ``i`` brings the schema to version ``i + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY, service TEXT NOT NULL, spec TEXT NOT NULL,
        state TEXT NOT NULL, created_at REAL NOT NULL, ends_at REAL NOT NULL,
        stopped_at REAL
    );
    CREATE INDEX sessions_service ON sessions(service, state);
    CREATE TABLE agents (
        instance_id TEXT PRIMARY KEY, service TEXT NOT NULL, host TEXT, pid INTEGER,
        backend TEXT, sdk_version TEXT, last_seen REAL NOT NULL,
        config_version INTEGER NOT NULL DEFAULT 0, params TEXT, state TEXT
    );
    CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL,
        service TEXT NOT NULL, session_id TEXT, config_version INTEGER NOT NULL,
        window TEXT, stacks TEXT, received_at REAL NOT NULL
    );
    CREATE INDEX reports_session ON reports(session_id);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL,
        instance_id TEXT NOT NULL, session_id TEXT, config_version INTEGER NOT NULL,
        policy TEXT NOT NULL, action TEXT NOT NULL, probability REAL NOT NULL,
        features TEXT NOT NULL, params TEXT NOT NULL, reward REAL, reward_terms TEXT,
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX decisions_version ON decisions(instance_id, config_version);
    CREATE INDEX decisions_session ON decisions(session_id);
    CREATE TABLE model_snapshots (
        service TEXT PRIMARY KEY, model BLOB NOT NULL, saved_at REAL NOT NULL
    );
    CREATE TABLE profiles (
        session_id TEXT NOT NULL, stack TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (session_id, stack)
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: Seconds between checkpoints of the WAL into the database file (off the commit path).
CHECKPOINT_INTERVAL_S = 1.0


class StoreError(RuntimeError):
    """The database is unusable (newer schema, unreadable file)."""


class _PollFailed(Exception):
    """One poll of a batch failed: the batch is redone with a savepoint per poll."""


def _dumps(value: Any) -> str | None:
    """Compact JSON text (pydantic-core's encoder: about 5x faster than ``json.dumps``
    on a decision's features, the largest value a poll writes; the same JSON values,
    non-ASCII text as UTF-8 rather than ``\\u`` escapes, NaN and infinities as
    ``json.dumps`` writes them). Anything it cannot encode goes to ``json.dumps``.

    >>> _dumps({"a": [1, 0.5, None], "b": "é"})
    '{"a":[1,0.5,null],"b":"é"}'
    """
    if value is None:
        return None
    try:
        return to_json(value).decode()
    except (PydanticSerializationError, ValueError, TypeError):
        return json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """The controller's database (implements
    :class:`~otel_adaprof.controller.store_api.ControllerStore`). Thread-safe: one
    writer connection and one reader connection, each behind its lock; every method is
    one short transaction."""

    def __init__(self, path: str, report_retention: int = 100_000) -> None:
        self.path = path
        self.report_retention = report_retention
        self._lock = threading.Lock()  # the writer connection
        self._local = threading.local()  # per thread: when its last COMMIT began
        self._db = self._connect(path)
        self._migrate()
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if path == ":memory:" or path.startswith("file::memory:"):
            self._rlock, self._rdb = self._lock, self._db  # one database per connection
        else:  # WAL: reads go on their own connection and never wait for a commit
            self._rlock, self._rdb = threading.Lock(), self._connect(path)
            # Commits only append to the WAL (one fsync); copying it back into the
            # database file happens on a thread of its own, never inside a commit.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="adaprof-checkpoint", daemon=True
            )
            self._checkpointer.start()

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this build "
                    f"({SCHEMA_VERSION}); upgrade otel-adaprof"
                )
            for index in range(version, SCHEMA_VERSION):
                self._db.executescript(
                    f"BEGIN; {MIGRATIONS[index]} PRAGMA user_version = {index + 1}; COMMIT;"
                )

    @property
    def schema_version(self) -> int:
        """The schema version on disk."""
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _checkpoint_loop(self) -> None:
        db = self._connect(self.path)
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # busy or failing disk: the next pass retries
                    continue
        finally:
            db.close()

    def close(self) -> None:
        """Checkpoint the WAL and close."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        if self._rdb is not self._db:
            with self._rlock:
                self._rdb.close()
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    def ping(self) -> None:
        """Raise if the database does not answer."""
        with self._rlock:
            self._rdb.execute("SELECT 1").fetchone()

    def _write(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, tuple(args))

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._rlock:
            return self._rdb.execute(sql, tuple(args)).fetchall()

    # sessions -----------------------------------------------------------------------

    def create_session(
        self, service: str, spec: Mapping[str, Any], *, now: float, ends_at: float
    ) -> str:
        """Insert an open session and return its id."""
        session_id = uuid.uuid4().hex[:16]
        self._write(
            "INSERT INTO sessions(id, service, spec, state, created_at, ends_at) "
            "VALUES (?, ?, ?, 'open', ?, ?)",
            (session_id, service, _dumps(spec), now, ends_at),
        )
        return session_id

    def _session(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "service": row["service"],
            "spec": _loads(row["spec"]),
            "state": row["state"],
            "created_at": row["created_at"],
            "ends_at": row["ends_at"],
            "stopped_at": row["stopped_at"],
        }

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """One session, or ``None``."""
        rows = self._read("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return self._session(rows[0]) if rows else None

    def list_sessions(self, service: str | None = None) -> list[dict[str, Any]]:
        """All sessions, newest first (optionally of one service)."""
        if service is None:
            rows = self._read("SELECT * FROM sessions ORDER BY created_at DESC")
        else:
            rows = self._read(
                "SELECT * FROM sessions WHERE service = ? ORDER BY created_at DESC", (service,)
            )
        return [self._session(r) for r in rows]

    def open_session_for(self, service: str) -> dict[str, Any] | None:
        """The newest open session of ``service``."""
        rows = self._read(
            "SELECT * FROM sessions WHERE service = ? AND state = 'open' "
            "ORDER BY created_at DESC LIMIT 1",
            (service,),
        )
        return self._session(rows[0]) if rows else None

    def complete_session(self, session_id: str, now: float) -> bool:
        """Mark a session completed; False when it was not open."""
        cur = self._write(
            "UPDATE sessions SET state = 'completed', stopped_at = ? "
            "WHERE id = ? AND state = 'open'",
            (now, session_id),
        )
        return cur.rowcount > 0

    def expired_sessions(self, now: float) -> list[str]:
        """Ids of open sessions whose duration has run out."""
        rows = self._read("SELECT id FROM sessions WHERE state = 'open' AND ends_at <= ?", (now,))
        return [r["id"] for r in rows]

    def session_counts(self, session_id: str) -> dict[str, int]:
        """Agents, reports and decisions of a session."""
        with self._rlock:
            reports, agents = self._rdb.execute(
                "SELECT COUNT(*), COUNT(DISTINCT instance_id) FROM reports WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            decisions = self._rdb.execute(
                "SELECT COUNT(*) FROM decisions WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
        return {"agents": int(agents), "reports": int(reports), "decisions": int(decisions)}

    # the poll path ----------------------------------------------------------------

    def poll_context(self, instance_id: str, service: str, version: int) -> PollContext:
        """The service's open session and the decision ``version`` was answered with."""
        with self._rlock:
            srow = self._rdb.execute(
                "SELECT * FROM sessions WHERE service = ? AND state = 'open' "
                "ORDER BY created_at DESC LIMIT 1",
                (service,),
            ).fetchone()
            drow = (
                self._rdb.execute(
                    "SELECT params, reward FROM decisions "
                    "WHERE instance_id = ? AND config_version = ?",
                    (instance_id, version),
                ).fetchone()
                if version
                else None
            )
        return PollContext(
            session=self._session(srow) if srow is not None else None,
            ran_under=_loads(drow["params"]) if drow is not None else None,
            awaiting_reward=drow is not None and drow["reward"] is None,
        )

    def record_poll(self, write: PollWrite) -> PollOutcome:
        """All the writes of one poll in one transaction (see :class:`PollWrite`)."""
        outcome = self.record_polls([write])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @property
    def commit_started(self) -> float | None:
        """When (``time.monotonic()``) the calling thread's last poll transaction began
        its ``COMMIT`` (the WAL append and fsync): the group commit's timing reads it."""
        started: float | None = getattr(self._local, "commit_started", None)
        return started

    def record_polls(self, writes: list[PollWrite]) -> list[PollOutcome | BaseException]:
        """Several polls in one durable transaction (group commit): one fsync for all.

        A poll that fails (its exception is in its slot of the result) does not undo
        the others: the batch is retried with one savepoint per poll. When the commit
        itself fails, every slot holds that error: nothing of the batch was written.
        """
        with self._lock:
            try:
                return self._commit_polls(writes, isolate=False)
            except _PollFailed:
                return self._commit_polls(writes, isolate=True)
            except Exception as exc:
                return [exc for _ in writes]

    def _commit_polls(
        self, writes: list[PollWrite], *, isolate: bool
    ) -> list[PollOutcome | BaseException]:
        db = self._db
        results: list[PollOutcome | BaseException] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                if not isolate:
                    try:
                        results.append(self._apply_poll(write))
                    except Exception as exc:
                        raise _PollFailed from exc
                    continue
                db.execute("SAVEPOINT poll")
                try:
                    results.append(self._apply_poll(write))
                except Exception as exc:
                    db.execute("ROLLBACK TO poll")
                    results.append(exc)
                db.execute("RELEASE poll")
            self._local.commit_started = time.monotonic()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _apply_poll(self, w: PollWrite) -> PollOutcome:
        db = self._db
        window = _dumps(w.window)
        state = window if w.state is w.window else _dumps(w.state)
        # the version this answer carries: one more than any decision of this agent
        highest = db.execute(
            "SELECT MAX(config_version) FROM decisions WHERE instance_id = ?", (w.instance_id,)
        ).fetchone()[0]
        version = max(int(highest or 0), w.reported_version) + 1
        d = w.decision
        params = _dumps(d.params)
        db.execute(
            "INSERT INTO agents(instance_id, service, host, pid, backend, sdk_version, "
            "last_seen, state, config_version, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(instance_id) DO UPDATE SET service = excluded.service, "
            "host = excluded.host, pid = excluded.pid, backend = excluded.backend, "
            "sdk_version = excluded.sdk_version, last_seen = excluded.last_seen, "
            "state = COALESCE(excluded.state, agents.state), "
            "config_version = excluded.config_version, params = excluded.params",
            (
                w.instance_id,
                w.service,
                w.host,
                w.pid,
                w.backend,
                w.sdk_version,
                w.now,
                state,
                version,
                params,
            ),
        )
        if w.window is not None:
            self._insert_report(
                instance_id=w.instance_id,
                service=w.service,
                session_id=w.report_session_id,
                config_version=w.reported_version,
                window=window,
                stacks=w.stacks,
                now=w.now,
            )
        credited = False
        if w.reward is not None:
            cur = db.execute(
                "UPDATE decisions SET reward = ?, reward_terms = ? "
                "WHERE instance_id = ? AND config_version = ? AND reward IS NULL",
                (w.reward.total, _dumps(dict(w.reward.terms)), w.instance_id, w.reported_version),
            )
            credited = cur.rowcount > 0
        db.execute(
            "INSERT INTO decisions(service, instance_id, session_id, config_version, policy, "
            "action, probability, features, params, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                w.service,
                w.instance_id,
                w.session_id,
                version,
                d.policy,
                d.action,
                d.probability,
                _dumps(d.features) or "{}",
                params,
                w.now,
            ),
        )
        return PollOutcome(config_version=version, credited=credited)

    def _insert_report(
        self,
        *,
        instance_id: str,
        service: str,
        session_id: str | None,
        config_version: int,
        window: str | None,
        stacks: Mapping[str, int] | None,
        now: float,
    ) -> int:
        """Store a report (dropping the oldest beyond the retention) and fold its stacks
        into the session profile; inside the caller's transaction."""
        cur = self._db.execute(
            "INSERT INTO reports(instance_id, service, session_id, config_version, "
            "window, stacks, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                instance_id,
                service,
                session_id,
                config_version,
                window,
                _dumps(stacks),
                now,
            ),
        )
        report_id = int(cur.lastrowid or 0)
        if session_id and stacks:
            self._db.executemany(
                "INSERT INTO profiles(session_id, stack, count) VALUES (?, ?, ?) "
                "ON CONFLICT(session_id, stack) "
                "DO UPDATE SET count = count + excluded.count",
                [(session_id, s, int(c)) for s, c in stacks.items()],
            )
        cutoff = report_id - self.report_retention
        if cutoff > 0 and report_id % 100 == 0:
            self._db.execute("DELETE FROM reports WHERE id <= ?", (cutoff,))
        return report_id

    # agents -------------------------------------------------------------------------

    def list_agents(self) -> list[dict[str, Any]]:
        """Every agent ever seen, most recent first."""
        rows = self._read("SELECT * FROM agents ORDER BY last_seen DESC")
        return [
            {
                "instance_id": r["instance_id"],
                "service": r["service"],
                "host": r["host"],
                "pid": r["pid"],
                "backend": r["backend"],
                "sdk_version": r["sdk_version"],
                "last_seen": r["last_seen"],
                "config_version": r["config_version"],
                "params": _loads(r["params"]),
                "state": _loads(r["state"]),
            }
            for r in rows
        ]

    # reports and profiles ------------------------------------------------------------

    def count_reports(self) -> int:
        """Reports kept."""
        return int(self._read("SELECT COUNT(*) AS n FROM reports")[0]["n"])

    def profile(self, session_id: str) -> dict[str, int]:
        """The session's merged ``{stack: count}``."""
        rows = self._read("SELECT stack, count FROM profiles WHERE session_id = ?", (session_id,))
        return {r["stack"]: int(r["count"]) for r in rows}

    # decisions ------------------------------------------------------------------------

    def get_decision(self, instance_id: str, config_version: int) -> dict[str, Any] | None:
        """The decision that produced ``config_version`` for an agent."""
        rows = self._read(
            "SELECT * FROM decisions WHERE instance_id = ? AND config_version = ?",
            (instance_id, config_version),
        )
        return self._decision(rows[0]) if rows else None

    def _decision(self, r: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": r["id"],
            "service": r["service"],
            "instance_id": r["instance_id"],
            "session_id": r["session_id"],
            "config_version": r["config_version"],
            "policy": r["policy"],
            "action": r["action"],
            "probability": r["probability"],
            "features": _loads(r["features"]),
            "params": _loads(r["params"]),
            "reward": r["reward"],
            "reward_terms": _loads(r["reward_terms"]),
            "created_at": r["created_at"],
        }

    def decisions(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Logged decisions in order (of one session, or all)."""
        if session_id is None:
            rows = self._read("SELECT * FROM decisions ORDER BY id")
        else:
            rows = self._read(
                "SELECT * FROM decisions WHERE session_id = ? ORDER BY id", (session_id,)
            )
        return [self._decision(r) for r in rows]

    def timeline(self, session_id: str) -> list[dict[str, Any]]:
        """Per reported window of a session: agent, version, params, state, reward."""
        rows = self._read(
            "SELECT r.instance_id, r.config_version, r.window, r.received_at, "
            "d.params, d.action, d.probability, d.reward, d.reward_terms "
            "FROM reports r LEFT JOIN decisions d "
            "ON d.instance_id = r.instance_id AND d.config_version = r.config_version "
            "WHERE r.session_id = ? AND r.window IS NOT NULL ORDER BY r.id",
            (session_id,),
        )
        return [
            {
                "agent": r["instance_id"],
                "config_version": r["config_version"],
                "at": r["received_at"],
                "params": _loads(r["params"]),
                "action": r["action"],
                "probability": r["probability"],
                "state": _loads(r["window"]),
                "reward": r["reward"],
                "reward_terms": _loads(r["reward_terms"]),
            }
            for r in rows
        ]

    # models ---------------------------------------------------------------------------

    def save_model(self, service: str, model: bytes, now: float) -> None:
        """Keep the newest model snapshot of a service."""
        self._write(
            "INSERT INTO model_snapshots(service, model, saved_at) VALUES (?, ?, ?) "
            "ON CONFLICT(service) DO UPDATE SET model = excluded.model, "
            "saved_at = excluded.saved_at",
            (service, model, now),
        )

    def load_model(self, service: str) -> bytes | None:
        """The newest snapshot of a service's model, or ``None``."""
        rows = self._read("SELECT model FROM model_snapshots WHERE service = ?", (service,))
        return bytes(rows[0]["model"]) if rows else None
