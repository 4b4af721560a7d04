"""Which category a span is in, from semantic-convention attributes and span kind.

Old and new semantic conventions are both recognised (``db.system`` and
``db.system.name``, ``http.method`` and ``http.request.method``, ...). The first
match wins in the order database, messaging, RPC, HTTP. A server or client span with
none of these attributes counts as HTTP (some instrumentations set them only at the
end, or not at all), a producer or consumer span as messaging; anything else is
internal.

    >>> from opentelemetry.trace import SpanKind
    >>> category_of(SpanKind.CLIENT, {"db.system": "sqlite"}).value
    'db'
    >>> category_of(SpanKind.SERVER, {"http.request.method": "GET"}).value
    'http'
    >>> category_of(SpanKind.INTERNAL, {}).value
    'internal'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from otel_adaprof.params import Category

_DB_KEYS = ("db.system", "db.system.name")
_MESSAGING_KEYS = ("messaging.system",)
_RPC_KEYS = ("rpc.system",)
_HTTP_KEYS = (
    "http.request.method",
    "http.method",
    "http.response.status_code",
    "http.status_code",
    "url.full",
    "url.path",
    "http.url",
    "http.target",
    "http.route",
)


def category_of(kind: SpanKind | None, attributes: Mapping[str, Any] | None) -> Category:
    """The span's :class:`~otel_adaprof.params.Category`."""
    attrs = attributes or {}
    if any(k in attrs for k in _DB_KEYS):
        return Category.DB
    if any(k in attrs for k in _MESSAGING_KEYS):
        return Category.MESSAGING
    if any(k in attrs for k in _RPC_KEYS):
        return Category.RPC
    if any(k in attrs for k in _HTTP_KEYS):
        return Category.HTTP
    if kind in (SpanKind.PRODUCER, SpanKind.CONSUMER):
        return Category.MESSAGING
    if kind in (SpanKind.SERVER, SpanKind.CLIENT):
        return Category.HTTP  # a remote call with no other convention: HTTP by far most often
    return Category.INTERNAL
