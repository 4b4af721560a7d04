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

When only some categories pass a filter, :func:`category_in` answers "is it one of
these?" with no more look-ups than needed (a DB-only filter looks for DB keys only):

    >>> category_in(SpanKind.SERVER, {"http.method": "GET"}, frozenset({Category.DB}))
    >>> category_in(SpanKind.CLIENT, {"db.system": "sqlite"}, frozenset({Category.DB})).value
    'db'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from otel_adaprof.params import Category

_DB_KEY_ORDER = ("db.system", "db.system.name")
_DB_KEYS = frozenset(_DB_KEY_ORDER)
_MESSAGING_KEYS = frozenset({"messaging.system"})
_RPC_KEYS = frozenset({"rpc.system"})
#: HTTP's keys, the new conventions' request method first (set on every HTTP span).
_HTTP_KEY_ORDER = (
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
_HTTP_KEYS = frozenset(_HTTP_KEY_ORDER)


#: In order: a category, its keys (most often set first), and the categories that can
#: no longer be the answer once these keys are missing (messaging and HTTP may still
#: come from the kind).
_BY_KEYS = (
    (Category.DB, _DB_KEY_ORDER, frozenset({Category.DB})),
    (Category.MESSAGING, tuple(_MESSAGING_KEYS), frozenset({Category.DB})),
    (Category.RPC, tuple(_RPC_KEYS), frozenset({Category.DB, Category.RPC})),
    (Category.HTTP, _HTTP_KEY_ORDER, frozenset({Category.DB, Category.RPC})),
)
_MESSAGING_KINDS = (SpanKind.PRODUCER, SpanKind.CONSUMER)
_HTTP_KINDS = (SpanKind.SERVER, SpanKind.CLIENT)
_NO_ATTRIBUTES: Mapping[str, Any] = {}


def category_in(
    kind: SpanKind | None, attributes: Mapping[str, Any] | None, wanted: frozenset[Category]
) -> Category | None:
    """The span's category if it is in ``wanted``, else ``None`` (as :func:`category_of`,
    stopping as soon as no wanted category is left to find).

    It runs on the span path for every span a category filter judges: a key at a time
    (``in`` on the dict: a DB-only filter costs two look-ups, a third of a set operation
    on the dict's keys).
    """
    attrs = attributes or _NO_ATTRIBUTES
    for category, names, ruled_out in _BY_KEYS:
        for name in names:
            if name in attrs:
                return category if category in wanted else None
        if wanted <= ruled_out:
            return None
    found = category_of(kind, None)
    return found if found in wanted else None


def category_of(kind: SpanKind | None, attributes: Mapping[str, Any] | None) -> Category:
    """The span's :class:`~otel_adaprof.params.Category`."""
    keys = (attributes or {}).keys()  # set operations on a dict's keys run in C
    if not _DB_KEYS.isdisjoint(keys):
        return Category.DB
    if not _MESSAGING_KEYS.isdisjoint(keys):
        return Category.MESSAGING
    if not _RPC_KEYS.isdisjoint(keys):
        return Category.RPC
    if not _HTTP_KEYS.isdisjoint(keys):
        return Category.HTTP
    if kind in _MESSAGING_KINDS:
        return Category.MESSAGING
    if kind in _HTTP_KINDS:
        return Category.HTTP  # a remote call with no other convention: HTTP by far most often
    return Category.INTERNAL
