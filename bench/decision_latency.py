"""Decision latency of the adaptive policy: state -> action, with a 64-action catalog.

Measures ``VWPolicy.decide`` end to end (state features, drift against the service
profile, budget guard, VW prediction, sampling) on realistic contexts from the
simulator, after pretraining-like warm-up, with every action offered (a budget large
enough that the guard masks nothing: the worst case). Prints p50/p90/p99/max in ms and
exits 1 if p99 is not under 1 ms.

Usage::

    python bench/decision_latency.py [--decisions 3000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import MAX_ACTIONS, parse_catalog
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.session_spec import Mode, OverheadBudget
from otel_adaprof.sim.agent import SimulatedAgent
from otel_adaprof.sim.scenario import SCENARIOS


def catalog_64():
    """64 distinct actions: rates x depths x ratios x filters."""
    rates = [0, 1000, 500, 200, 100, 50, 20, 10]
    entries = []
    for i, interval in enumerate(rates):
        for j, (depth, ratio, cats) in enumerate(
            [
                (16, 0.1, None),
                (32, 0.25, None),
                (64, 0.5, None),
                (128, 1.0, None),
                (32, 0.25, ["db"]),
                (32, 0.25, ["http"]),
                (64, 0.5, ["rpc", "messaging"]),
                (64, 1.0, ["internal"]),
            ]
        ):
            params = {"sampling_interval_ms": interval, "stack_depth": depth, "trace_ratio": ratio}
            if cats:
                params["span_filters"] = {"categories": cats}
            entries.append({"name": f"a{i}-{j}", "params": params})
    assert len(entries) == MAX_ACTIONS
    return parse_catalog({"actions": entries})


def contexts(n: int):
    """Contexts as the controller builds them: last window, stacks, profile."""
    agent = SimulatedAgent("bench", np.random.default_rng(0))
    scenario = SCENARIOS["hot-path"]
    profile: dict[str, float] = {}
    params = Params(sampling_interval_ms=20)
    out = []
    for i in range(n):
        req = agent.report(params, i + 1, scenario.phase_at(i % scenario.total_windows), 5.0 * i)
        out.append(
            DecisionContext(
                service="bench",
                initial_params=params,
                params_in_force=params,
                mode=Mode.ADAPTIVE,
                budget=OverheadBudget(cpu_fraction=1.0, bytes_per_s=1e9),
                state=req.window,
                stacks=req.stacks,
                profile=dict(profile),
            )
        )
        for stack, count in (req.stacks.as_dict() if req.stacks else {}).items():
            profile[stack] = profile.get(stack, 0.0) + count
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    policy = VWPolicy(catalog_64(), seed=1)
    ctxs = contexts(400)
    for ctx in ctxs:  # warm-up with learning, as in service
        d = policy.decide(ctx)
        policy.learn(ctx, d, 0.1)
    offered = len(policy.decide(ctxs[-1]).features["offered"])
    times = []
    for i in range(args.decisions):
        ctx = ctxs[i % len(ctxs)]
        t0 = time.perf_counter()
        policy.decide(ctx)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p / 100 * len(times)))]

    result = {
        "actions": len(policy.catalog),
        "offered": offered,
        "decisions": len(times),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": times[-1],
        "mean_ms": statistics.fmean(times),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"decision latency, {result['actions']} actions ({offered} offered), "
            f"{len(times)} decisions:"
        )
        print(
            f"  p50 {result['p50_ms']:.3f} ms  p90 {result['p90_ms']:.3f} ms  "
            f"p99 {result['p99_ms']:.3f} ms  max {result['max_ms']:.3f} ms"
        )
    return 0 if result["p99_ms"] < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
