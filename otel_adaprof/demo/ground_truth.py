"""Function CPU shares per phase, known by construction from :mod:`~otel_adaprof.demo.phases`.

The share of a function is its CPU time over the CPU time of all named workload
functions (framework, OpenTelemetry and I/O time are left out on both sides of the
comparison). A captured profile is compared by attributing each stack sample to the
innermost named workload function in it (:func:`function_shares`) and taking the L1
distance (:func:`l1_error`).

Usage::

    >>> from otel_adaprof.demo.ground_truth import truth_for, l1_error
    >>> truth_for(hot_path=True)["compress_report"]
    0.4
    >>> round(l1_error(truth_for(False), truth_for(True)), 2)
    0.8
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from otel_adaprof.demo.phases import ENDPOINTS, PHASE_PLAN, Endpoint
from otel_adaprof.demo.workload import FUNCTIONS, HOT_PATH


def cpu_ms_per_request(
    hot_path: bool, endpoints: Iterable[Endpoint] = ENDPOINTS
) -> dict[str, float]:
    """Mean CPU ms per generated request, per named function."""
    out = dict.fromkeys(FUNCTIONS, 0.0)
    for ep in endpoints:
        for name, ms in ep.cpu_ms.items():
            out[name] += ep.weight * ms
        if hot_path:
            out[HOT_PATH] += ep.weight * ep.hot_cpu_ms
    return out


def truth_for(hot_path: bool) -> dict[str, float]:
    """CPU share of every named function with the hot path on or off (sums to 1)."""
    ms = cpu_ms_per_request(hot_path)
    total = sum(ms.values())
    return {name: round(v / total, 9) for name, v in ms.items()}


#: Ground truth per phase name, as data.
GROUND_TRUTH: dict[str, dict[str, float]] = {
    name: truth_for(hot) for name, _fraction, _mult, hot in PHASE_PLAN
}


def run_truth(requests_per_phase: Mapping[str, float]) -> dict[str, float]:
    """CPU shares over a whole run, given how many requests each phase served.

    A profile taken over several phases (a demo session) mixes their shares in
    proportion to the CPU each phase burned in the named functions.

    >>> round(run_truth({"steady": 100, "hot_path": 100})["compress_report"], 4)
    0.25
    """
    hot = {name: on for name, _fraction, _mult, on in PHASE_PLAN}
    total = dict.fromkeys(FUNCTIONS, 0.0)
    for phase, requests in requests_per_phase.items():
        if phase not in hot or requests <= 0:
            continue
        for name, ms in cpu_ms_per_request(hot[phase]).items():
            total[name] += requests * ms
    cpu = sum(total.values())
    if cpu <= 0:
        return dict.fromkeys(FUNCTIONS, 0.0)
    return {name: round(v / cpu, 9) for name, v in total.items()}


def function_of(stack: str) -> str | None:
    """The innermost named workload function in a collapsed stack, if any.

    Frames may be bare names or ``name (file:line)`` as py-spy writes them.

    >>> function_of("main;handle (svc.py:3);price_items (workload.py:40)")
    'price_items'
    """
    for frame in reversed(stack.split(";")):
        name = frame.split(" (", 1)[0].strip()
        if name in FUNCTIONS:
            return name
    return None


def function_shares(stacks: Mapping[str, float]) -> dict[str, float]:
    """Shares per named function of a ``{collapsed stack: count}`` profile (empty → zeros)."""
    counts = dict.fromkeys(FUNCTIONS, 0.0)
    for stack, count in stacks.items():
        name = function_of(stack)
        if name is not None:
            counts[name] += count
    total = sum(counts.values())
    if total <= 0:
        return dict.fromkeys(FUNCTIONS, 0.0)
    return {name: c / total for name, c in counts.items()}


def l1_error(truth: Mapping[str, float], captured: Mapping[str, float]) -> float:
    """L1 distance between two share maps (0 = exact, 2 = disjoint)."""
    keys = set(truth) | set(captured)
    return sum(abs(truth.get(k, 0.0) - captured.get(k, 0.0)) for k in keys)


def sampling_l1(samples: float, shares: Mapping[str, float]) -> float:
    """Expected L1 error of ``samples`` ideal (independent) samples of ``shares``:
    ``Σ √(2p(1−p)/(πn))``, the error of sampling alone (2.0 with no sample).

    >>> round(sampling_l1(400, {"a": 0.5, "b": 0.5}), 3), sampling_l1(0, {"a": 1.0})
    (0.04, 2.0)
    """
    if samples <= 0:
        return 2.0
    return sum(math.sqrt(2.0 * p * (1.0 - p) / (math.pi * samples)) for p in shares.values())


def samples_needed(share: float, error: float) -> float:
    """Samples needed to estimate ``share`` within ±``error``: p(1−p)/e².

    >>> samples_needed(0.4, 0.05)
    96.0
    """
    return round(share * (1.0 - share) / (error * error), 6)
