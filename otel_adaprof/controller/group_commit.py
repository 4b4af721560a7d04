"""Group commit: concurrent polls share one durable transaction, written off the event loop.

A poll hands its writes (:class:`~otel_adaprof.controller.store_api.PollWrite`) to
:meth:`GroupCommitter.submit` and awaits the outcome. The writes submitted in one turn
of the event loop are handed to the writer together (one wake-up), and the writer
thread takes every write queued since its last commit and applies them with
:meth:`~otel_adaprof.controller.store_api.ControllerStore.record_polls`: one
transaction, one fsync (``synchronous=FULL``), whatever the number of polls. A poll is
answered only after the transaction that holds its writes is on disk, so nothing
acknowledged is lost; while one batch is being synced the next one fills.

Usage::

    >>> import asyncio
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.controller.store_api import DecisionWrite, PollWrite
    >>> def write(agent: str) -> PollWrite:
    ...     return PollWrite(instance_id=agent, service="shop", host="h", pid=1,
    ...         backend="py-spy", sdk_version="", now=1.0, state=None, session_id=None,
    ...         reported_version=0, window=None, stacks=None, report_session_id=None,
    ...         reward=None, decision=DecisionWrite(policy="static", action="static",
    ...         probability=1.0, features={}, params={}))
    >>> async def main() -> list[int]:
    ...     committer = GroupCommitter(Store(":memory:"))
    ...     try:
    ...         polls = [committer.submit(write(f"a{i}")) for i in range(3)]
    ...         outcomes = await asyncio.gather(*polls)
    ...     finally:
    ...         committer.close()
    ...     return [o.config_version for o in outcomes]
    >>> asyncio.run(main())
    [1, 1, 1]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from otel_adaprof.controller.poll_timing import PollTiming
from otel_adaprof.controller.store_api import ControllerStore, PollOutcome, PollWrite

log = logging.getLogger(__name__)

#: Most polls in one transaction (a bound on the time one commit holds the writer).
MAX_BATCH = 512


@dataclass
class _Pending:
    write: PollWrite
    future: asyncio.Future[PollOutcome]
    loop: asyncio.AbstractEventLoop
    timing: PollTiming | None


@dataclass
class CommitStats:
    """Counters of the writer (for metrics and benchmarks)."""

    transactions: int = 0
    polls: int = 0
    largest_batch: int = 0
    failures: int = 0
    #: Seconds of the last transaction: all of it, and its ``COMMIT`` (WAL append and
    #: fsync; None when the store does not say)
    last_seconds: float = 0.0
    last_commit_seconds: float | None = None


class GroupCommitter:
    """One writer thread applying queued poll writes in batched transactions."""

    def __init__(
        self,
        store: ControllerStore,
        *,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[int, float, float | None], None] | None = None,
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        #: Called on the writer thread after each transaction with its polls, its
        #: seconds and its ``COMMIT``'s seconds (None: not known), e.g. for metrics.
        self.on_commit = on_commit
        self.stats = CommitStats()
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._gathered: list[_Pending] = []  # submitted in this turn of the event loop
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="adaprof-group-commit", daemon=True)
        self._thread.start()

    async def submit(self, write: PollWrite, timing: PollTiming | None = None) -> PollOutcome:
        """Queue a poll's writes; returns once they are durably committed. ``timing``
        gets the writer's stamps (:meth:`PollTiming.committed`)."""
        if self._closed:
            raise RuntimeError("the controller's writer is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PollOutcome] = loop.create_future()
        if not self._gathered:  # one hand-over (one wake-up of the writer) per loop turn
            loop.call_soon(self._hand_over)
        self._gathered.append(_Pending(write, future, loop, timing))
        return await future

    def _hand_over(self) -> None:
        gathered, self._gathered = self._gathered, []
        if gathered:
            self._queue.put(gathered)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.extend(item)
            for start in range(0, len(batch), self.max_batch):
                self._commit(batch[start : start + self.max_batch])

    def _commit(self, batch: list[_Pending]) -> None:
        picked = time.monotonic()
        try:
            results: list[PollOutcome | BaseException] = self.store.record_polls(
                [p.write for p in batch]
            )
        except Exception as exc:  # the store failed as a whole: every poll fails
            log.exception("group commit of %d polls failed", len(batch))
            results = [exc] * len(batch)
        done = time.monotonic()
        # when this thread's last COMMIT began (the SQLite store says; others do not)
        commit_started: float | None = getattr(self.store, "commit_started", None)
        if commit_started is not None and not picked <= commit_started <= done:
            commit_started = None
        for pending in batch:
            if pending.timing is not None:
                pending.timing.committed(picked, commit_started, done)
        stats = self.stats
        stats.last_seconds = done - picked
        stats.last_commit_seconds = None if commit_started is None else done - commit_started
        if self.on_commit is not None:
            try:
                self.on_commit(len(batch), stats.last_seconds, stats.last_commit_seconds)
            except Exception:  # an observer must not lose the batch's answers
                log.exception("commit observer failed")
        stats.transactions += 1
        stats.polls += len(batch)
        stats.largest_batch = max(stats.largest_batch, len(batch))
        stats.failures += sum(isinstance(r, BaseException) for r in results)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, object]]] = {}
        for pending, result in zip(batch, results, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending, result))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed while we wrote
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[_Pending, object]]) -> None:
    for pending, result in items:
        if pending.future.done():
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)  # type: ignore[arg-type]
