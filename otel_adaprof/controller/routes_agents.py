"""``/v1/agents``: the poll every agent sends once per window, and the agent list."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.opamp import merge_agents
from otel_adaprof.controller.poll_codec import read_poll, write_answer
from otel_adaprof.controller.state import CONFIG, CORE, METRICS, OPAMP

routes = web.RouteTableDef()


@routes.post("/v1/agents/poll")
async def poll(request: web.Request) -> web.Response:
    poll_request = read_poll(await request.read())
    response = await request.app[CORE].poll_async(poll_request)
    metrics = request.app[METRICS]
    metrics.polls.inc()
    metrics.decision("session" if response.session_id else "default").inc()
    return web.Response(body=write_answer(response), content_type="application/json")


@routes.get("/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    core = request.app[CORE]
    stale_after = request.app[CONFIG].agents.stale_after_s
    now = core.clock()
    agents = merge_agents(await core.run_db(core.store.list_agents), request.app[OPAMP].agents())
    for agent in agents:
        agent["stale"] = now - agent["last_seen"] > stale_after
    return web.json_response({"agents": agents})
