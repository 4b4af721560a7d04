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
        """Put ``params`` in force; returns whether any knob changed."""
        with self._lock:
            changed = params != self.current.params
            self.current = ParamsInForce(params, version, session_id, source)
        if changed:
            for listener in list(self._listeners):
                listener(self.current)
        return changed

    def after_fork(self) -> None:
        """In a forked child: a new lock, and version 0 (the child is a new agent)."""
        self._lock = threading.Lock()
        self.current = ParamsInForce(self.current.params, 0, None, self.current.source)

    def revert_to_local(self) -> bool:
        """Back to the local params (controller gone too long); whether anything changed."""
        return self.apply(self.local, 0, None, source="local")
