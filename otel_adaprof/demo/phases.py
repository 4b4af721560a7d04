"""The demo's phase schedule and per-endpoint CPU spec — the data ground truth comes from.

A run goes through four phases: ``steady`` → ``hot_path`` (``compress_report`` starts
taking a known CPU share) → ``load_change`` (request rate doubles, hot path still on) →
``hot_path_gone``. Phase lengths are fractions of the run, so a 30 s demo and a
10 minute benchmark go through the same story.

Usage::

    >>> from otel_adaprof.demo.phases import schedule
    >>> for p in schedule(100.0, base_rate_rps=20):
    ...     print(p.name, p.start_s, p.rate_rps, p.hot_path)
    steady 0.0 20.0 False
    hot_path 30.0 20.0 True
    load_change 55.0 40.0 True
    hot_path_gone 80.0 20.0 False

The service comes in two shapes (:data:`SHAPES`), chosen by the environment variable
``ADAPROF_DEMO_SHAPE`` when this module is first imported (``adaprof bench --shape``
sets it; every process of a run — service, load, controller, the bench — inherits it,
so they agree on the endpoints and the ground truth): ``shop`` (the default, the one
the policy was tuned on) and ``ledger``, a service the policy was not tuned on.

    >>> SHAPE.name, [ep.path for ep in ENDPOINTS]
    ('shop', ['/catalog', '/price', '/checkout'])
"""

from __future__ import annotations

import os
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


#: The shape of this process's demo (``ADAPROF_DEMO_SHAPE``, default ``shop``).
SHAPE: Shape = shape_named(os.environ.get(SHAPE_ENV) or "shop")
#: The endpoints the load generator drives, with the CPU each request burns.
ENDPOINTS: tuple[Endpoint, ...] = SHAPE.endpoints


@dataclass(frozen=True)
class Phase:
    """A stretch of the run with a fixed request rate and hot-path switch."""

    name: str
    start_s: float
    duration_s: float
    rate_rps: float
    hot_path: bool

    @property
    def end_s(self) -> float:
        """Seconds from the run start when the phase ends."""
        return self.start_s + self.duration_s


#: (name, fraction of the run, rate multiplier, hot path on)
PHASE_PLAN: tuple[tuple[str, float, float, bool], ...] = (
    ("steady", 0.30, 1.0, False),
    ("hot_path", 0.25, 1.0, True),
    ("load_change", 0.25, 2.0, True),
    ("hot_path_gone", 0.20, 1.0, False),
)


def schedule(duration_s: float, base_rate_rps: float = 20.0) -> list[Phase]:
    """The phases of a run of ``duration_s`` seconds at ``base_rate_rps`` requests/s."""
    phases: list[Phase] = []
    start = 0.0
    for name, fraction, multiplier, hot in PHASE_PLAN:
        length = duration_s * fraction
        phases.append(
            Phase(name, round(start, 6), round(length, 6), base_rate_rps * multiplier, hot)
        )
        start += length
    return phases


def phase_at(phases: list[Phase], t_s: float) -> Phase:
    """The phase in force ``t_s`` seconds after the start (the last one after the end)."""
    for phase in phases:
        if t_s < phase.end_s:
            return phase
    return phases[-1]
