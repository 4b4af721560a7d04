"""The controller's domain core: the three parts that serve sessions and polls, wired.

- :mod:`~otel_adaprof.controller.sessions`: open, read, stop and expire sessions;
- :mod:`~otel_adaprof.controller.policy_registry`: each adaptive service's policy and
  its model snapshots;
- :mod:`~otel_adaprof.controller.poll_handling`: one poll, record → credit → decide;

all over one store (:class:`~otel_adaprof.controller.store_api.ControllerStore`).

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.protocol import AgentIdentity, PollRequest
    >>> core = ControllerCore(ControllerConfig(), Store(":memory:"))
    >>> answer = core.poll(PollRequest(agent=AgentIdentity(service="shop", instance_id="i-1")))
    >>> answer.config_version, answer.params == ControllerConfig().default_params
    (1, True)

Config versions are per agent: each answer carries the agent's previous version + 1,
so a report names exactly one decision.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.group_commit import GroupCommitter
from otel_adaprof.controller.policy.base import Policy
from otel_adaprof.controller.policy_registry import (
    PolicyFactory,
    PolicyRegistry,
    default_adaptive_factory,
)
from otel_adaprof.controller.poll_handling import (
    MAX_PENDING_DECISIONS,
    MAX_PROFILE_STACKS,
    PollHandler,
)
from otel_adaprof.controller.poll_timing import PollTiming
from otel_adaprof.controller.sessions import NotFound, Sessions
from otel_adaprof.controller.store_api import ControllerStore
from otel_adaprof.protocol import PollRequest, PollResponse
from otel_adaprof.reward import RewardBreakdown
from otel_adaprof.session_spec import SessionSpec

__all__ = [
    "MAX_PENDING_DECISIONS",
    "MAX_PROFILE_STACKS",
    "ControllerCore",
    "NotFound",
    "PolicyFactory",
    "default_adaptive_factory",
]


def _registry_for(
    config: ControllerConfig,
    store: ControllerStore,
    adaptive_factory: PolicyFactory | None,
    heuristic: Policy | None,
    clock: Callable[[], float],
) -> PolicyRegistry:
    """Model leases between replicas on PostgreSQL; the in-process registry on SQLite
    (psycopg is imported only when a PostgreSQL store was opened)."""
    if "otel_adaprof.controller.store_postgres" in sys.modules:
        from otel_adaprof.controller.model_lease import registry_for

        return registry_for(
            config, store, adaptive_factory=adaptive_factory, heuristic=heuristic, clock=clock
        )
    return PolicyRegistry(
        config, store, adaptive_factory=adaptive_factory, heuristic=heuristic, clock=clock
    )


T = TypeVar("T")

#: Threads for the database's reads and non-poll writes (poll writes have their own).
DB_THREADS = 4


class ControllerCore:
    """Sessions, policies and polls over one store.

    The blocking methods (:meth:`poll`, :meth:`open_session`, ...) run the store's calls
    on the caller's thread; the HTTP layer uses the ``*_async`` ones and :meth:`run_db`,
    which keep the database off the event loop (poll writes are group-committed by one
    writer thread, :class:`~otel_adaprof.controller.group_commit.GroupCommitter`).
    Models are used on the event loop's thread only.
    """

    def __init__(
        self,
        config: ControllerConfig,
        store: ControllerStore,
        *,
        adaptive_factory: PolicyFactory | None = None,
        heuristic: Policy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.policies = _registry_for(config, store, adaptive_factory, heuristic, clock)
        self.session_book = Sessions(config, store, clock=clock)
        self.polls = PollHandler(config, store, self.session_book, self.policies, clock=clock)
        self._committer: GroupCommitter | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[int]] = set()
        #: Told of every group-commit transaction: polls, seconds, ``COMMIT`` seconds.
        self.on_commit: Callable[[int, float, float | None], None] | None = None

    # sessions
    def open_session(self, spec: SessionSpec) -> dict[str, Any]:
        """Open a session; it completes by itself after ``spec.duration_s``."""
        return self.session_book.open(spec)

    def session(self, session_id: str) -> dict[str, Any]:
        """A session with its current params and counts; :class:`NotFound` if unknown."""
        return self.session_book.get(session_id)

    def sessions(self) -> list[dict[str, Any]]:
        """Every session, newest first, with current params and counts."""
        return self.session_book.all()

    def stop_session(self, session_id: str) -> dict[str, Any]:
        """Complete a session (idempotent), snapshot its service's model and drop the
        models beyond ``models.max_in_memory``."""
        stopped = self.session_book.stop(session_id)
        self._closed(stopped["service"])
        self.policies.save(self.policies.take_evictions())
        return stopped

    def expire_sessions(self) -> list[str]:
        """Complete every session whose duration ran out; returns their ids."""
        expired = self.session_book.expire()
        for session in expired:
            self._closed(session["service"])
        self.policies.save(self.policies.take_evictions())
        return [s["id"] for s in expired]

    def _closed(self, service: str) -> None:
        self.policies.unpin(service)
        self.policies.snapshot(service)

    async def stop_session_async(self, session_id: str) -> dict[str, Any]:
        """:meth:`stop_session` from the event loop."""
        stopped: dict[str, Any] = await self.run_db(self.session_book.stop, session_id)
        self.policies.unpin(stopped["service"])
        await self.snapshot_models_async(stopped["service"])
        await self.evict_models_async()
        return stopped

    async def expire_sessions_async(self) -> list[str]:
        """:meth:`expire_sessions` from the event loop."""
        expired: list[dict[str, Any]] = await self.run_db(self.session_book.expire)
        for session in expired:
            self.policies.unpin(session["service"])
            await self.snapshot_models_async(session["service"])
        await self.evict_models_async()
        return [s["id"] for s in expired]

    async def evict_models_async(self) -> int:
        """Drop the models beyond ``models.max_in_memory`` (services without an open
        session, least recently used first), their snapshots written off the loop."""
        dropped = self.policies.take_evictions()
        if dropped:
            await self.run_db(self.policies.save, dropped)
        return len(dropped)

    # models
    def adaptive_policy(self, service: str) -> Policy:
        """The service's learning policy, resumed from its last snapshot if any."""
        return self.policies.adaptive(service)

    def snapshot_models(self, service: str | None = None) -> int:
        """Write the model of one (or every) adaptive service; returns how many."""
        return self.policies.snapshot(service)

    async def snapshot_models_async(self, service: str | None = None) -> int:
        """:meth:`snapshot_models` from the event loop (models serialized on it, written
        off it)."""
        written: int = await self.run_db(self.policies.save, self.policies.snapshot_blobs(service))
        return written

    # polls
    def poll(self, request: PollRequest) -> PollResponse:
        """Record the report, credit the decision it ran under, answer the next params."""
        answer = self.polls.poll(request)
        if self.policies.over_bound():
            self.policies.save(self.policies.take_evictions())
        return answer

    async def poll_async(
        self, request: PollRequest, timing: PollTiming | None = None
    ) -> PollResponse:
        """:meth:`poll` from the event loop: database work on threads, writes batched
        with concurrent polls into one durable transaction (``timing``: see
        :mod:`~otel_adaprof.controller.poll_timing`)."""
        if self._committer is None:
            self._committer = GroupCommitter(self.store, on_commit=self.on_commit)
        answer = await self.polls.poll_async(request, self._committer.submit, self.run_db, timing)
        if self.policies.over_bound():  # a model was restored or created: drop the oldest
            task = asyncio.create_task(self.evict_models_async())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return answer

    @property
    def last_reward(self) -> dict[str, RewardBreakdown]:
        """The last window's reward per service (diagnostics; the simulator reads it)."""
        return self.polls.last_reward

    @property
    def decisions_made(self) -> int:
        """Decisions answered since start."""
        return self.polls.decisions_made

    @property
    def rewards_credited(self) -> int:
        """Rewards written since start."""
        return self.polls.rewards_credited

    # threads
    async def run_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on the controller's database threads."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="adaprof-db")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Commit the queued poll writes and stop the database threads (the store stays
        open: its owner closes it)."""
        if self._committer is not None:
            self._committer.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.policies.save(self.policies.unsaved())
