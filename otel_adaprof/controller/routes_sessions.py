"""``/v1/sessions``: open, list, stop, timeline and profile of profiling sessions."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.bodies import read_json
from otel_adaprof.controller.state import CORE
from otel_adaprof.errors import ContractError
from otel_adaprof.exporters.collapsed import to_collapsed
from otel_adaprof.exporters.pprof import to_pprof
from otel_adaprof.exporters.speedscope import to_speedscope
from otel_adaprof.session_spec import SessionSpec

routes = web.RouteTableDef()

#: Profile formats of ``GET /v1/sessions/{id}/profile``.
PROFILE_FORMATS = ("speedscope", "collapsed", "pprof")


@routes.post("/v1/sessions")
async def open_session(request: web.Request) -> web.Response:
    spec = SessionSpec.parse(await read_json(request))
    core = request.app[CORE]
    return web.json_response(await core.run_db(core.open_session, spec), status=201)


@routes.get("/v1/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return web.json_response({"sessions": await core.run_db(core.sessions)})


@routes.get("/v1/sessions/{id}")
async def get_session(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return web.json_response(await core.run_db(core.session, request.match_info["id"]))


@routes.post("/v1/sessions/{id}/stop")
async def stop_session(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CORE].stop_session_async(request.match_info["id"]))


@routes.get("/v1/sessions/{id}/timeline")
async def timeline(request: web.Request) -> web.Response:
    core = request.app[CORE]
    session_id = request.match_info["id"]
    await core.run_db(core.session, session_id)  # 404 for an unknown id
    windows = await core.run_db(core.store.timeline, session_id)
    return web.json_response({"session_id": session_id, "windows": windows})


@routes.get("/v1/sessions/{id}/profile")
async def profile(request: web.Request) -> web.Response:
    core = request.app[CORE]
    session_id = request.match_info["id"]
    session = await core.run_db(core.session, session_id)
    fmt = request.query.get("format", "speedscope")
    if fmt not in PROFILE_FORMATS:
        raise ContractError(
            [("format", f"unknown format {fmt[:40]!r}, allowed: {', '.join(PROFILE_FORMATS)}")]
        )
    histogram = await core.run_db(core.store.profile, session_id)
    name = f"{session['service']} session {session_id}"
    if fmt == "collapsed":
        return web.Response(text=to_collapsed(histogram), content_type="text/plain")
    if fmt == "pprof":
        return web.Response(
            body=to_pprof(histogram, time_nanos=int(session["created_at"] * 1e9)),
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{session_id}.pb.gz"'},
        )
    return web.json_response(to_speedscope(histogram, name=name))
