"""``/v1/replicas``: this replica and the model leases (PostgreSQL; docs/controller.md).

On SQLite there is one controller: ``{"replica": null, "leases": []}``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from otel_adaprof.controller.state import CORE

routes = web.RouteTableDef()


@routes.get("/v1/replicas")
async def replicas(request: web.Request) -> web.Response:
    policies = request.app[CORE].policies
    from otel_adaprof.controller.model_lease import OwnedPolicyRegistry

    if not isinstance(policies, OwnedPolicyRegistry):
        return web.json_response({"replica": None, "leases": []})
    leases = await asyncio.to_thread(policies.pg.leases)
    return web.json_response({"replica": policies.describe(), "leases": leases})
