"""Operations: health, readiness, Prometheus metrics, OpenAPI, Jaeger sampling."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.bodies import error_json
from otel_adaprof.controller.openapi import openapi_document
from otel_adaprof.controller.sampling import jaeger_strategy
from otel_adaprof.controller.state import CORE, METRICS
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        core = request.app[CORE]
        await core.run_db(core.store.ping)
    except Exception as exc:  # not ready is an answer, not a crash
        return error_json(503, "not_ready", f"database: {exc}")
    return web.json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def _params_for(request: web.Request) -> Params:
    service = request.query.get("service", "")
    if not service or len(service) > 256:
        raise ContractError([("service", "query parameter 'service' (1-256 chars) is required")])
    core = request.app[CORE]
    session = await core.run_db(core.store.open_session_for, service)
    if session is not None:
        described = await core.run_db(core.session_book.describe, session)
        return Params.parse(described["params"])
    return core.config.params_for(service)


@routes.get("/sampling")
async def sampling(request: web.Request) -> web.Response:
    return web.json_response(jaeger_strategy(await _params_for(request)))


@routes.get("/api/sampling")
async def api_sampling(request: web.Request) -> web.Response:
    return web.json_response(jaeger_strategy(await _params_for(request)))
