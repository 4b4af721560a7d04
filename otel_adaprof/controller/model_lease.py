"""Model ownership between controller replicas on one PostgreSQL database.

Every replica answers every poll, but each adaptive service's learning model is
*owned* by one replica at a time, through a row of ``model_leases`` (like Jaeger's
adaptive-sampling leader lock, per service):

- **Lease**: ``lease_s`` (15 s) long, timed by the database's clock; the owner renews
  it every ``renew_s`` (5 s). A replica that has not renewed for ``lease_s`` (killed,
  cut off from the database) loses it; each pass (every second) every replica tries to
  take the lease of each service with an open adaptive session, and one whose lease is
  free or expired is taken at once by the first to try, with a new *epoch*.
- **Learning**: rewards are credited in the ``decisions`` table by whichever replica
  received the report. The owner consumes every credited adaptive decision that no
  snapshot has learned yet (``decisions.learned`` false), learns from it, and writes
  its snapshot and marks those decisions learned in *one* transaction, fenced by its
  epoch: a replica that lost its lease cannot overwrite its successor's model. A new
  owner restores the snapshot and learns the rest, so every credited decision is learned
  exactly once by the model in the database, whichever replica was killed when.
  The pass reads and writes the database on a thread; the learning itself runs on the
  event loop's thread, like every other use of the models, a few decisions at a time
  between polls.
- **Deciding**: the owner decides from its live model. Any other replica decides from
  the **newest snapshot**: it keeps a copy restored from ``model_snapshots`` and reloads
  it whenever the snapshot's generation changes (checked every pass); the owner writes
  a snapshot when it has learned something, at most every ``renew_s`` (5 s), so a
  follower's model lags the owner's by at most ``renew_s`` + one pass. Every decision
  is logged with the probability the deciding model gave it, so learning from it stays
  unbiased. Followers learn nothing.

Usage (``ControllerCore`` builds this registry itself for a PostgreSQL store, and the
app runs :func:`run_ownership`)::

    registry = OwnedPolicyRegistry(config, store, replica_id="ctl-a")
    registry.tick()          # one pass: renew or take leases, reload, learn, snapshot
    registry.owned()         # ['shop']
    registry.release()       # clean shutdown: final snapshot, leases freed at once
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy_registry import PolicyFactory, PolicyRegistry
from otel_adaprof.controller.store_api import ControllerStore
from otel_adaprof.controller.store_postgres import PostgresStore
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.session_spec import Mode, PolicyKind, SessionSpec

log = logging.getLogger(__name__)

#: Seconds between ownership passes (lease take-over checks, learning, follower reloads).
PASS_INTERVAL_S = 1.0
#: Credited decisions learned in one go on the event loop before polls get their turn.
LEARN_CHUNK = 8
#: An owner stops acting as owner this long before its lease could expire in the database.
SAFETY_MARGIN_S = 1.0


def default_replica_id() -> str:
    """``host:pid:random`` — unique per process, readable in ``model_leases``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SharedPolicy(Policy):
    """A service's policy as the poll path sees it on a replica: decisions under a lock
    (the ownership pass learns on the same model from another thread); :meth:`learn` does
    nothing, because rewards reach the owner through the database."""

    name: ClassVar[str] = "adaptive"

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def decide(self, ctx: DecisionContext) -> Decision:
        with self.lock:
            return self.inner.decide(ctx)

    def decide_shared(self, ctx: DecisionContext, shared: Decision) -> Decision:
        with self.lock:
            return self.inner.decide_shared(ctx, shared)

    def learn(self, ctx: DecisionContext, decision: Decision, reward: float) -> None:
        """Nothing: the owner learns from the credited row (see the module doc)."""

    def snapshot(self) -> bytes | None:
        with self.lock:
            return self.inner.snapshot()

    def restore(self, blob: bytes) -> None:
        with self.lock:
            self.inner.restore(blob)


@dataclass
class _Model:
    """One service's model on this replica, owned or followed."""

    policy: SharedPolicy
    epoch: int | None = None  # None: following the snapshot
    valid_until: float = 0.0  # monotonic: the lease may have expired after this
    renewed_at: float = 0.0  # monotonic
    saved_at: float = 0.0  # monotonic: last snapshot written by this owner
    generation: int = -1  # snapshot generation a follower copy was loaded from
    unsaved: list[int] = field(default_factory=list)  # learned, not yet in a snapshot
    learned: int = 0  # credited decisions learned since this replica took it over
    restored_generation: int = 0  # the snapshot an owner started from (0: none)


@dataclass
class _Work:
    """What one pass found for an owned model to learn."""

    service: str
    model: _Model
    rows: list[dict[str, Any]]


class OwnedPolicyRegistry(PolicyRegistry):
    """The policy registry of a replica: owned models learn, followed ones reload."""

    def __init__(
        self,
        config: ControllerConfig,
        store: PostgresStore,
        *,
        adaptive_factory: PolicyFactory | None = None,
        heuristic: Policy | None = None,
        clock: Callable[[], float] = time.time,
        replica_id: str | None = None,
    ) -> None:
        super().__init__(
            config, store, adaptive_factory=adaptive_factory, heuristic=heuristic, clock=clock
        )
        self.pg = store
        self.replica_id = replica_id or default_replica_id()
        self.lease_s = config.database.lease_s
        self.renew_s = config.database.lease_renew_s
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()  # guards _models
        self._pass_lock = threading.Lock()  # one ownership pass at a time
        self.takeovers = 0
        self.losses = 0

    # what the poll path calls -----------------------------------------------------------

    def adaptive(self, service: str) -> Policy:
        """The owner's live model, else a copy of the newest snapshot."""
        with self._lock:
            model = self._models.get(service)
        if model is None:
            model = self._follow(service)
        return model.policy

    def is_loaded(self, service: str) -> bool:
        with self._lock:
            return service in self._models

    def install(self, service: str, blob: bytes | None) -> Policy:
        """A follower copy built from ``blob`` (read off the event loop by the caller);
        the next ownership pass takes the lease or checks the copy's generation."""
        with self._lock:
            model = self._models.get(service)
        if model is not None:
            return model.policy
        policy = self._factory(service)
        if blob is not None:
            try:
                policy.restore(blob)
            except Exception:  # a corrupt snapshot must not stop the service's agents
                log.exception("model snapshot of %s could not be restored", service)
        fresh = _Model(policy=SharedPolicy(policy), generation=-1)
        with self._lock:
            return self._models.setdefault(service, fresh).policy

    def snapshot_blobs(self, service: str | None = None) -> list[tuple[str, bytes]]:
        """Nothing for the caller to write: each ownership pass writes the owned
        snapshots itself, fenced by the lease and with the decisions they learned."""
        return []

    def snapshot(self, service: str | None = None) -> int:
        """Write the snapshot of every owned model (fenced); returns how many."""
        written = 0
        with self._pass_lock:  # not while a pass learns on the same models
            with self._lock:
                owned = [(n, m) for n, m in self._models.items() if m.epoch is not None]
            for name, model in owned:
                if service is not None and name != service:
                    continue
                written += self._save(name, model)
        return written

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def owned(self) -> list[str]:
        """Services whose model this replica owns now."""
        with self._lock:
            return sorted(n for n, m in self._models.items() if m.epoch is not None)

    def describe(self) -> dict[str, Any]:
        """This replica: id, pid, lease times, counters, and per loaded model whether it
        owns it (epoch, the snapshot generation it took over from, decisions learned) or
        follows the snapshot (generation loaded). Shown by ``GET /v1/replicas``."""
        with self._lock:
            models = dict(self._models)
        return {
            "replica": self.replica_id,
            "pid": os.getpid(),
            "lease_s": self.lease_s,
            "renew_s": self.renew_s,
            "takeovers": self.takeovers,
            "losses": self.losses,
            "owned": sorted(n for n, m in models.items() if m.epoch is not None),
            "models": {
                name: {
                    "role": "owner" if m.epoch is not None else "follower",
                    "epoch": m.epoch,
                    "generation": m.generation,
                    "restored_generation": m.restored_generation,
                    "learned": m.learned,
                }
                for name, m in sorted(models.items())
            },
        }

    # the ownership pass ---------------------------------------------------------------

    def tick(self) -> None:
        """One pass, all on the calling thread: :meth:`collect`, learn, :meth:`finish`."""
        work = self.collect()
        for item in work:
            self.learn_rows(item, item.rows)
        self.finish(work)

    def collect(self) -> list[_Work]:
        """The database part of a pass: keep or take the lease of every service with an
        open adaptive session, reload followed copies, and read what each owned model
        has to learn (credited decisions no snapshot contains)."""
        work: list[_Work] = []
        with self._pass_lock:
            active = self._adaptive_services()
            with self._lock:
                services = active | set(self._models)
            for service in sorted(services):
                try:
                    item = self._pass(service, active=service in active)
                except Exception:  # the database may be away: keep serving, retry next pass
                    log.warning("ownership pass failed for %s", service, exc_info=True)
                    continue
                if item is not None:
                    work.append(item)
        return work

    def learn_rows(self, item: _Work, rows: list[dict[str, Any]]) -> None:
        """Learn credited decisions (read by :meth:`collect`) on the owned model; the app
        calls this on the event loop's thread, a few rows at a time between polls."""
        model = item.model
        for row in rows:
            decision = Decision(
                params=Params.parse(row["params"]),
                probability=float(row["probability"]),
                action=str(row["action"]),
                features=row["features"] or {},
            )
            ctx = DecisionContext.initial(item.service, decision.params)
            with model.policy.lock:
                model.policy.inner.learn(ctx, decision, float(row["reward"]))
            model.unsaved.append(int(row["id"]))
            model.learned += 1

    def finish(self, work: list[_Work]) -> None:
        """Snapshot each model that learned, with the decisions it learned (fenced)."""
        with self._pass_lock:
            for item in work:
                model = item.model
                if model.epoch is None or not model.unsaved:
                    continue
                if time.monotonic() - model.saved_at < self.renew_s:
                    continue  # snapshots at most every lease_renew_s

                try:
                    self._save(item.service, item.model)
                except Exception:  # the database may be away: saved at the next pass
                    log.warning("snapshot of %s failed", item.service, exc_info=True)

    def _adaptive_services(self) -> set[str]:
        """Services with an open session that the learning policy serves."""
        services = set()
        for session in self.pg.open_sessions():
            try:
                spec = SessionSpec.parse(session["spec"])
            except ContractError:  # written by another release: not ours to learn for
                continue
            if spec.mode is Mode.ADAPTIVE and spec.policy is PolicyKind.ADAPTIVE:
                services.add(spec.service)
        return services

    def _pass(self, service: str, *, active: bool) -> _Work | None:
        now = time.monotonic()
        with self._lock:
            model = self._models.get(service)
        if model is not None and model.epoch is not None:
            if now >= model.valid_until:
                self._lose(service, model, "lease ran out before it could be renewed")
                return None
            if not active:  # its sessions ended: final snapshot, free the lease
                self._save(service, model)
                self.pg.release_lease(service, self.replica_id, model.epoch)
                self._demote(service, model)
                return None
            if now - model.renewed_at >= self.renew_s:
                if not self.pg.renew_lease(service, self.replica_id, model.epoch, self.lease_s):
                    self._lose(service, model, "another replica holds the lease")
                    return None
                model.renewed_at = now
                model.valid_until = now + self.lease_s - SAFETY_MARGIN_S
            return self._to_learn(service, model)
        if active:
            epoch = self.pg.acquire_lease(service, self.replica_id, self.lease_s)
            if epoch is not None:
                return self._take_over(service, epoch, now)
        self._follow(service)
        return None

    def _take_over(self, service: str, epoch: int, started: float) -> _Work:
        # the lease is ours: no other replica can write the snapshot between these reads
        generation = self.pg.model_generation(service)
        policy, restored = self._fresh(service)
        model = _Model(
            policy=policy,
            epoch=epoch,
            valid_until=started + self.lease_s - SAFETY_MARGIN_S,
            renewed_at=started,
            generation=generation,
            restored_generation=generation if restored else 0,
        )
        with self._lock:
            self._models[service] = model
        self.takeovers += 1
        log.info(
            "replica %s owns the model of %s (epoch %d, from snapshot generation %d)",
            self.replica_id,
            service,
            epoch,
            model.restored_generation,
        )
        return self._to_learn(service, model)

    def _to_learn(self, service: str, model: _Model) -> _Work:
        """The credited decisions of ``service`` that no snapshot has learned yet."""
        return _Work(service, model, self.pg.credited_to_learn(service, exclude=model.unsaved))

    def _save(self, service: str, model: _Model) -> int:
        if model.epoch is None:
            return 0
        blob = model.policy.snapshot()
        if blob is None:
            return 0
        saved = self.pg.save_owned_model(
            service,
            blob,
            self.clock(),
            owner=self.replica_id,
            epoch=model.epoch,
            learned_ids=list(model.unsaved),
        )
        if not saved:
            self._lose(service, model, "the database refused the snapshot (lease lost)")
            return 0
        model.unsaved.clear()
        model.saved_at = time.monotonic()
        model.generation = self.pg.model_generation(service)
        return 1

    def _lose(self, service: str, model: _Model, why: str) -> None:
        self.losses += 1
        log.warning("replica %s no longer owns %s: %s", self.replica_id, service, why)
        self._demote(service, model)

    def _demote(self, service: str, model: _Model) -> None:
        """Back to following: the live model (and what it learned unsaved) is dropped;
        the unsaved decisions are still unmarked, so the next owner learns them."""
        with self._lock:
            if self._models.get(service) is model:
                del self._models[service]
        self._follow(service)

    def _fresh(self, service: str) -> tuple[SharedPolicy, bool]:
        """A new model of ``service`` restored from its snapshot; and whether it was."""
        policy = self._factory(service)
        blob = self.pg.load_model(service)
        restored = False
        if blob is not None:
            try:
                policy.restore(blob)
                restored = True
            except Exception:  # a corrupt snapshot must not stop the service's agents
                log.exception("model snapshot of %s could not be restored", service)
        return SharedPolicy(policy), restored

    def _follow(self, service: str) -> _Model:
        """The follower copy of ``service``'s newest snapshot (reloaded when it changed)."""
        generation = self.pg.model_generation(service)
        with self._lock:
            model = self._models.get(service)
            if model is not None and (model.epoch is not None or model.generation == generation):
                return model
        if model is not None:  # a newer snapshot: reload the copy in place
            blob = self.pg.load_model(service)
            if blob is not None:
                try:
                    model.policy.restore(blob)
                except Exception:  # a corrupt snapshot: keep deciding from the copy we have
                    log.exception("model snapshot of %s could not be restored", service)
            model.generation = generation
            return model
        fresh = _Model(policy=self._fresh(service)[0], generation=generation)
        with self._lock:
            current = self._models.get(service)
            if current is not None and current.epoch is not None:
                return current  # taken over meanwhile
            self._models[service] = fresh
        return fresh

    def release(self) -> None:
        """Clean shutdown: a last snapshot of each owned model, and its lease freed."""
        with self._pass_lock:
            with self._lock:
                owned = [(n, m) for n, m in self._models.items() if m.epoch is not None]
            for service, model in owned:
                try:
                    if self._save(service, model) or not model.unsaved:
                        assert model.epoch is not None
                        self.pg.release_lease(service, self.replica_id, model.epoch)
                except Exception:
                    log.warning("could not release the lease of %s", service, exc_info=True)


def registry_for(
    config: ControllerConfig,
    store: ControllerStore,
    *,
    adaptive_factory: PolicyFactory | None = None,
    heuristic: Policy | None = None,
    clock: Callable[[], float] = time.time,
) -> PolicyRegistry:
    """The registry for ``store``: model leases on PostgreSQL (replicas may share it),
    the plain in-process registry on SQLite."""
    if isinstance(store, PostgresStore):
        return OwnedPolicyRegistry(
            config, store, adaptive_factory=adaptive_factory, heuristic=heuristic, clock=clock
        )
    return PolicyRegistry(
        config, store, adaptive_factory=adaptive_factory, heuristic=heuristic, clock=clock
    )


async def run_ownership(registry: OwnedPolicyRegistry, interval_s: float = PASS_INTERVAL_S) -> None:
    """The ownership passes, every ``interval_s`` (cancel to stop): the database work on a
    thread; the learning on the event loop's thread, like every other use of the models,
    :data:`LEARN_CHUNK` decisions at a time between polls (a burst of learning on another
    thread would hold the GIL against the polls)."""
    while True:
        try:
            work = await asyncio.to_thread(registry.collect)
            for item in work:
                for start in range(0, len(item.rows), LEARN_CHUNK):
                    registry.learn_rows(item, item.rows[start : start + LEARN_CHUNK])
                    await asyncio.sleep(0)
            await asyncio.to_thread(registry.finish, work)
        except asyncio.CancelledError:
            raise
        except Exception:  # a pass must never end the loop
            log.exception("ownership pass failed")
        await asyncio.sleep(interval_s)
