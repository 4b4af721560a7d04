"""The per-service policies of the controller and their model snapshots.

Every service with an adaptive session gets its own learning policy (by default one
Vowpal Wabbit model, :class:`~otel_adaprof.controller.policy.vw.VWPolicy`), resumed from
its last snapshot in the store; services without one are answered by the static policy.

Models stay in memory while their service has an open session. Beyond
``models.max_in_memory`` the least recently used models of services *without* an open
session are snapshotted and dropped (:meth:`PolicyRegistry.take_evictions`); the next
poll of such a service restores its model from that snapshot.

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> from otel_adaprof.controller.store import Store
    >>> from otel_adaprof.session_spec import Mode, PolicyKind, SessionSpec
    >>> registry = PolicyRegistry(ControllerConfig(), Store(":memory:"))
    >>> registry.for_mode("shop", Mode.STATIC).name
    'static'
    >>> from otel_adaprof.session_spec import SessionSpec
    >>> registry.for_spec(SessionSpec.parse({"service": "shop", "policy": "heuristic"})).name
    'heuristic'
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Policy
from otel_adaprof.controller.policy.static import StaticPolicy
from otel_adaprof.controller.store_api import ControllerStore
from otel_adaprof.session_spec import Mode, PolicyKind, SessionSpec

log = logging.getLogger(__name__)

PolicyFactory = Callable[[str], Policy]


def default_adaptive_factory(config: ControllerConfig) -> PolicyFactory:
    """One Vowpal Wabbit policy per service, built from the config's policy section."""

    def build(service: str) -> Policy:
        from otel_adaprof.controller.policy.vw import VWPolicy

        return VWPolicy.from_config(config.policy)

    return build


class PolicyRegistry:
    """The learning policy of each adaptive service, and the static one for the rest."""

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
        self._heuristic = heuristic
        self.store = store
        self.clock = clock
        self._factory = adaptive_factory or default_adaptive_factory(config)
        #: Models in memory, least recently used first.
        self._adaptive: OrderedDict[str, Policy] = OrderedDict()
        #: Services whose session is open: their models are never dropped.
        self._pinned: set[str] = set()
        #: Dropped models whose snapshot is still being written (restored from here).
        self._in_flight: dict[str, bytes] = {}
        self.max_in_memory = config.models.max_in_memory
        self.evicted = 0
        self.restored = 0
        self.static: Policy = StaticPolicy()

    def for_mode(self, service: str, mode: Mode) -> Policy:
        """The policy that decides for ``service`` in a session of ``mode``."""
        return self.adaptive(service) if mode is Mode.ADAPTIVE else self.static

    def for_spec(self, spec: SessionSpec | None) -> Policy:
        """The session's policy (``SessionSpec.policy``): the service's bandit, the
        threshold heuristic (one for all services: it keeps no state) or static."""
        if spec is None or spec.mode is Mode.STATIC or spec.policy is PolicyKind.STATIC:
            return self.static
        if spec.policy is PolicyKind.HEURISTIC:
            if self._heuristic is None:
                from otel_adaprof.controller.policy.heuristic import ThresholdPolicy

                self._heuristic = ThresholdPolicy()
            return self._heuristic
        return self.adaptive(spec.service)

    def adaptive(self, service: str) -> Policy:
        """The service's learning policy, resumed from its last snapshot if any."""
        policy = self._adaptive.get(service)
        if policy is None:
            blob = self._in_flight.get(service)
            policy = self.install(service, blob or self.store.load_model(service))
        else:
            self._adaptive.move_to_end(service)
        return policy

    def pin(self, service: str) -> None:
        """The service has an open session: keep its model in memory."""
        self._pinned.add(service)

    def unpin(self, service: str) -> None:
        """The service's session closed: its model may be dropped (after a snapshot)."""
        self._pinned.discard(service)

    def take_evictions(self) -> list[tuple[str, bytes]]:
        """Drop the least recently used models of services without an open session
        beyond :attr:`max_in_memory`; returns their snapshots, which the caller writes
        with :meth:`save` (until then a returning service is restored from memory)."""
        over = len(self._adaptive) - self.max_in_memory
        dropped: list[tuple[str, bytes]] = []
        for name in list(self._adaptive):
            if over <= 0:
                break
            if name in self._pinned:
                continue
            blob = self._adaptive[name].snapshot()
            del self._adaptive[name]
            over -= 1
            self.evicted += 1
            if blob is not None:
                self._in_flight[name] = blob
                dropped.append((name, blob))
        return dropped

    def is_loaded(self, service: str) -> bool:
        """Whether the service's model is in memory."""
        return service in self._adaptive

    def install(self, service: str, blob: bytes | None) -> Policy:
        """Build the service's policy from its snapshot ``blob`` (read by the caller,
        off the event loop); a policy already in memory wins."""
        policy = self._adaptive.get(service)
        if policy is not None:
            return policy
        blob = self._in_flight.get(service, blob)
        policy = self._factory(service)
        if blob is not None:
            try:
                policy.restore(blob)
                self.restored += 1
            except Exception:  # a corrupt snapshot must not stop the service's agents
                log.exception("model snapshot of %s could not be restored", service)
        self._adaptive[service] = policy
        return policy

    def snapshot(self, service: str | None = None) -> int:
        """Write the model of one (or every) adaptive service; returns how many."""
        return self.save(self.snapshot_blobs(service))

    def snapshot_blobs(self, service: str | None = None) -> list[tuple[str, bytes]]:
        """The models of one (or every) service as bytes, taken where the policies are
        used (models are not thread-safe); :meth:`save` writes them."""
        blobs = []
        for name, policy in list(self._adaptive.items()):
            if service is not None and name != service:
                continue
            blob = policy.snapshot()
            if blob is not None:
                blobs.append((name, blob))
        return blobs

    def save(self, blobs: list[tuple[str, bytes]]) -> int:
        """Write model snapshots to the store (any thread); returns how many."""
        now = self.clock()
        for name, blob in blobs:
            self.store.save_model(name, blob, now)
            if self._in_flight.get(name) is blob:  # written: the store has it now
                del self._in_flight[name]
        return len(blobs)

    def over_bound(self) -> bool:
        """More models in memory than :attr:`max_in_memory` (pinned ones included)."""
        return len(self._adaptive) > self.max_in_memory

    def unsaved(self) -> list[tuple[str, bytes]]:
        """Snapshots of dropped models not yet written."""
        return list(self._in_flight.items())

    def loaded(self) -> list[str]:
        """Services whose model is in memory."""
        return list(self._adaptive)
