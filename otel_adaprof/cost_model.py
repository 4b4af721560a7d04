"""The measured cost model: profiler CPU (cores) by sampling rate, threads and mode.

Loaded from the packaged fit ``otel_adaprof/cost_fit.json`` (written by
``python bench/cost_model.py --write``). The budget guard and the simulator read it;
nobody else hard-codes a profiler cost.

Usage::

    >>> from otel_adaprof.cost_model import load_cost_model
    >>> model = load_cost_model()
    >>> fast, slow = model.profiler_cores(100.0, 16), model.profiler_cores(10.0, 16)
    >>> model.profiler_cores(0.0, 16), fast > slow
    (0.0, True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

#: File name of the packaged fit.
FIT_FILE = "cost_fit.json"


@dataclass(frozen=True)
class CostModel:
    """``cores = fixed + per_hz · rate · (1 + per_thread · (threads − 1))`` per mode,
    and ``slow_span_cores = per_capture · captures_per_s``."""

    fixed: dict[str, float]
    per_hz: dict[str, float]
    per_thread: dict[str, float]
    per_capture_s: float
    provisional: bool = False

    def profiler_cores(self, rate_hz: float, threads: int, mode: str = "cpu") -> float:
        """CPU (fraction of one core) of the profiler and the agent threads it keeps busy."""
        if rate_hz <= 0:
            return 0.0
        m = mode if mode in self.per_hz else "wall"
        scale = 1.0 + self.per_thread[m] * max(0, threads - 1)
        return self.fixed[m] + self.per_hz[m] * rate_hz * scale

    def slow_span_cores(self, captures_per_s: float) -> float:
        """CPU of in-process slow-span capture at ``captures_per_s`` stack captures."""
        return max(0.0, captures_per_s) * self.per_capture_s

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostModel:
        """From the fit's JSON (``bench/cost_model.py --write``)."""
        return cls(
            fixed=dict(data["fixed"]),
            per_hz=dict(data["per_hz"]),
            per_thread=dict(data["per_thread"]),
            per_capture_s=float(data["per_capture_s"]),
            provisional=bool(data.get("provisional", False)),
        )


@lru_cache(maxsize=1)
def load_cost_model() -> CostModel:
    """The packaged fit."""
    text = resources.files("otel_adaprof").joinpath(FIT_FILE).read_text()
    return CostModel.from_json(json.loads(text))
