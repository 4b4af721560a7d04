"""The params in force in this process: the controller's, or a local override of them.

Readers (the sampler and the marker processor, on the application's threads) read one
attribute and never take a lock. Writers are the poller (:meth:`LiveParams.apply`, the
controller's answer) and the agent's reflexes (:meth:`LiveParams.set_override`, the
burst reflex). Every change of the *effective* params — a new config version, new
knobs, an override set or lifted — bumps :attr:`LiveParams.generation` and wakes
whoever waits in :meth:`LiveParams.wait_change` (the profiler, which then cuts its
running py-spy segment within one sampling interval).

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
same config version, until it is lifted; the controller's params stay underneath.
Samples and CPU taken under an override belong to that config version::

    >>> g = live.generation
    >>> live.set_override(Params(sampling_interval_ms=10), reason="burst")
    True
    >>> live.params.sampling_interval_ms, live.current.version, live.override_reason
    (10, 4, 'burst')
    >>> live.set_override(None, reason="burst over")
    True
    >>> live.params.sampling_interval_ms, live.base.params.trace_ratio, live.generation - g
    (50, 0.5, 2)
"""

from __future__ import annotations

import threading
import time
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
        #: Bumped at every change of the effective params, of the version or override.
        self.generation = 0
        #: Wall time (ns) of the last bump of :attr:`generation`.
        self.changed_ns = time.time_ns()
        self._listeners: list[Callable[[ParamsInForce], None]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

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
            was = self.override is not None
            self.override = params
            self.override_reason = reason if params is not None else ""
            changed = self._refresh(force=was != (params is not None))
        self._notify(changed)
        return changed

    def _refresh(self, force: bool = False) -> bool:  # under self._lock
        base = self.base
        old = self.current
        params = self.override if self.override is not None else base.params
        changed = params != old.params
        self.current = ParamsInForce(params, base.version, base.session_id, base.source)
        if changed or force or base.version != old.version:
            self.generation += 1
            self.changed_ns = time.time_ns()
            self._changed.notify_all()
        return changed

    def wait_change(
        self, generation: int, timeout: float, awake: Callable[[], bool] | None = None
    ) -> int:
        """Wait until :attr:`generation` differs from ``generation`` (or ``timeout`` s,
        or :meth:`wake`); the generation now.

        ``awake``: no wait when it is true, asked under the lock that :meth:`wake` takes,
        so a waker that makes it true before calling :meth:`wake` is never missed (a
        long wait is not slept through: the profiler's stop while it is idle).
        """
        with self._lock:
            if self.generation == generation and not (awake is not None and awake()):
                self._changed.wait(timeout)
            return self.generation

    def wake(self) -> None:
        """Wake every :meth:`wait_change` without a change (stop, a window's cut)."""
        with self._lock:
            self._changed.notify_all()

    def _notify(self, changed: bool) -> None:
        if changed:
            for listener in list(self._listeners):
                listener(self.current)

    def after_fork(self) -> None:
        """In a forked child: a new lock, and version 0 (the child is a new agent)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.base = ParamsInForce(self.base.params, 0, None, self.base.source)
        self.current = ParamsInForce(self.current.params, 0, None, self.current.source)

    def revert_to_local(self) -> bool:
        """Back to the local params (controller gone too long); whether anything changed."""
        return self.apply(self.local, 0, None, source="local")
