"""The profiler's cost, as measured by ``bench/cost_model.py`` and committed with the package.

``python bench/cost_model.py --write`` runs the real agent (py-spy plus every agent
thread) at 1, 10 and 100 Hz on 4, 20 and 64 threads in both profile modes, fits
``cores = a + b·rate + c·rate·threads`` per mode and stores it in
``otel_adaprof/cost_fit.json``; its raw figures are in ``bench/output/cost_model.json``.
The controller's cost estimates, its budget guard and the simulator read the cost
from here, and nowhere else. Those fits are py-spy's; ``backends`` holds other
profilers' (``python bench/cost_model.py --compare --write``: the same cells with the
native profiler), and :meth:`CostModel.for_backend` picks an agent's.

Two fits per mode: ``loaded`` (two threads always run Python code) and ``idle``
(every thread waits). By default a cost is the larger of the two: what a budget must
plan for (in ``wall`` mode py-spy reads waiting threads as well, and can cost more
on an idle service than on a busy one, where it gets less CPU). A service busy a
share of the time in between (``busy=0.2``: its threads hold the GIL a fifth of the
time, about 0.2 of a core of process CPU) costs the idle fit plus that share's part of
the gap to the loaded one, read off ``busy_curve``: the gap's share measured at busy
shares in between by ``python bench/cost_model.py --partial --write``, in ``cpu``
mode (``wall`` mode reads the same curve, unmeasured). It is not a straight line: a
service busy a tenth of the time costs about what an idle one does (0.06 of the gap),
one busy a quarter of it 0.4.

    >>> model = load_cost_model()
    >>> model.profiler_cores(0, threads=20)
    0.0
    >>> model.profiler_cores(100, threads=20, mode="wall") > model.profiler_cores(
    ...     100, threads=20, mode="cpu")
    True
    >>> model.slow_span_cores(0.0)
    0.0
    >>> idle, busy, loaded = (model.profiler_cores(100, 20, busy=b) for b in (0.0, 0.2, 1.0))
    >>> idle < busy < loaded
    True
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from otel_adaprof.errors import ContractError

#: Profile modes the fit covers (``Params.profile_mode``).
MODES = ("cpu", "wall")
#: Share of a core slow-span captures may use: the agent stretches the interval between
#: its stack reads to stay under it (``profiler/slow_spans.py``), so no estimate of
#: their cost exceeds it.
SLOW_SPAN_CORE_SHARE = 0.005


@dataclass(frozen=True)
class Coefficients:
    """``cores = a + b·rate + c·rate·threads`` for one mode and load."""

    a: float
    b: float
    c: float

    def cores(self, rate_hz: float, threads: int) -> float:
        """Fraction of one core at ``rate_hz`` with ``threads`` threads (never negative)."""
        return max(0.0, self.a + self.b * rate_hz + self.c * rate_hz * max(1, threads))


@dataclass(frozen=True)
class CostModel:
    """The measured cost of profiling; a frozen value (see :func:`load_cost_model`)."""

    loaded: dict[str, Coefficients]
    idle: dict[str, Coefficients]
    slow_span_capture_cpu_s: float
    measured_at: str = ""
    provisional: bool = False
    #: (busy share, share of the idle → loaded gap) points, from 0 to 1 in order.
    busy_curve: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 1.0))
    #: Other profiler backends' fits (``backends`` in the file): backend → (loaded, idle).
    backends: dict[str, tuple[dict[str, Coefficients], dict[str, Coefficients]]] = field(
        default_factory=dict
    )

    def for_backend(self, backend: str) -> CostModel:
        """The model of an agent whose profiler is ``backend`` (``py-spy``, ``native``,
        …): that backend's measured fits where the file has them (``native``: the C
        sampler in the process, a tenth of py-spy's CPU or less), else these (py-spy's,
        the safe side for a backend nobody measured).

        >>> model = load_cost_model()
        >>> model.for_backend("native").profiler_cores(100, 20) < model.profiler_cores(100, 20)
        True
        >>> model.for_backend("in-process") is model
        True
        """
        fits = self.backends.get(backend)
        if fits is None:
            return self
        return replace(self, loaded=fits[0], idle=fits[1], backends={})

    def profiler_cores(
        self, rate_hz: float, threads: int, mode: str = "cpu", *, busy: float | None = None
    ) -> float:
        """CPU of py-spy and every agent thread, as a fraction of one core.

        ``busy``: the share of the time the service's threads hold the GIL (about its
        process CPU in cores, at most 1): 1 (or ``True``) the loaded fit, 0 (or
        ``False``) the idle fit, a share in between the idle fit plus
        :meth:`gap_share` of the way to the loaded one; ``None`` (default) the larger
        of the two fits. 0 at rate 0 (profiling off).
        """
        if rate_hz <= 0:
            return 0.0
        if mode not in self.loaded:
            allowed = ", ".join(self.loaded)
            raise ValueError(f"mode: {mode!r} is not a profile mode, allowed: {allowed}")
        loaded = self.loaded[mode].cores(rate_hz, threads)
        idle = self.idle[mode].cores(rate_hz, threads)
        if busy is None:
            return max(loaded, idle)
        return idle + self.gap_share(float(busy)) * (loaded - idle)

    def gap_share(self, busy: float) -> float:
        """Share of the idle → loaded gap a service busy ``busy`` of the time costs
        (``busy_curve``, straight between its points; 0 below 0, 1 above 1).

        >>> CostModel({}, {}, 0.0, busy_curve=((0.0, 0.0), (0.5, 0.8), (1.0, 1.0))).gap_share(0.25)
        0.4
        """
        points = self.busy_curve
        if busy <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            if busy <= x1:
                return y0 + (y1 - y0) * (busy - x0) / (x1 - x0) if x1 > x0 else y1
        return points[-1][1]

    def slow_span_cores(self, captures_per_s: float) -> float:
        """CPU of in-process slow-span captures at ``captures_per_s`` (fraction of a
        core), at most :data:`SLOW_SPAN_CORE_SHARE` (the agent's cap)."""
        return min(SLOW_SPAN_CORE_SHARE, max(0.0, captures_per_s) * self.slow_span_capture_cpu_s)


def _coefficients(data: Any, where: str) -> Coefficients:
    try:
        return Coefficients(float(data["a"]), float(data["b"]), float(data["c"]))
    except (KeyError, TypeError, ValueError):
        raise ContractError([(where, "needs numbers a, b and c")]) from None


def parse_cost_fit(data: Any) -> CostModel:
    """A :class:`CostModel` from the JSON of ``cost_fit.json``; errors name the field."""
    if not isinstance(data, dict) or not isinstance(data.get("profiler"), dict):
        raise ContractError([("profiler", "missing: expected {mode: {loaded, idle}}")])
    loaded, idle = _mode_fits(data["profiler"], "profiler")
    backends = data.get("backends", {})
    if not isinstance(backends, dict):
        raise ContractError([("backends", "expected {backend: {profiler: {mode: ...}}}")])
    others = {}
    for name, entry in backends.items():
        where = f"backends.{name}.profiler"
        if not isinstance(entry, dict) or not isinstance(entry.get("profiler"), dict):
            raise ContractError([(where, "missing: expected {mode: {loaded, idle}}")])
        others[str(name)] = _mode_fits(entry["profiler"], where)
    try:
        capture = float(data.get("slow_span_capture_cpu_s", 0.0))
    except (TypeError, ValueError):
        raise ContractError([("slow_span_capture_cpu_s", "must be a number")]) from None
    return CostModel(
        loaded,
        idle,
        capture,
        str(data.get("measured_at", "")),
        bool(data.get("provisional", False)),
        _busy_curve(data.get("busy_curve")),
        others,
    )


def _mode_fits(
    profiler: dict[str, Any], where: str
) -> tuple[dict[str, Coefficients], dict[str, Coefficients]]:
    """The loaded and idle fits of every mode (idle absent: the loaded one)."""
    loaded: dict[str, Coefficients] = {}
    idle: dict[str, Coefficients] = {}
    for mode in MODES:
        fits = profiler.get(mode)
        if not isinstance(fits, dict) or "loaded" not in fits:
            raise ContractError([(f"{where}.{mode}.loaded", "missing")])
        loaded[mode] = _coefficients(fits["loaded"], f"{where}.{mode}.loaded")
        idle[mode] = _coefficients(fits.get("idle", fits["loaded"]), f"{where}.{mode}.idle")
    return loaded, idle


def _busy_curve(raw: Any) -> tuple[tuple[float, float], ...]:
    """``busy_curve``: ``[[busy, gap share], ...]`` from busy 0 to 1 in increasing order
    (absent: the straight line)."""
    if raw is None:
        return ((0.0, 0.0), (1.0, 1.0))
    try:
        points = tuple((float(x), float(y)) for x, y in raw)
    except (TypeError, ValueError):
        raise ContractError([("busy_curve", "expected [[busy, gap share], ...]")]) from None
    xs = [x for x, _ in points]
    if len(points) < 2 or xs != sorted(xs) or xs[0] != 0.0 or xs[-1] != 1.0:
        raise ContractError([("busy_curve", "needs points from busy 0 to 1, in order")])
    return points


@functools.cache
def load_cost_model() -> CostModel:
    """The packaged fit (``otel_adaprof/cost_fit.json``), read once."""
    raw = resources.files("otel_adaprof").joinpath("cost_fit.json").read_text(encoding="utf-8")
    return parse_cost_fit(json.loads(raw))
