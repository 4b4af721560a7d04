"""Replay a fixed sequence of agent polls through the controller and print a digest of
every answer, logged decision (action, probability, features, reward) and the final model.

Run it on two source trees to check that a change of the controller's code leaves its
decisions exactly as they were (the drift feature sums a set in hash order, so fix the
hash seed, else even one tree differs from itself in the last bit):

    PYTHONHASHSEED=0 python bench/decision_replay.py
    PYTHONHASHSEED=0 PYTHONPATH=/tmp/main-bf8dab2 python bench/decision_replay.py
    PYTHONHASHSEED=0 python bench/decision_replay.py --rounds 45 --stacks 14 --depth 7

The 60 agents poll 83 ms apart, so under the controller's default
``policy.share_decision_s`` (1 s, since session 26) most of them take a shared decision;
``--share-decision-s 0`` makes every poll decide, as every controller before it did (a
tree from before session 26 knows no such option: run it without the flag).

The polls are seeded: 60 agents of one service with an adaptive session, windows with
varied CPU, rates and bytes, and stack histograms whose frames shift every 8 rounds
(``--stacks``/``--depth`` large enough make the profile reach the controller's cap of
5,000 stacks). In-process, on an in-memory SQLite store, with a fixed clock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
from typing import Any


def replay(
    agents: int, rounds: int, stacks: int, depth: int, share_s: float | None = None
) -> dict[str, Any]:
    """The digests of one replay (see the module doc); ``share_s`` sets
    ``policy.share_decision_s`` (None: the tree's default config)."""
    from otel_adaprof.controller.config import ControllerConfig
    from otel_adaprof.controller.polling import ControllerCore
    from otel_adaprof.controller.store import Store
    from otel_adaprof.protocol import decode_poll_request
    from otel_adaprof.session_spec import SessionSpec

    rng = random.Random(7)
    now = [1_000_000.0]
    store = Store(":memory:")
    config = (
        ControllerConfig()
        if share_s is None
        else ControllerConfig.parse({"policy": {"share_decision_s": share_s}})
    )
    core = ControllerCore(config, store, clock=lambda: now[0])
    spec = {"service": "bench", "mode": "adaptive", "duration_s": 360000}
    core.open_session(SessionSpec.parse(spec))
    frames = [f"f{i} (m{i % 5}.py:{i})" for i in range(40)]
    versions = [0] * agents
    answers = hashlib.sha256()
    for r in range(rounds):
        for i in range(agents):
            now[0] += 0.083
            body: dict[str, Any] = {
                "protocol_version": 1,
                "agent": {"service": "bench", "instance_id": f"a{i}", "host": "h", "pid": 1},
                "config_version": versions[i],
            }
            if versions[i]:
                phase = (r // 8) % 3
                hist: dict[str, int] = {}
                for _ in range(rng.randint(1, stacks)):
                    n = rng.randint(1, depth)
                    s = ";".join(
                        frames[(phase * 7 + rng.randint(0, 12) + k) % 40] for k in range(n)
                    )
                    hist[s] = hist.get(s, 0) + rng.randint(1, 60)
                body["window"] = {
                    "window_start": now[0] - 5,
                    "window_seconds": 5.0,
                    "process_cpu": rng.uniform(0.05, 1.5),
                    "node_cpu": rng.uniform(0, 1),
                    "profiler_cpu_seconds": rng.uniform(0, 0.2),
                    "markers_per_s": rng.uniform(0, 30),
                    "samples_per_s": rng.uniform(0, 120),
                    "spans_per_s": rng.uniform(0, 400),
                    "bytes_exported_per_s": rng.uniform(0, 40000),
                    "poll_rtt_ms": rng.uniform(0, 9),
                }
                body["stacks"] = {
                    "stacks": [{"stack": s, "count": c} for s, c in hist.items()],
                    "total_samples": sum(hist.values()),
                    "depth": 64,
                }
            answer = core.poll(decode_poll_request(json.dumps(body)))
            versions[i] = answer.config_version
            answers.update(json.dumps(answer.params.to_json(), sort_keys=True).encode())
    decisions = hashlib.sha256()
    rows = store.decisions()
    for d in rows:
        logged = [d["action"], d["probability"], d["features"], d["reward"], d["reward_terms"]]
        decisions.update(json.dumps(logged, sort_keys=True).encode())
    model = core.policies.adaptive("bench").snapshot()
    return {
        "polls": agents * rounds,
        "decisions": len(rows),
        "actions_used": len({d["action"] for d in rows}),
        "rewards_credited": core.rewards_credited,
        "answers_sha256": answers.hexdigest(),
        "decisions_sha256": decisions.hexdigest(),
        "model_sha256": hashlib.sha256(model).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--stacks", type=int, default=8, help="most stacks in one window")
    parser.add_argument("--depth", type=int, default=5, help="most frames in one stack")
    parser.add_argument(
        "--share-decision-s", type=float, default=None,
        help="the controller's policy.share_decision_s (default: the tree's default)",
    )  # fmt: skip
    args = parser.parse_args()
    for name in ("agents", "rounds", "stacks", "depth"):
        if not 1 <= getattr(args, name) <= 1000:
            parser.error(f"--{name} must be in [1, 1000]")
    if os.environ.get("PYTHONHASHSEED") is None:
        print("note: PYTHONHASHSEED is not set; digests vary between runs")
    result = replay(args.agents, args.rounds, args.stacks, args.depth, args.share_decision_s)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
