"""Profiling sessions: open, read, stop, expire, and the params each one is running.

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.session_spec import SessionSpec
    >>> sessions = Sessions(ControllerConfig(), Store(":memory:"))
    >>> opened = sessions.open(SessionSpec.parse({"service": "shop", "duration_s": 60}))
    >>> opened["state"], opened["counts"]["decisions"]
    ('open', 0)
    >>> sessions.stop(opened["id"])["state"]
    'completed'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.store_api import ControllerStore
from otel_adaprof.params import Params
from otel_adaprof.session_spec import SessionSpec

#: Seconds a service's open session is served from memory before it is read again.
SESSION_CACHE_S = 1.0


class NotFound(LookupError):
    """An id that does not exist (answered with 404)."""


class Sessions:
    """Sessions over a store; remembers the params last decided for each session."""

    def __init__(
        self,
        config: ControllerConfig,
        store: ControllerStore,
        *,
        clock: Callable[[], float] = time.time,
        cache_s: float = SESSION_CACHE_S,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.cache_s = cache_s
        self._last_params: dict[str, Params] = {}
        # service -> (read at (monotonic), its open session or None, the parsed spec)
        self._open: dict[str, tuple[float, dict[str, Any] | None, SessionSpec | None]] = {}
        self._changes: dict[str, int] = {}  # service -> sessions opened/stopped here

    def open(self, spec: SessionSpec) -> dict[str, Any]:
        """Open a session; it completes by itself after ``spec.duration_s``."""
        now = self.clock()
        session_id = self.store.create_session(
            spec.service, spec_json(spec), now=now, ends_at=now + spec.duration_s
        )
        opened = self.get(session_id)
        self._changed(spec.service)
        return opened

    def get(self, session_id: str) -> dict[str, Any]:
        """A session with its current params and counts; :class:`NotFound` if unknown."""
        row = self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        return self.describe(row)

    def describe(self, row: dict[str, Any]) -> dict[str, Any]:
        """A stored session row with its current params and counts."""
        spec = SessionSpec.parse(row["spec"])
        params = self._last_params.get(row["id"]) or self.initial_params(spec)
        return {**row, "params": params.to_json(), "counts": self.store.session_counts(row["id"])}

    def all(self) -> list[dict[str, Any]]:
        """Every session, newest first, with current params and counts."""
        return [self.describe(row) for row in self.store.list_sessions()]

    def stop(self, session_id: str) -> dict[str, Any]:
        """Complete a session (idempotent); returns it as :meth:`get` does."""
        row = self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        self.store.complete_session(session_id, self.clock())
        self._changed(row["service"])
        return self.get(session_id)

    def expire(self) -> list[dict[str, Any]]:
        """Complete every session whose duration ran out; returns them."""
        return [self.stop(session_id) for session_id in self.store.expired_sessions(self.clock())]

    def cached_open(self, service: str) -> tuple[bool, dict[str, Any] | None, SessionSpec | None]:
        """``(known, session, spec)``: the service's open session as last read, when that
        read is fresh (``known`` False: read it with the store and :meth:`note_open`).

        Sessions opened or stopped here take effect at once; by another controller on
        the same database, within ``cache_s``.
        """
        entry = self._open.get(service)
        if entry is None or time.monotonic() - entry[0] > self.cache_s:
            return False, None, None
        return True, entry[1], entry[2]

    def generation(self, service: str) -> int:
        """Changes of ``service``'s sessions made here (taken before reading them)."""
        return self._changes.get(service, 0)

    def note_open(
        self, service: str, session: dict[str, Any] | None, generation: int
    ) -> SessionSpec | None:
        """Remember the open session read for ``service`` (unless a session of it was
        opened or stopped here since ``generation``); returns its spec."""
        spec = SessionSpec.parse(session["spec"]) if session else None
        if self._changes.get(service, 0) == generation:
            self._open[service] = (time.monotonic(), session, spec)
        return spec

    def _changed(self, service: str) -> None:
        self._changes[service] = self._changes.get(service, 0) + 1
        self._open.pop(service, None)

    def initial_params(self, spec: SessionSpec) -> Params:
        """The session's initial params, else its service's defaults."""
        return spec.initial_params or self.config.params_for(spec.service)

    def decided(self, session_id: str, params: Params) -> None:
        """Note the params last decided in a session (shown by :meth:`get`)."""
        self._last_params[session_id] = params


def spec_json(spec: SessionSpec) -> dict[str, Any]:
    """The spec as stored (params in their JSON form; a goal's accuracy target only when
    the spec sets one: unset, it is the agent's profiler's, ``RewardWeights.for_profiler``).
    """
    data = spec.model_dump(mode="json")
    if "accuracy_target" not in spec.goal.model_fields_set:
        del data["goal"]["accuracy_target"]
    if spec.initial_params is not None:
        data["initial_params"] = spec.initial_params.to_json()
    return data
