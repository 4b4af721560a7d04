"""``/v1/agents``: the poll every agent sends once per window, and the agent list."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.opamp import merge_agents
from otel_adaprof.controller.poll_codec import read_poll, write_answer
from otel_adaprof.controller.poll_timing import HEADER, PollTiming
from otel_adaprof.controller.state import CONFIG, CORE, METRICS, OPAMP

routes = web.RouteTableDef()


@routes.post("/v1/agents/poll")
async def poll(request: web.Request) -> web.Response:
    timing = PollTiming()
    poll_request = read_poll(await request.read())
    timing.mark("parse")
    response = await request.app[CORE].poll_async(poll_request, timing)
    body = write_answer(response)
    timing.mark("answer")
    metrics = request.app[METRICS]
    metrics.polls.inc()
    metrics.decision("session" if response.session_id else "default").inc()
    metrics.observe_poll(timing)
    answer = web.Response(body=body, content_type="application/json")
    if request.app[CONFIG].server_timing:
        answer.headers[HEADER] = timing.header()
    return answer


@routes.get("/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    core = request.app[CORE]
    stale_after = request.app[CONFIG].agents.stale_after_s
    now = core.clock()
    agents = merge_agents(await core.run_db(core.store.list_agents), request.app[OPAMP].agents())
    for agent in agents:
        agent["stale"] = now - agent["last_seen"] > stale_after
    return web.json_response({"agents": agents})
