"""Instructions per poll of the controller's poll path, in-process, exactly repeatable.

``poll_load.py --callgrind`` counts a whole controller (HTTP, group commit, the
once-per-second housekeeping) under a closed loop: its figure moves by up to ~5 % from
run to run, more than most single cuts of the poll path. This bench runs the same poll
bodies (``poll_load.poll_body``: 1,000 agents, an adaptive session) through
``read_poll`` → ``ControllerCore.poll`` → ``write_answer`` in one process, on a
fixed clock and a SQLite file (each poll its own transaction), under valgrind's
callgrind, counting only the measured polls: repeats of one tree agree within ~0.5 %.

    python bench/poll_path_callgrind.py                        # this tree, 1000 polls
    python bench/poll_path_callgrind.py --baseline /tmp/poll-main --polls 2000
    python bench/poll_path_callgrind.py --mode static --keep /tmp/cg

``--baseline DIR`` also counts another source tree (``git archive main | tar -x -C
DIR``); ``--keep DIR`` keeps the dumps (read them with ``callgrind_annotate``). Run it
with ``PYTHONHASHSEED=0`` for the exact figure of a tree (string hashing itself is
seeded; until session 31 the drift feature also summed over a set).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from callgrind_count import counted, instructions

AGENTS = 1000


def _measure(polls: int, mode: str) -> None:
    """The child: set up, warm up, count ``polls`` polls (callgrind switched on and
    dumped through ``callgrind_control``)."""
    from poll_load import poll_body

    from otel_adaprof.controller.config import ControllerConfig
    from otel_adaprof.controller.poll_codec import read_poll, write_answer
    from otel_adaprof.controller.polling import ControllerCore
    from otel_adaprof.controller.store import Store
    from otel_adaprof.session_spec import SessionSpec

    now = [1_000_000.0]
    store = Store(os.path.join(tempfile.mkdtemp(), "bench.db"))
    core = ControllerCore(ControllerConfig(), store, clock=lambda: now[0])
    if mode == "adaptive":
        spec = {"service": "bench", "mode": "adaptive", "duration_s": 360000}
        core.open_session(SessionSpec.parse(spec))
    versions = [0] * AGENTS
    # the bench's bodies, their version and window start filled in per poll (cheap:
    # the harness's own work is counted too)
    first = [poll_body("bench", f"agent-{i}", 0) for i in range(AGENTS)]
    later = []
    for i in range(AGENTS):
        body = json.loads(poll_body("bench", f"agent-{i}", 1))
        body["config_version"], body["window"]["window_start"] = "@V", "@T"
        later.append(json.dumps(body).encode())

    def one(i: int) -> None:
        now[0] += 0.005
        v = versions[i]
        raw = first[i] if v == 0 else later[i].replace(b'"@V"', b"%d" % v)
        raw = raw.replace(b'"@T"', b"%r" % (now[0] - 5.0))
        answer = core.poll(read_poll(raw))
        write_answer(answer)
        versions[i] = answer.config_version

    for k in range(2 * AGENTS):  # every agent's first poll, then one full round
        one(k % AGENTS)
    with counted():
        for k in range(polls):
            one(k % AGENTS)
    store.close()


def count(source: Path | None, polls: int, mode: str, keep: Path | None, label: str) -> float:
    """Instructions per poll of the tree at ``source`` (None: this one)."""
    env = {**os.environ, **({"PYTHONPATH": str(source)} if source else {})}
    script = Path(__file__).resolve()
    child = [sys.executable, str(script), "--child", "--polls", str(polls), "--mode", mode]
    keep_as = keep / f"{label.replace(' ', '_')}-{mode}-callgrind.out" if keep else None
    total = instructions(child, cwd=source or script.parent.parent, env=env, keep_as=keep_as)
    return total / polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=1000, help="polls counted")
    parser.add_argument("--mode", choices=["adaptive", "static"], default="adaptive")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--baseline", type=Path, help="another source tree, counted too")
    parser.add_argument("--baseline-label", default="baseline")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this folder")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 10 <= args.polls <= 100_000:
        parser.error("--polls must be in [10, 100000]")
    if args.child:
        _measure(args.polls, args.mode)
        return
    trees: list[tuple[str, Path | None]] = [(args.label, None)]
    if args.baseline:
        trees.insert(0, (args.baseline_label, args.baseline))
    rows: list[dict[str, Any]] = []
    for label, source in trees:
        per_poll = count(source, args.polls, args.mode, args.keep, label)
        rows.append(
            {"tree": label, "mode": args.mode, "polls": args.polls, "ir_per_poll": per_poll}
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| tree | mode | polls counted | instructions per poll |")
    print("|---|---|---:|---:|")
    for row in rows:
        print(
            f"| {row['tree']} | {row['mode']} | {row['polls']} | {row['ir_per_poll'] / 1e6:.3f} M |"
        )


if __name__ == "__main__":
    main()
