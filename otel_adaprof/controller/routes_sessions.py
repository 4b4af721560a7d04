"""``/v1/sessions``: open, list, stop, timeline and profile of profiling sessions."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from otel_adaprof import __version__
from otel_adaprof.controller.bodies import read_json
from otel_adaprof.controller.state import CORE
from otel_adaprof.errors import ContractError
from otel_adaprof.exporters.collapsed import to_collapsed
from otel_adaprof.exporters.otlp_profiles import histogram_request
from otel_adaprof.exporters.pprof import to_pprof
from otel_adaprof.exporters.speedscope import to_speedscope
from otel_adaprof.session_spec import SessionSpec

routes = web.RouteTableDef()

#: Profile formats of ``GET /v1/sessions/{id}/profile``.
PROFILE_FORMATS = ("speedscope", "collapsed", "pprof", "otlp")
#: Sampling interval assumed for a session whose windows report no samples (ns).
DEFAULT_PERIOD_NS = 10_000_000


def mean_period_ns(windows: Sequence[Mapping[str, Any]]) -> int:
    """The sampling interval of a session's windows, weighted by their samples (ns).

    Pyroscope reads a ``samples/count`` value times the period as CPU time; a merged
    profile mixes windows sampled at different rates, so the period is their mean
    weighted by samples, which keeps count × period close to the windows' own estimates.

    >>> def window(interval_ms, samples_per_s):
    ...     return {"params": {"sampling_interval_ms": interval_ms},
    ...             "state": {"samples_per_s": samples_per_s, "window_seconds": 5}}
    >>> mean_period_ns([window(10, 90), window(100, 10)])
    19000000
    """
    weighted = samples = 0.0
    for window in windows:
        interval = float((window.get("params") or {}).get("sampling_interval_ms") or 0)
        state = window.get("state") or {}
        count = float(state.get("samples_per_s", 0.0)) * float(state.get("window_seconds", 0.0))
        if interval > 0 and count > 0:
            weighted += interval * count
            samples += count
    return round(weighted / samples * 1e6) if samples else DEFAULT_PERIOD_NS


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
    if fmt == "otlp":
        start = float(session["created_at"])
        end = min(float(session["stopped_at"] or session["ends_at"] or time.time()), time.time())
        windows = await core.run_db(core.store.timeline, session_id)
        request_proto = histogram_request(
            histogram,
            resource={"service.name": session["service"], "adaprof.session.id": session_id},
            period_ns=mean_period_ns(windows),
            time_unix_nano=int(start * 1e9),
            duration_nano=max(0, int((end - start) * 1e9)),
            scope_version=__version__,
        )
        return web.Response(
            body=request_proto.SerializeToString(), content_type="application/x-protobuf"
        )
    return web.json_response(to_speedscope(histogram, name=name))
