"""The params in force in this process: the controller's, or a local override of them.

Readers (the sampler and the marker processor, on the application's threads) read one
attribute and never take a lock. Writers are the poller (:meth:`LiveParams.apply`, the
controller's answer) and the agent's reflexes (:meth:`LiveParams.set_override`, e.g. a
burst). Every change of the *effective* params — a new config version, new knobs, an
override set or lifted — bumps :attr:`LiveParams.generation` and wakes whoever waits
in :meth:`LiveParams.wait_change` (the profiler, which then cuts its running segment).
Samples and CPU taken under an override still belong to the current config version.

Usage::

    >>> from otel_adaprof.params import Params
    >>> live = LiveParams(Params(), source="defaults")
    >>> live.apply(Params(trace_ratio=0.5), version=3, session_id="s-1")
    True
    >>> live.current.params.trace_ratio, live.current.version
    (0.5, 3)
    >>> live.apply(Params(trace_ratio=0.5), version=4, session_id="s-1")  # same knobs
    False
    >>> g = live.generation
    >>> live.set_override(Params(sampling_interval_ms=10), reason="burst")
    >>> live.params.rate_hz, live.current.version, live.current.override_reason
    (100, 4, 'burst')
    >>> live.set_override(None, reason="burst over")
    >>> live.params.trace_ratio, live.generation - g
    (0.5, 2)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from otel_adaprof.params import Params


@dataclass(frozen=True)
class ParamsInForce:
    """Effective params with the controller's config version (0: local) and session.

    ``params`` is the override when one is set (``override_reason`` says why), else
    ``base``, the controller's (or local) params.
    """

    params: Params
    version: int = 0
    session_id: str | None = None
    source: str = "local"
    base: Params | None = None
    override_reason: str | None = None

    @property
    def controller_params(self) -> Params:
        """The params without the override."""
        return self.base if self.base is not None else self.params


class LiveParams:
    """Holds the current :class:`ParamsInForce`; notifies listeners on a change of knobs."""

    def __init__(self, params: Params, source: str = "local") -> None:
        self.current = ParamsInForce(params, 0, None, source, params)
        self.local = params
        #: Bumped at every change of the effective params or of the config version.
        self.generation = 0
        self._override: Params | None = None
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
        """Put the controller's ``params`` in force; returns whether any knob changed.

        With an override set, the effective knobs stay the override's, but a new
        version still counts as a change for :meth:`wait_change`.
        """
        with self._lock:
            old = self.current
            effective = self._override if self._override is not None else params
            self.current = ParamsInForce(
                effective, version, session_id, source, params, old.override_reason
            )
            knobs_changed = effective != old.params
            if knobs_changed or version != old.version:
                self.generation += 1
                self._changed.notify_all()
        if knobs_changed:
            self._notify()
        return params != old.controller_params

    def set_override(self, params: Params | None, reason: str) -> None:
        """Put local ``params`` in force over the controller's (``None``: lift it).

        The config version stays; the profiler cuts its segment within one interval.
        """
        with self._lock:
            old = self.current
            self._override = params
            base = old.controller_params
            effective = params if params is not None else base
            self.current = replace(
                old,
                params=effective,
                base=base,
                override_reason=reason if params is not None else None,
            )
            changed = effective != old.params
            if changed or (params is None) != (old.override_reason is None):
                self.generation += 1
                self._changed.notify_all()
        if changed:
            self._notify()

    def wait_change(self, generation: int, timeout: float) -> int:
        """Wait until :attr:`generation` differs from ``generation`` (or ``timeout`` s)."""
        with self._lock:
            if self.generation == generation:
                self._changed.wait(timeout)
            return self.generation

    def wake(self) -> None:
        """Wake every :meth:`wait_change` without a change (stop, flush)."""
        with self._lock:
            self._changed.notify_all()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener(self.current)

    def after_fork(self) -> None:
        """In a forked child: a new lock, and version 0 (the child is a new agent)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.current = replace(self.current, version=0, session_id=None)

    def revert_to_local(self) -> bool:
        """Back to the local params (controller gone too long); whether anything changed."""
        return self.apply(self.local, 0, None, source="local")
