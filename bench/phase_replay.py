"""Replay a benchmark run's adaptive reports through the reward's phase memory, and say
what became of each change it started: confirmed, or merged back as a false alarm.

The reward's phases steer learning: a change merged back as a false alarm makes the phase
before it look learnt, and the policy stops sampling. This replays the ``bench-adaptive``
service's recorded reports (``adaprof bench --workdir W``: ``W/adaprof.db``) through
:func:`otel_adaprof.reward.step`, built as the controller's poll handling builds each
window's observation, once with the tree's rules and once without
:func:`~otel_adaprof.reward.key_vanished` and :func:`~otel_adaprof.reward.key_moving`
(session 48's reward), and prints each phase change with the benchmark phase it fell
in::

    python bench/phase_replay.py /work/runs/wd_ledger_seed1 /work/runs/wd_shop_seed1 \
        --json > bench/output/phase_replay_s49.json

A replay reads the reports the run's own decisions produced: it says how the rules judge
those samples, not what a policy under the other rule would have sampled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from otel_adaprof import reward
from otel_adaprof.controller.poll_handling import _phase_changes
from otel_adaprof.protocol import ChangeSignals
from otel_adaprof.session_spec import OverheadBudget, RewardWeights, SessionSpec

SERVICE = "bench-adaptive"
PHASES = ("steady", "hot_path", "load_change", "hot_path_gone")
#: The runs replayed are the native profiler's (``adaprof bench --profiler native``).
PROFILER_BACKEND = "native"


def phase_starts(workdir: Path) -> list[float]:
    """Unix start of each benchmark phase: the adaptive service's ``POST /control`` spans."""
    out = []
    with open(workdir / "spans-adaptive.jsonl", encoding="utf-8") as lines:
        for line in lines:
            span = json.loads(line)
            if str(span.get("name", "")).startswith("POST /control"):
                out.append(int(span["startTimeUnixNano"]) / 1e9)
    return out[: len(PHASES)]


def _phase_of(t: float, starts: list[float]) -> str:
    name = "before"
    for start, phase in zip(starts, PHASES, strict=False):
        if t >= start:
            name = phase
    return name


def replay(workdir: Path, without: str | None = None) -> list[dict[str, Any]]:
    """Each phase change of the replay: where it started, how it ended, the samples."""
    if without not in (None, "vanished"):
        raise ValueError(f"without={without!r}: the rule that can be left out is 'vanished'")
    starts = phase_starts(workdir)
    saved = reward.key_vanished, reward.key_moving
    if without == "vanished":
        reward.key_vanished = lambda *_a, **_k: False  # type: ignore[assignment]
        reward.key_moving = lambda *_a, **_k: False  # type: ignore[assignment]
    try:
        return _replay(workdir, starts)
    finally:
        reward.key_vanished, reward.key_moving = saved


def _replay(workdir: Path, starts: list[float]) -> list[dict[str, Any]]:
    uri = f"file:{workdir / 'adaprof.db'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT window, stacks FROM reports WHERE service = ? ORDER BY id", (SERVICE,)
        ).fetchall()
        spec_row = db.execute(
            "SELECT spec FROM sessions WHERE service = ? ORDER BY created_at DESC", (SERVICE,)
        ).fetchone()
    # the session's goal for the agent's profiler, as the poll handling scores it
    spec = SessionSpec.parse(json.loads(spec_row[0])) if spec_row else None
    backend = PROFILER_BACKEND
    goal = (spec.goal if spec else RewardWeights()).for_profiler(backend)
    budget = spec.budget if spec else OverheadBudget()
    state, out = reward.PhaseState(), []
    current: dict[str, Any] | None = None
    for window_json, stacks_json in rows:
        if not window_json:
            continue
        window = json.loads(window_json)
        raw = window.get("change_signals")
        signals = ChangeSignals.model_validate(raw) if raw else None
        changes, last_change = _phase_changes(signals)
        obs = reward.WindowObservation(
            end_unix=float(window["window_start"]) + float(window["window_seconds"]),
            seconds=float(window["window_seconds"]),
            samples=json.loads(stacks_json) if stacks_json else {},
            changes=changes,
            last_change_unix=last_change,
            new_code=int((raw or {}).get("new_code", 0) or 0),
        )
        alarms = state.false_alarms
        state, r = reward.step(state, obs, goal, budget)
        if r.change:
            at = state.phase_started_unix or obs.end_unix
            current = {"at_s": round(at - starts[1], 1) if len(starts) > 1 else at,
                       "phase": _phase_of(at, starts), "outcome": "pending"}  # fmt: skip
            out.append(current)
        if current is not None and current["outcome"] == "pending":
            if r.detection > 0.0:
                current.update(outcome="confirmed", samples=state.samples)
            elif state.false_alarms > alarms:
                current.update(outcome="false alarm", samples=state.samples)
            elif state.pending_change_unix is None and not r.change:
                current.update(outcome="nothing to compare", samples=state.samples)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path, help="adaprof bench --workdir folders")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    for workdir in args.workdirs:
        if not (workdir / "adaprof.db").exists():
            parser.error(f"{workdir}: no adaprof.db (an `adaprof bench --workdir` folder?)")
        runs = {"tree": replay(workdir)}
        runs["session 48 (no vanished key)"] = replay(workdir, "vanished")
        result[str(workdir)] = runs
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return 0
    for workdir, runs in result.items():
        print(workdir)
        for rule, changes in runs.items():
            cells = [f"{c['phase']}@{c['at_s']}s {c['outcome']}" for c in changes
                     if c["phase"] in PHASES]  # fmt: skip
            print(f"  {rule}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
