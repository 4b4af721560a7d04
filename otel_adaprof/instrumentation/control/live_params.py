"""The params in force in this process, swapped atomically when the controller answers.

Readers (the sampler and the marker processor, on the application's threads) read one
attribute and never take a lock; the poller is the only writer.

Usage::

    >>> from otel_adaprof.params import Params
    >>> live = LiveParams(Params(), source="defaults")
    >>> live.apply(Params(trace_ratio=0.5), version=3, session_id="s-1")
    True
    >>> live.current.params.trace_ratio, live.current.version
    (0.5, 3)
    >>> live.apply(Params(trace_ratio=0.5), version=4, session_id="s-1")  # same knobs
    False

A local override (the agent's burst reflex) replaces the params in force, under the
same config version, until it is lifted; the controller's params stay underneath::

    >>> live.set_override(Params(sampling_interval_ms=10), reason="burst")
    True
    >>> live.params.sampling_interval_ms, live.current.version, live.override_reason
    (10, 4, 'burst')
    >>> live.set_override(None, reason="burst over")
    True
    >>> live.params.sampling_interval_ms, live.base.params.trace_ratio
    (50, 0.5)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from otel_adaprof.params import Params


@dataclass(frozen=True)
class ParamsInForce:
    """Params with the controller's config version (0: local) and session."""

    params: Params
    version: int = 0
    session_id: str | None = None
    source: str = "local"


class LiveParams:
    """Holds the current :class:`ParamsInForce`; notifies listeners on a change of knobs."""

    def __init__(self, params: Params, source: str = "local") -> None:
        self.current = ParamsInForce(params, 0, None, source)
        #: The controller's (or local) params, under any override.
        self.base = self.current
        self.override: Params | None = None
        self.override_reason = ""
        self.local = params
        self._listeners: list[Callable[[ParamsInForce], None]] = []
        self._lock = threading.Lock()

    @property
    def params(self) -> Params:
        """Shortcut for ``current.params``."""
        return self.current.params

    def on_change(self, listener: Callable[[ParamsInForce], None]) -> None:
        """Call ``listener`` after every change of knobs (from the writer's thread)."""
        self._listeners.append(listener)

    def apply(
        self, params: Params, version: int, session_id: str | None, source: str = "controller"
    ) -> bool:
        """Put ``params`` in force; returns whether any knob changed.

        Under an override the override stays in force (with the new version).
        """
        with self._lock:
            self.base = ParamsInForce(params, version, session_id, source)
            changed = self._refresh()
        self._notify(changed)
        return changed

    def set_override(self, params: Params | None, reason: str = "") -> bool:
        """Run on ``params`` instead of the base params (``None``: back to them).

        The config version stays the base's: what is taken under the override belongs
        to it. Returns whether any knob in force changed.
        """
        with self._lock:
            self.override = params
            self.override_reason = reason if params is not None else ""
            changed = self._refresh()
        self._notify(changed)
        return changed

    def _refresh(self) -> bool:
        base = self.base
        params = self.override if self.override is not None else base.params
        changed = params != self.current.params
        self.current = ParamsInForce(params, base.version, base.session_id, base.source)
        return changed

    def _notify(self, changed: bool) -> None:
        if changed:
            for listener in list(self._listeners):
                listener(self.current)

    def after_fork(self) -> None:
        """In a forked child: a new lock, and version 0 (the child is a new agent)."""
        self._lock = threading.Lock()
        self.base = ParamsInForce(self.base.params, 0, None, self.base.source)
        self.current = ParamsInForce(self.current.params, 0, None, self.current.source)

    def revert_to_local(self) -> bool:
        """Back to the local params (controller gone too long); whether anything changed."""
        return self.apply(self.local, 0, None, source="local")
