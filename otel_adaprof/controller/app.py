"""The controller's aiohttp application.

Usage::

    from aiohttp import web
    from otel_adaprof.controller.app import create_app
    from otel_adaprof.controller.config import ControllerConfig

    web.run_app(create_app(ControllerConfig()), host="127.0.0.1", port=8080)

``create_app`` builds everything (tests call the same factory); resources live in
``cleanup_ctx`` generators: the database opens before the server serves and closes
(after a last model snapshot) when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from otel_adaprof.controller import (
    routes_agents,
    routes_opamp,
    routes_ops,
    routes_page,
    routes_replicas,
    routes_sessions,
)
from otel_adaprof.controller.bodies import error_json
from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.metrics import ControllerMetrics
from otel_adaprof.controller.opamp import OpampServer
from otel_adaprof.controller.polling import ControllerCore, NotFound, PolicyFactory
from otel_adaprof.controller.state import CONFIG, CORE, METRICS, OPAMP
from otel_adaprof.controller.store_factory import open_store
from otel_adaprof.errors import ContractError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Endpoints an agent token opens (besides the admin token).
AGENT_PATHS = ("/v1/agents/poll", "/v1/opamp")
#: Seconds between housekeeping passes (session expiry, model snapshots).
HOUSEKEEPING_INTERVAL_S = 1.0


def _authorised(request: web.Request, tokens: list[str]) -> web.Response | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return error_json(401, "unauthorized", "missing bearer token", "Authorization")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(supplied.strip().encode(), t.encode()) for t in tokens
    ):
        return error_json(403, "forbidden", "invalid bearer token", "Authorization")
    return None


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token check on mutating endpoints; domain errors → JSON 4xx; metrics per route."""
    config = request.app[CONFIG]
    metrics = request.app[METRICS]
    started = time.perf_counter()
    route = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else "unmatched"
    )
    try:
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            if request.path in AGENT_PATHS:
                tokens = [t for t in (config.agent_token, config.token) if t]
            else:
                tokens = [config.token] if config.token else []
            if tokens:
                denied = _authorised(request, tokens)
                if denied is not None:
                    return denied
        response = await handler(request)
    except ContractError as exc:
        response = web.json_response(exc.to_json(), status=400)
    except NotFound as exc:
        response = error_json(404, "not_found", str(exc))
    except web.HTTPRequestEntityTooLarge as exc:
        response = error_json(413, "too_large", exc.text or "body too large", "body")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_json(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response = error_json(500, "internal", "internal error (logged by the controller)")
    metrics.route_latency(route).observe(time.perf_counter() - started)
    if response.status >= 400:
        metrics.errors.labels(str(response.status)).inc()
    return response


def _start_ownership(policies: object) -> asyncio.Task[None] | None:
    """On PostgreSQL, the model-lease passes of this replica (model_lease.py)."""
    if "otel_adaprof.controller.model_lease" not in sys.modules:
        return None
    from otel_adaprof.controller.model_lease import OwnedPolicyRegistry, run_ownership

    if not isinstance(policies, OwnedPolicyRegistry):
        return None
    return asyncio.create_task(run_ownership(policies))


def create_app(
    config: ControllerConfig,
    *,
    adaptive_factory: PolicyFactory | None = None,
) -> web.Application:
    """The controller application for ``config`` (database at ``config.database.path``)."""
    app = web.Application(middlewares=[errors_and_auth], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[METRICS] = ControllerMetrics()

    async def database(app: web.Application) -> AsyncIterator[None]:
        store = open_store(config.database.path, report_retention=config.database.report_retention)
        core = ControllerCore(config, store, adaptive_factory=adaptive_factory)
        core.on_commit = app[METRICS].observe_commit
        app[CORE] = core
        app[OPAMP] = OpampServer(core)
        ownership = _start_ownership(core.policies)
        yield
        try:
            if ownership is not None:
                ownership.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ownership
            core.close()  # the last group commit
            core.snapshot_models()
            if ownership is not None:  # leases freed: another replica takes over at once
                await asyncio.to_thread(core.policies.release)  # type: ignore[attr-defined]
        finally:
            store.close()

    async def housekeeping(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_housekeeping(app))
        app[METRICS].watch_gc()
        # What exists once the controller is up (modules, classes, schemas, the policy
        # catalog: most of the heap) lives as long as the process: a full collection
        # walking it stopped the event loop for tens of ms (poll p99). Frozen, it is
        # left out of every collection; objects made later are collected as before.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        app[METRICS].unwatch_gc()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend([database, housekeeping])
    app.add_routes(routes_sessions.routes)
    app.add_routes(routes_agents.routes)
    app.add_routes(routes_ops.routes)
    app.add_routes(routes_opamp.routes)
    app.add_routes(routes_page.routes)
    app.add_routes(routes_replicas.routes)
    return app


async def _housekeeping(app: web.Application) -> None:
    core = app[CORE]
    interval = app[CONFIG].database.model_snapshot_interval_s
    last_snapshot = time.monotonic()
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        try:
            await core.expire_sessions_async()
            if time.monotonic() - last_snapshot >= interval:
                await core.snapshot_models_async()
                last_snapshot = time.monotonic()
            await core.evict_models_async()
            sessions = await core.run_db(core.store.list_sessions)
            app[METRICS].sessions_open.set(sum(1 for s in sessions if s["state"] == "open"))
        except Exception:  # housekeeping must survive a bad pass
            log.exception("housekeeping failed")
