"""The simulator's calibration: what real processes measured, read from the packaged
``calibration.json`` (py-spy's world) or ``calibration_native.json`` (the native
profiler's), both written by ``bench/sim_calibration.py``.

    >>> calib = calibration()
    >>> calib.sample_yield > 0, dict(calib.demo_cpu_cores).get("steady", 0.05) > 0
    (True, True)
    >>> native = calibration("native")
    >>> native.profiler, native.segment_lag_s, native.sampler_cores_per_hz > 0
    ('native', 0.0, True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Calibration:
    """Measured on real processes by ``bench/sim_calibration.py``."""

    sample_yield: float  # samples/s per Hz per core of workload CPU
    attribution_bias: float  # L1 error no sample count removes
    segment_lag_s: float  # mean delay before new params show in the samples
    false_alarms_per_s: float = 0.0  # reflex firings without a change, at false_alarms_at_std
    false_alarms_at_std: float = 4.0
    #: seconds from a change until the agent's change detector signals it (1 s, assumed,
    #: until session 29 measured it)
    reflex_delay_s: float = 1.0
    #: the demo service's own CPU (cores) per ``adaprof bench`` phase, profiling off
    demo_cpu_cores: tuple[tuple[str, float], ...] = ()
    #: every agent thread beyond py-spy, per exported span, profiling off (None: the
    #: simulator's constants); what slow-span capture adds per span
    agent_cpu_per_span_s: float | None = None
    capture_cpu_per_span_s: float = 0.0
    #: spans the demo service exports per request (None: the scenario's own figure)
    demo_spans_per_request: float | None = None
    #: the agent's profiler (``py-spy`` or ``native``): what the simulated agent says
    #: it runs, so that the controller prices and targets it as it would the real one
    profiler: str = "py-spy"
    #: the sampler's CPU (cores) in the process scope beyond every other agent thread:
    #: a fixed part while it runs at all, and a part per Hz (``None``: the cost
    #: model's fit, ``cost_model.json``: py-spy's world)
    sampler_cores_fixed: float = 0.0
    sampler_cores_per_hz: float | None = None
    #: the same in the requests scope, per Hz and per core of the service's own CPU:
    #: the sampler ticks only while a request is open, about as long as the service
    #: works (``None``: as the process scope)
    requests_cores_per_hz_core: float | None = None

    def false_alarm_rate(self, sensitivity: float) -> float:
        """Reflex firings per second without a change at ``sensitivity`` (baseline std):
        measured at ``false_alarms_at_std`` (the catalog's 8 since session 29, 4
        before), falling as ``exp(−(s − measured) / 2)`` away from it (an assumed
        Gaussian-like tail; one sensitivity is measured)."""
        if sensitivity <= 0:
            return 0.0
        return self.false_alarms_per_s * math.exp(-(sensitivity - self.false_alarms_at_std) / 2.0)


#: The packaged calibration file of each profiler's world.
FILES = {"py-spy": "calibration.json", "native": "calibration_native.json"}


def _optional(data: dict[str, object], key: str) -> float | None:
    value = data.get(key)
    return None if value is None else float(value)  # type: ignore[arg-type]


@lru_cache(maxsize=len(FILES))
def calibration(profiler: str = "py-spy") -> Calibration:
    """The packaged calibration of ``profiler``'s world (:data:`FILES`).

    >>> calibration("austin")
    Traceback (most recent call last):
    ...
    ValueError: no simulated world for the profiler 'austin' (known: py-spy, native)
    """
    if profiler not in FILES:
        raise ValueError(
            f"no simulated world for the profiler {profiler!r} (known: {', '.join(FILES)})"
        )
    text = resources.files("otel_adaprof.sim").joinpath(FILES[profiler]).read_text()
    data = json.loads(text)
    return Calibration(
        sample_yield=float(data.get("sample_yield") or 1.0),
        attribution_bias=float(data.get("attribution_bias") or 0.0),
        segment_lag_s=float(data.get("segment_lag_s") or 0.0),
        false_alarms_per_s=float(
            data.get("reflex_false_alarms_per_s")
            if data.get("reflex_false_alarms_per_s") is not None
            else data.get("reflex_false_alarms_per_s_at_4std") or 0.0
        ),
        false_alarms_at_std=float(
            data.get("reflex_false_alarms_at_std", 4.0)
            if data.get("reflex_false_alarms_per_s") is not None
            else 4.0
        ),
        reflex_delay_s=float(data.get("reflex_delay_s") or 1.0),
        demo_cpu_cores=tuple(
            (str(k), float(v)) for k, v in (data.get("demo_cpu_cores") or {}).items()
        ),
        agent_cpu_per_span_s=(
            float(data["agent_cpu_per_span_s"])
            if data.get("agent_cpu_per_span_s") is not None
            else None
        ),
        capture_cpu_per_span_s=float(data.get("capture_cpu_per_span_s") or 0.0),
        demo_spans_per_request=(
            float(data["demo_spans_per_request"])
            if data.get("demo_spans_per_request") is not None
            else None
        ),
        profiler=profiler,
        sampler_cores_fixed=_optional(data, "sampler_cores_fixed") or 0.0,
        sampler_cores_per_hz=_optional(data, "sampler_cores_per_hz"),
        requests_cores_per_hz_core=_optional(data, "requests_cores_per_hz_core"),
    )
