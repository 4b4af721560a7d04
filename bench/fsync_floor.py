"""How long this disk takes to make a small write durable: the floor of an acknowledged poll.

The controller answers a poll only after its transaction is on disk: SQLite in WAL mode
with ``synchronous=FULL`` appends the transaction's pages to the WAL and syncs it once
per ``COMMIT``. No poll can be answered faster than that sync, so its latency here is
the floor under the controller's poll latency (and its p99 under the poll's p99).

Three measurements, in a temporary folder of the filesystem ``bench/poll_load.py``
uses (the system's temporary folder, unless ``--dir``), each over ``--count`` syncs
(bounded by ``--max-seconds``):

- ``append + fdatasync``: write ``--bytes`` at the end of a growing file, then
  ``fdatasync`` (what SQLite does to the WAL on Linux; the file's size changes, so the
  filesystem's journal commits too);
- ``overwrite + fdatasync``: the same write over bytes already allocated (a WAL that
  restarted from its beginning after a checkpoint);
- ``SQLite COMMIT``: one row of ``--bytes`` inserted per transaction in a WAL database
  with ``synchronous=FULL``: the whole acknowledged write, as the controller makes it.

``--bytes`` defaults to what one poll appends to the WAL in this tree's controller,
measured first (:func:`poll_commit_bytes`: an adaptive session, the poll body of
``bench/poll_load.py``, one poll per transaction: about 13 WAL frames of
4,096 + 24 bytes: the agent, report and decision rows and their indexes).

    python bench/fsync_floor.py                    # 3000 syncs of each kind
    python bench/fsync_floor.py --count 500 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def poll_commit_bytes(folder: Path, polls: int = 100) -> int:
    """WAL bytes one poll's transaction appends, measured with the real controller core
    (adaptive session, the full window reports of ``bench/poll_load.py``)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from poll_load import poll_body

    from otel_adaprof.controller.config import ControllerConfig
    from otel_adaprof.controller.polling import ControllerCore
    from otel_adaprof.controller.store import Store
    from otel_adaprof.protocol import decode_poll_request
    from otel_adaprof.session_spec import SessionSpec

    path = folder / "poll.db"
    store = Store(str(path))
    core = ControllerCore(ControllerConfig(), store)
    try:
        core.open_session(
            SessionSpec.parse({"service": "bench", "mode": "adaptive", "duration_s": 3600})
        )

        def poll(i: int, version: int) -> int:
            body = json.loads(poll_body("bench", f"agent-{i}", version))
            return core.poll(decode_poll_request(body)).config_version

        versions = [poll(i, 0) for i in range(polls)]
        with store._lock:  # no checkpoint may reset the WAL while it is measured
            store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store._stop.set()  # the checkpointer stops (between measurements only)
        if store._checkpointer is not None:
            store._checkpointer.join(timeout=10)
        wal = Path(f"{path}-wal")
        before = wal.stat().st_size
        for i, version in enumerate(versions):
            poll(i, version)
        return (wal.stat().st_size - before) // polls
    finally:
        core.close()
        store.close()


def _summary(name: str, seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    return {
        "kind": name,
        "count": len(ms),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "p999_ms": pct(0.999),
        "max_ms": ms[-1],
        "mean_ms": statistics.fmean(ms),
        "over_10ms": sum(1 for m in ms if m >= 10.0) / len(ms),
    }


def raw_syncs(folder: Path, size: int, count: int, deadline: float, *, grow: bool) -> list[float]:
    """Seconds of each write + fdatasync of ``size`` bytes (appended, or over old bytes)."""
    path = folder / ("append.bin" if grow else "overwrite.bin")
    block = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if not grow:  # allocated and synced once, then rewritten in place
            span = max(1, min(count, 256))
            for _ in range(span):
                os.write(fd, block)
            os.fsync(fd)
        times: list[float] = []
        offset = 0
        while len(times) < count and time.monotonic() < deadline:
            if not grow and offset >= 256 * size:
                offset = 0
            started = time.perf_counter()
            os.pwrite(fd, block, offset)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
            offset += size
        return times
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def sqlite_commits(folder: Path, size: int, count: int, deadline: float) -> list[float]:
    """Seconds of each one-row transaction (WAL, ``synchronous=FULL``), set up as the
    controller's store is: no checkpoint inside a commit, a PASSIVE checkpoint every
    ``CHECKPOINT_INTERVAL_S`` on a thread of its own."""
    from otel_adaprof.controller.store import CHECKPOINT_INTERVAL_S

    path = folder / "floor.db"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    stop = threading.Event()

    def checkpoints() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            while not stop.wait(CHECKPOINT_INTERVAL_S):
                other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            other.close()

    checkpointer = threading.Thread(target=checkpoints, daemon=True)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
        checkpointer.start()
        body = os.urandom(size)
        times: list[float] = []
        while len(times) < count and time.monotonic() < deadline:
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t(body) VALUES (?)", (body,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - started)
        return times
    finally:
        stop.set()
        if checkpointer.is_alive():
            checkpointer.join(timeout=10)
        db.close()


def measure(folder: Path, size: int, count: int, max_seconds: float) -> list[dict[str, Any]]:
    """Every kind, each with its share of ``max_seconds``."""
    share = max_seconds / 3
    runs = [
        ("append + fdatasync", lambda d: raw_syncs(folder, size, count, d, grow=True)),
        ("overwrite + fdatasync", lambda d: raw_syncs(folder, size, count, d, grow=False)),
        ("SQLite COMMIT (WAL, synchronous=FULL)", lambda d: sqlite_commits(folder, size, count, d)),
    ]
    return [_summary(name, fn(time.monotonic() + share)) for name, fn in runs]


def table(rows: list[dict[str, Any]], size: int, where: str) -> str:
    """The figures as a markdown table."""
    lines = [
        f"{size:,} bytes per sync, in {where}",
        "",
        "| kind | syncs | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | at or over 10 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['count']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.2f} "
            f"| {r['over_10ms'] * 100:.1f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="syncs of each kind")
    parser.add_argument(
        "--bytes",
        type=int,
        default=0,
        help="bytes per sync (default: what one poll appends to the WAL, measured first)",
    )
    parser.add_argument("--max-seconds", type=float, default=90.0, help="bound on the whole run")
    parser.add_argument("--dir", type=Path, default=None, help="filesystem to measure")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if not 10 <= args.count <= 100_000:
        parser.error("--count must be in [10, 100000]")
    if not 0 <= args.bytes <= 16 * 1024 * 1024:
        parser.error("--bytes must be in [1, 16 MiB] (0: one poll's WAL append)")
    if not 1 <= args.max_seconds <= 600:
        parser.error("--max-seconds must be in [1, 600]")
    base = str(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        size = args.bytes or poll_commit_bytes(Path(tmp))
        load = os.getloadavg()
        rows = measure(Path(tmp), size, args.count, args.max_seconds)
        where = f"{Path(tmp).parent} (load average {load[0]:.2f} at the start)"
    if args.json:
        print(json.dumps({"bytes": size, "where": where, "rows": rows}, indent=2))
    else:
        print(table(rows, size, where))


if __name__ == "__main__":
    main()
