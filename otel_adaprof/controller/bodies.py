"""Reading request bodies and writing error bodies, shared by the route tables."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from otel_adaprof.errors import ContractError


def error_json(status: int, error: str, message: str, field: str = "") -> web.Response:
    """A JSON error body in the protocol's ``ErrorResponse`` shape."""
    body: dict[str, Any] = {"error": error, "message": message, "field": field, "problems": []}
    if field:
        body["problems"] = [{"field": field, "reason": message}]
    return web.json_response(body, status=status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a :class:`ContractError` naming the body."""
    raw = await request.read()
    if not raw:
        raise ContractError([("body", "request body is empty, a JSON object is required")])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError([("body", f"not valid JSON: {exc}")]) from None
