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
        on_stop: Callable[[str], object] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._on_stop = on_stop  # called with the service of a session that stopped
        self._last_params: dict[str, Params] = {}

    def open(self, spec: SessionSpec) -> dict[str, Any]:
        """Open a session; it completes by itself after ``spec.duration_s``."""
        now = self.clock()
        session_id = self.store.create_session(
            spec.service, spec_json(spec), now=now, ends_at=now + spec.duration_s
        )
        return self.get(session_id)

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
        """Complete a session (idempotent); ``on_stop`` gets its service."""
        row = self.store.get_session(session_id)
        if row is None:
            raise NotFound(f"no session {session_id!r}")
        self.store.complete_session(session_id, self.clock())
        if self._on_stop is not None:
            self._on_stop(row["service"])
        return self.get(session_id)

    def expire(self) -> list[str]:
        """Complete every session whose duration ran out; returns their ids."""
        expired = self.store.expired_sessions(self.clock())
        for session_id in expired:
            self.stop(session_id)
        return expired

    def initial_params(self, spec: SessionSpec) -> Params:
        """The session's initial params, else its service's defaults."""
        return spec.initial_params or self.config.params_for(spec.service)

    def decided(self, session_id: str, params: Params) -> None:
        """Note the params last decided in a session (shown by :meth:`get`)."""
        self._last_params[session_id] = params


def spec_json(spec: SessionSpec) -> dict[str, Any]:
    """The spec as stored (params in their JSON form)."""
    data = spec.model_dump(mode="json")
    if spec.initial_params is not None:
        data["initial_params"] = spec.initial_params.to_json()
    return data
