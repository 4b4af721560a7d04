"""``GET /``: the controller page (static HTML, script and style shipped in the package).

The page reads only the public ``GET`` endpoints (sessions, agents, timeline, profile),
so it needs no token and changes nothing. Nothing is fetched from another origin: the
``Content-Security-Policy`` header allows only this controller.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

routes = web.RouteTableDef()

#: Files of ``controller/page/`` served under ``/page/``, with their content types.
ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "flame.js": "text/javascript",
    "style.css": "text/css",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _asset(name: str) -> web.Response:
    body = resources.files("otel_adaprof.controller").joinpath("page").joinpath(name).read_bytes()
    return web.Response(
        body=body,
        content_type=ASSETS[name],
        charset="utf-8",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@routes.get("/")
async def page(request: web.Request) -> web.Response:
    return _asset("index.html")


@routes.get("/page/{name}")
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "index.html":
        raise web.HTTPNotFound()
    return _asset(name)
