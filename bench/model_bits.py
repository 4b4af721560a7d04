"""How a service's model changes as Vowpal Wabbit's feature hash (``-b``) shrinks.

Each service with an adaptive session holds one VW model, whose weight table has
2**bits slots (times VW's stride): memory is fixed by ``-b``, not by what is learned.
Fewer bits mean more hash collisions between the state × action crossings. This
bench measures, for each ``-b``:

- **memory**: RSS per model (a fresh process creates 30 models that decide and learn)
  and the size of a snapshot after training, with the controller's example pool
  (``--ring_size``) and with VW's default one;
- **prediction quality**, against a reference model with ``--reference`` bits trained on
  the same data: a log of decisions and rewards is collected once from the simulator
  (random scenarios, the default policy), every model learns the first 80 % of it, and
  on the held-out 20 % we compare each model's action probabilities with the
  reference's (mean total-variation distance, share of identical greedy actions) and
  estimate each model's reward offline (IPS, :mod:`otel_adaprof.controller.policy.offline`);
- **on-policy reward**: each ``-b`` runs the simulator's named scenarios itself (same
  seeds for every ``-b``), mean reward per window.

    python bench/model_bits.py                       # about a minute
    python bench/model_bits.py --json > bench/output/model_bits.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from otel_adaprof.controller.policy import vw as vw_module
from otel_adaprof.controller.policy.base import Decision
from otel_adaprof.controller.policy.offline import LoggedDecision, ips
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.reward import RewardBreakdown
from otel_adaprof.sim.runner import run_policy
from otel_adaprof.sim.scenario import SCENARIOS, random_scenario

NAMED = ["hot-path", "load-spike", "category-shift", "quiet-busy"]


def policy_with_bits(bits: int, seed: int = 1) -> VWPolicy:
    """A cold VW policy whose hash has ``bits`` bits."""
    vw_module.HASH_BITS = bits  # vw_args() reads it when the workspace is built
    return VWPolicy(seed=seed)


def collect_log(scenarios: int, bits: int) -> list[tuple[Decision, float]]:
    """(decision, reward) of every credited bandit decision over random scenarios."""
    log: list[tuple[Decision, float]] = []

    def keep(decision: Decision, reward: RewardBreakdown) -> None:
        if "offered" in decision.features and "state" in decision.features:
            log.append((decision, reward.total))

    policy = policy_with_bits(bits, seed=7)
    for i in range(scenarios):
        run_policy(policy, random_scenario(9000 + i), seed=9000 + i, on_credit=keep)
    return log


def _row(decision: Decision, reward: float) -> LoggedDecision:
    f = decision.features
    context = f.get("context") or {}
    return LoggedDecision(
        state=dict(f["state"]),
        offered=list(f["offered"]),
        action=decision.action,
        probability=decision.probability,
        reward=reward,
        context={a: dict(zip(vw_module.C_FEATURES, v, strict=False)) for a, v in context.items()}
        if context and isinstance(next(iter(context.values())), list)
        else dict(context),
    )


def trained(bits: int, train: list[tuple[Decision, float]]) -> VWPolicy:
    """A cold ``bits`` model that learned every logged decision of ``train``."""
    from otel_adaprof.controller.policy.base import DecisionContext
    from otel_adaprof.params import Params

    policy = policy_with_bits(bits)
    ctx = DecisionContext.initial("bench", Params())  # learn() reads the decision only
    for decision, reward in train:
        policy.learn(ctx, decision, reward)
    return policy


def pmfs(policy: VWPolicy, rows: list[LoggedDecision]) -> list[dict[str, float]]:
    """The model's probability of each offered action, per held-out row."""
    out = []
    for row in rows:
        offered = [policy.catalog[policy.catalog.index(name)] for name in row.offered]
        probs = policy.scores(row.state, offered, row.context)
        out.append(dict(zip(row.offered, probs, strict=True)))
    return out


def rss_per_model(bits: int, ring: int, models: int = 20) -> float:
    """MB of RSS per model that ran a simulated scenario, measured in a fresh process."""
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--probe",
            str(bits),
            str(ring),
            str(models),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def probe(bits: int, ring: int, models: int) -> float:
    """(run in a fresh process) RSS growth per model that ran 60 simulated windows."""

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    vw_module.RING_SIZE = ring
    run_policy(policy_with_bits(bits), random_scenario(1), seed=1, windows=60)  # warm up
    before = rss_mb()
    kept = []
    for i in range(models):
        policy = policy_with_bits(bits, seed=i)
        run_policy(policy, random_scenario(100 + i), seed=100 + i, windows=60)
        kept.append(policy)
    return (rss_mb() - before) / models


def on_policy_reward(bits: int, seeds: int) -> float:
    """Mean reward per window of a cold ``bits`` model over the named scenarios."""
    totals = []
    for name in NAMED:
        for seed in range(seeds):
            result = run_policy(policy_with_bits(bits, seed=seed + 1), SCENARIOS[name], seed=seed)
            totals.append(statistics.fmean(w.reward.total for w in result.windows))
    return statistics.fmean(totals)


def measure(
    bits_list: list[int], reference: int, log_scenarios: int, seeds: int, ring: int
) -> dict[str, Any]:
    started = time.perf_counter()
    vw_module.RING_SIZE = ring
    log = collect_log(log_scenarios, reference)
    cut = int(len(log) * 0.8)
    train, test = log[:cut], log[cut:]
    rows = [_row(d, r) for d, r in test]
    ref = trained(reference, train)
    ref_pmfs = pmfs(ref, rows)
    results = []
    for bits in sorted({*bits_list, reference}):
        model = ref if bits == reference else trained(bits, train)
        got = pmfs(model, rows)
        tv = [
            0.5 * sum(abs(p.get(a, 0.0) - q.get(a, 0.0)) for a in set(p) | set(q))
            for p, q in zip(got, ref_pmfs, strict=True)
        ]
        same_greedy = [
            max(p, key=p.__getitem__) == max(q, key=q.__getitem__)
            for p, q in zip(got, ref_pmfs, strict=True)
        ]
        by_row = dict(zip((id(r) for r in rows), got, strict=True))

        def target(
            row: LoggedDecision, by_row: dict[int, dict[str, float]] = by_row
        ) -> dict[str, float]:
            return by_row[id(row)]

        results.append(
            {
                "bits": bits,
                "rss_mb_per_model": round(rss_per_model(bits, ring), 2),
                "rss_mb_per_model_vw_default_ring": round(rss_per_model(bits, 256), 2),
                "snapshot_kb": round(len(model.snapshot()) / 1024, 1),
                "tv_distance_to_reference": round(statistics.fmean(tv), 4),
                "tv_distance_p95": round(sorted(tv)[int(0.95 * (len(tv) - 1))], 4),
                "same_greedy_action": round(statistics.fmean(same_greedy), 3),
                "offline_ips_reward": round(ips(rows, target), 4),
                "on_policy_reward": round(on_policy_reward(bits, seeds), 4),
            }
        )
        print(f"  -b {bits}: {results[-1]}", file=sys.stderr)
    return {
        "reference_bits": reference,
        "ring_size": ring,
        "logged_decisions": len(log),
        "train": len(train),
        "held_out": len(test),
        "log_scenarios": log_scenarios,
        "named_scenarios": NAMED,
        "seeds": seeds,
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"Reference: -b {report['reference_bits']}; {report['train']} logged decisions "
        f"learned, {report['held_out']} held out.",
        "",
        "| -b | RSS MB/model (ring {ring}) | RSS MB/model (VW's ring 256) | snapshot kB "
        "| TV distance to ref (mean / p95) | same greedy action | offline IPS reward "
        "| on-policy reward |".replace("{ring}", str(report["ring_size"])),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['bits']} | {r['rss_mb_per_model']:.2f} | "
            f"{r['rss_mb_per_model_vw_default_ring']:.2f} | {r['snapshot_kb']:.1f} | "
            f"{r['tv_distance_to_reference']:.4f} / {r['tv_distance_p95']:.4f} | "
            f"{r['same_greedy_action'] * 100:.1f} % | {r['offline_ips_reward']:.4f} | "
            f"{r['on_policy_reward']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[10, 12, 14, 16, 18])
    parser.add_argument("--reference", type=int, default=22, help="bits of the reference")
    parser.add_argument("--log-scenarios", type=int, default=12, help="random scenarios logged")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per named scenario")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--ring-size", type=int, default=vw_module.RING_SIZE, help="VW example pool size"
    )
    parser.add_argument("--probe", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(probe(*args.probe))
        return
    if any(not 8 <= b <= 24 for b in [*args.bits, args.reference]):
        parser.error("bits must be in [8, 24]")
    if not 1 <= args.log_scenarios <= 200 or not 1 <= args.seeds <= 20:
        parser.error("--log-scenarios in [1, 200], --seeds in [1, 20]")
    report = measure(args.bits, args.reference, args.log_scenarios, args.seeds, args.ring_size)
    print(json.dumps(report, indent=2) if args.json else table(report))


if __name__ == "__main__":
    main()
