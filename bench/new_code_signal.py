"""New code on slow spans as a change signal: what it sees in benchmark runs.

For each ``adaprof bench --workdir DIR`` given, two readings of the adaptive service:

* **replay**: every stack the exported spans carry (``adaprof.stacks``: the sampler's
  and the slow-span capture's, at the span's end), in time order, through the agent's
  own :class:`~otel_adaprof.instrumentation.observe.new_code.NewCode`. The spans do not
  say which samples were waiting, so waiting ones count too: an upper bound on what the
  agent calls new. Each event is given with its time from the hot path's onset (the
  first ``compress_report`` span), whether the params in force were the watch's
  (``sampling_interval_ms`` 0: only then does it start a glimpse) and its function.
* **agent**: what the agent reported (the controller's database): the windows whose
  ``change_signals.new_code`` is above 0, their time from the onset and their glimpse
  seconds.

    python bench/new_code_signal.py WORKDIR... [--out bench/output/new_code_signal.json]
    python bench/new_code_signal.py WORKDIR... --key leaf   # session 46's key: the leaf

``--key own`` (the default) keys each sample as the agent does since session 47: by its
innermost own function, its other own functions learnt as known
(:func:`~otel_adaprof.instrumentation.observe.new_code.own_functions`); ``--key leaf``
by its leaf function, as the agent did in session 46. ``--compare`` runs both and prints
one line a run (``bench/output/new_code_keys.json``). Runs are named by their workdir's
parent and name (``s46c/wd_ledger_1``).

The module docstring of ``otel_adaprof/instrumentation/observe/new_code.py`` and
docs/agent.md cite its output.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from otel_adaprof.instrumentation.observe.new_code import NewCode, leaf_function, own_functions

HOT = "compress_report"


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in span.get("attributes", [])}


def replay(spans_path: Path, key: str = "own") -> dict[str, Any]:
    """The exported spans' stacks through :class:`NewCode` (see the module docstring)."""
    samples: list[tuple[int, tuple[str, ...], int, bool]] = []
    onset: float | None = None
    for line in spans_path.read_text().splitlines():
        span = json.loads(line)
        if span.get("name") == HOT:
            t0 = int(span["startTimeUnixNano"]) / 1e9
            onset = t0 if onset is None else min(onset, t0)
        attrs = _attrs(span)
        stacks = attrs.get("adaprof.stacks")
        if not stacks:
            continue
        end_ns = int(span["endTimeUnixNano"])
        watch = int(attrs.get("adaprof.sampling_interval_ms", {}).get("intValue", -1)) == 0
        for value in stacks["arrayValue"]["values"]:
            count, stack = value["stringValue"].split(" ", 1)
            frames = stack.split(";")
            own = (leaf_function(frames[-1]),) if key == "leaf" else own_functions(frames)
            samples.append((end_ns, own, int(count), watch))
    samples.sort(key=lambda s: s[0])
    seen = NewCode()
    events = []
    for t_ns, own, count, watch in samples:
        if len(own) > 1:
            seen.know(own[1:])  # as the sample store does for each new stack
        for _ in range(count):
            if seen.observe(own[0] if own else "", t_ns):
                events.append(
                    {
                        "from_onset_s": round(t_ns / 1e9 - onset, 2) if onset else None,
                        "in_watch": watch,
                        "function": own[0],
                    }
                )
    hot = [e for e in events if e["function"].startswith(HOT + " ")]
    return {
        "onset_unix": onset,
        "samples": seen.samples,
        "events": events,
        "hot_path_new_after_s": hot[0]["from_onset_s"] if hot else None,
        "other_events_in_watch": sum(1 for e in events if e["in_watch"] and e not in hot),
    }


def agent_reports(db_path: Path, onset: float | None) -> dict[str, Any]:
    """The adaptive agent's windows that reported new code, from the controller's db."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = db.execute(
        "select window from reports where service = 'bench-adaptive' order by id"
    ).fetchall()
    windows = []
    for (raw,) in rows:
        window = json.loads(raw) if raw else {}
        new = int((window.get("change_signals") or {}).get("new_code", 0) or 0)
        if new:
            start = float(window.get("window_start", 0.0))
            windows.append(
                {
                    "from_onset_s": round(start - onset, 2) if onset else None,
                    "window_seconds": round(float(window.get("window_seconds", 0.0)), 2),
                    "new_code": new,
                    "glimpse_seconds": round(float(window.get("glimpse_seconds", 0.0)), 2),
                }
            )
    events = sum(w["new_code"] for w in windows)
    glimpsed = [w for w in windows if w["glimpse_seconds"] > 0]
    first_after_onset = next((w for w in glimpsed if (w["from_onset_s"] or 0) > -10), None)
    return {
        "windows_with_new_code": windows,
        "new_code_events": events,
        # windows with new code and a glimpse (the glimpse on it, or a rise's beside it)
        "new_code_windows_with_a_glimpse": len(glimpsed),
        "first_such_window_from_onset_s": first_after_onset["from_onset_s"]
        if first_after_onset
        else None,
    }


def compare(workdirs: list[Path], out_path: Path | None) -> None:
    """Both keys on each run: when the hot path was new code, and how much else was new
    while the watch was in force (each a glimpse with the native profiler)."""
    rows = {}
    for workdir in workdirs:
        spans = workdir / "spans-adaptive.jsonl"
        row = {}
        for key in ("leaf", "own"):
            got = replay(spans, key)
            others = [e for e in got["events"] if e["in_watch"] and not _hot(e)]
            row[key] = {
                "hot_path_new_after_s": got["hot_path_new_after_s"],
                "other_events_in_watch": len(others),
                "others": sorted({e["function"] for e in others}),
            }
        name = f"{workdir.parent.name}/{workdir.name}"
        rows[name] = row
        print(
            f"{name}: hot path new after {row['leaf']['hot_path_new_after_s']} s (leaf) / "
            f"{row['own']['hot_path_new_after_s']} s (own); other new code in the watch "
            f"{row['leaf']['other_events_in_watch']} / {row['own']['other_events_in_watch']}"
        )
    total = {k: sum(r[k]["other_events_in_watch"] for r in rows.values()) for k in ("leaf", "own")}
    same = sum(
        r["leaf"]["hot_path_new_after_s"] == r["own"]["hot_path_new_after_s"] for r in rows.values()
    )
    print(f"{len(rows)} runs: hot path at the same time in {same}; other new code {total}")
    if out_path:
        out_path.write_text(
            json.dumps({"runs": rows, "total_other_in_watch": total}, indent=1) + "\n"
        )


def _hot(event: dict[str, Any]) -> bool:
    return str(event["function"]).startswith(HOT + " ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--key", choices=("own", "leaf"), default="own")
    parser.add_argument("--compare", action="store_true", help="both keys, replay only")
    args = parser.parse_args()
    for workdir in args.workdirs:
        if not (workdir / "spans-adaptive.jsonl").exists():
            raise SystemExit(f"{workdir}: no spans-adaptive.jsonl (a `adaprof bench --workdir`?)")
    if args.compare:
        compare(args.workdirs, args.out)
        return
    runs = {}
    for workdir in args.workdirs:
        spans = workdir / "spans-adaptive.jsonl"
        got = replay(spans, args.key)
        db = workdir / "adaprof.db"
        if db.exists():
            got["agent"] = agent_reports(db, got["onset_unix"])
        runs[f"{workdir.parent.name}/{workdir.name}"] = got
        agent = got.get("agent", {})
        print(
            f"{workdir}: replay: hot path new after {got['hot_path_new_after_s']} s, "
            f"{got['other_events_in_watch']} other new code in the watch; agent: "
            f"{agent.get('new_code_events', '-')} new code events, "
            f"{agent.get('new_code_windows_with_a_glimpse', '-')} of its windows glimpsed"
        )
    out = json.dumps({"runs": runs}, indent=1)
    if args.out:
        args.out.write_text(out + "\n")
    else:
        print(out)


if __name__ == "__main__":
    main()
