"""The demo service's shapes: the request mix, the CPU per named function and the stack
depth a run's service has (:data:`SHAPES`).

This module only describes them; :mod:`otel_adaprof.demo.phases` picks the process's
shape from ``ADAPROF_DEMO_SHAPE`` when it is first imported. Code that must know the
shapes before that choice (``adaprof bench --shape``) imports them from here.

    >>> sorted(SHAPES), SHAPES["ledger"].layers
    (['ledger', 'shop'], 24)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    """One endpoint: its share of the generated requests and CPU ms per named function.

    ``hot_cpu_ms`` is added (in ``compress_report``) only while the hot path is on.
    ``peer_cpu_ms`` is spent by the peer endpoint the request calls over HTTP.
    """

    path: str
    weight: float
    cpu_ms: dict[str, float]
    hot_cpu_ms: float = 0.0


@dataclass(frozen=True)
class Shape:
    """What the demo service looks like to a profiler: its endpoints (request mix and
    CPU per named function) and ``layers``, the frames a framework puts between a
    request's handler and its work (middleware, dispatch, decorators), which make its
    stacks that much deeper."""

    name: str
    endpoints: tuple[Endpoint, ...]
    layers: int = 0
    description: str = ""


#: The shapes a demo service can take (see the module docstring).
SHAPES: dict[str, Shape] = {
    # Steady-state shares: parse_catalog 0.30, price_items 0.40, compute_tax 0.10,
    # render_invoice 0.20; with the hot path on compress_report takes 0.40 of the CPU
    # (5.0 ms of CPU per request, 8.3 with the hot path on).
    "shop": Shape(
        "shop",
        (
            Endpoint("/catalog", 0.4, {"parse_catalog": 3.75}),
            Endpoint("/price", 0.4, {"price_items": 5.0, "compute_tax": 1.25}),
            Endpoint("/checkout", 0.2, {"render_invoice": 5.0}, hot_cpu_ms=50.0 / 3.0),
        ),
        description="the service the policy was tuned on: a hot path of 0.40 of the CPU",
    ),
    # Not tuned on: another request mix (steady shares parse_catalog 0.20, price_items
    # 0.40, compute_tax 0.20, render_invoice 0.20), a subtle hot path on the rarest
    # endpoint (compress_report 0.15 of the CPU: +18 % CPU per request, 6.0 ms ->
    # 7.06 ms, on one request in ten) and stacks 24 frames deeper.
    "ledger": Shape(
        "ledger",
        (
            Endpoint("/catalog", 0.6, {"parse_catalog": 2.0}),
            Endpoint("/price", 0.3, {"price_items": 8.0, "compute_tax": 4.0}),
            Endpoint("/checkout", 0.1, {"render_invoice": 12.0}, hot_cpu_ms=180.0 / 17.0),
        ),
        layers=24,
        description="a service the policy was not tuned on: a subtle hot path (0.15 of "
        "the CPU) on the rarest endpoint, another mix, stacks 24 frames deeper",
    ),
}
#: Environment variable that picks the shape (read once, at import).
SHAPE_ENV = "ADAPROF_DEMO_SHAPE"


def shape_named(name: str) -> Shape:
    """The shape called ``name``; :class:`ValueError` naming the known ones otherwise.

    >>> shape_named("ledger").layers
    24
    >>> shape_named("bank")
    Traceback (most recent call last):
    ...
    ValueError: unknown demo shape 'bank' (ADAPROF_DEMO_SHAPE): known shapes are ledger, shop
    """
    try:
        return SHAPES[name]
    except KeyError:
        known = ", ".join(sorted(SHAPES))
        raise ValueError(
            f"unknown demo shape {name!r} ({SHAPE_ENV}): known shapes are {known}"
        ) from None
