"""The store interface of the controller: what any database behind it must offer.

The poll path needs two calls: :meth:`ControllerStore.poll_context` (reads: the
service's open session, the decision the agent's window ran under) and
:meth:`ControllerStore.record_poll`, which performs **all** of a poll's writes (agent
row, report, profile fold, reward of the decision the window ran under, the new
decision, the agent's config) in **one** transaction and returns the config version
it handed out and whether the reward was credited (each decision is credited once,
even when two reports of one version race). Everything else is sessions, models and
the reads of the HTTP API.

:class:`~otel_adaprof.controller.store.Store` (SQLite) implements it; a PostgreSQL
store implements the same methods. Stores are used from worker threads (the event
loop never waits on the database), so implementations must be thread-safe.

Usage::

    >>> from otel_adaprof.controller.store import Store
    >>> store: ControllerStore = Store(":memory:")
    >>> ctx = store.poll_context("i-1", "shop", 0)
    >>> ctx.session is None and ctx.ran_under is None
    True
    >>> out = store.record_poll(PollWrite(instance_id="i-1", service="shop", host="h",
    ...     pid=1, backend="py-spy", sdk_version="", now=1.0, state=None, session_id=None,
    ...     reported_version=0, window=None, stacks=None, report_session_id=None,
    ...     reward=None, decision=DecisionWrite(policy="static", action="static",
    ...     probability=1.0, features={}, params={"stack_depth": 64})))
    >>> out.config_version, out.credited
    (1, False)
    >>> store.close()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class PollContext:
    """What a poll reads before it decides."""

    #: The service's newest open session (as :meth:`ControllerStore.get_session`), or None.
    session: dict[str, Any] | None
    #: Params of the decision that produced the reported version (None: unknown version).
    ran_under: dict[str, Any] | None
    #: Whether that decision still waits for its reward.
    awaiting_reward: bool


@dataclass(frozen=True)
class RewardWrite:
    """The reward of the decision a window ran under (``reported_version``)."""

    total: float
    terms: Mapping[str, float]


@dataclass(frozen=True)
class DecisionWrite:
    """The decision a poll answers with (its config version is given by the store)."""

    policy: str
    action: str
    probability: float
    features: Mapping[str, Any]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class PollWrite:
    """Every write of one poll; :meth:`ControllerStore.record_poll` applies it atomically."""

    instance_id: str
    service: str
    host: str
    pid: int
    backend: str
    sdk_version: str
    now: float
    state: Mapping[str, Any] | None  # the agent's last observed state, when sent
    session_id: str | None  # the open session the decision belongs to
    reported_version: int  # the version the reported window ran under
    window: Mapping[str, Any] | None  # the report (None: no report in this poll)
    stacks: Mapping[str, int] | None
    report_session_id: str | None  # the session the report is filed under
    reward: RewardWrite | None  # credit for ``reported_version`` (only if still NULL)
    decision: DecisionWrite


@dataclass(frozen=True)
class PollOutcome:
    """What :meth:`ControllerStore.record_poll` did."""

    config_version: int  # max(agent's highest version, reported_version) + 1
    credited: bool  # the reward was written (False: already credited, or no reward)


@runtime_checkable
class ControllerStore(Protocol):
    """The database behind the controller (SQLite: :class:`.store.Store`)."""

    # lifecycle
    def ping(self) -> None: ...
    def close(self) -> None: ...

    # the poll path
    def poll_context(self, instance_id: str, service: str, version: int) -> PollContext: ...
    def record_poll(self, write: PollWrite) -> PollOutcome: ...
    def record_polls(self, writes: list[PollWrite]) -> list[PollOutcome | BaseException]: ...

    # sessions
    def create_session(
        self, service: str, spec: Mapping[str, Any], *, now: float, ends_at: float
    ) -> str: ...
    def get_session(self, session_id: str) -> dict[str, Any] | None: ...
    def list_sessions(self, service: str | None = None) -> list[dict[str, Any]]: ...
    def open_session_for(self, service: str) -> dict[str, Any] | None: ...
    def complete_session(self, session_id: str, now: float) -> bool: ...
    def expired_sessions(self, now: float) -> list[str]: ...
    def session_counts(self, session_id: str) -> dict[str, int]: ...

    # API reads
    def list_agents(self) -> list[dict[str, Any]]: ...
    def get_decision(self, instance_id: str, config_version: int) -> dict[str, Any] | None: ...
    def decisions(self, session_id: str | None = None) -> list[dict[str, Any]]: ...
    def timeline(self, session_id: str) -> list[dict[str, Any]]: ...
    def profile(self, session_id: str) -> dict[str, int]: ...
    def count_reports(self) -> int: ...

    # models
    def save_model(self, service: str, model: bytes, now: float) -> None: ...
    def load_model(self, service: str) -> bytes | None: ...
