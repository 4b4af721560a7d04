"""``POST /v1/opamp``: the OpAMP HTTP transport (binary protobuf, gzip accepted)."""

from __future__ import annotations

from aiohttp import web

from otel_adaprof.controller.bodies import error_json
from otel_adaprof.controller.state import METRICS, OPAMP

routes = web.RouteTableDef()

#: Content type of OpAMP over HTTP, both ways.
PROTOBUF = "application/x-protobuf"
#: Answers larger than this are gzip-compressed when the agent accepts it (bytes).
COMPRESS_ABOVE = 1024


@routes.post("/v1/opamp")
async def opamp(request: web.Request) -> web.Response:
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != PROTOBUF:
        return error_json(
            415,
            "unsupported_media_type",
            f"Content-Type must be {PROTOBUF} (got {content_type or 'none'})",
            "Content-Type",
        )
    raw = await request.read()  # aiohttp undoes Content-Encoding: gzip
    server = request.app[OPAMP]
    reports = server.reports
    status, body = await server.handle_async(raw)
    if server.reports > reports:  # a window report: counted with the native polls
        request.app[METRICS].polls.inc()
    response = web.Response(body=body, status=status, content_type=PROTOBUF)
    if len(body) > COMPRESS_ABOVE and "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response
