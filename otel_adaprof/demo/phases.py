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

# the shapes are described in shapes.py (importable before a shape is chosen) and
# re-exported here with the process's choice
from otel_adaprof.demo.shapes import SHAPE_ENV as SHAPE_ENV
from otel_adaprof.demo.shapes import SHAPES as SHAPES
from otel_adaprof.demo.shapes import Endpoint as Endpoint
from otel_adaprof.demo.shapes import Shape, shape_named

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
