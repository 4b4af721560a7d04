"""``/v1/agents``: the poll every agent sends once per window, and the agent list."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.state import CONFIG, CORE, METRICS
from otel_adaprof.protocol import decode_poll_request, encode

routes = web.RouteTableDef()


@routes.post("/v1/agents/poll")
async def poll(request: web.Request) -> web.Response:
    poll_request = decode_poll_request(await request.read())
    response = await request.app[CORE].poll_async(poll_request)
    metrics = request.app[METRICS]
    metrics.polls.inc()
    metrics.decisions.labels("session" if response.session_id else "default").inc()
    return web.Response(body=encode(response), content_type="application/json")


@routes.get("/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    core = request.app[CORE]
    stale_after = request.app[CONFIG].agents.stale_after_s
    now = core.clock()
    agents = await core.run_db(core.store.list_agents)
    for agent in agents:
        agent["stale"] = now - agent["last_seen"] > stale_after
    return web.json_response({"agents": agents})
