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

The module docstring of ``otel_adaprof/instrumentation/observe/new_code.py`` and
docs/agent.md cite its output.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Any

from otel_adaprof.instrumentation.observe.new_code import NewCode, leaf_function

HOT = "compress_report"


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in span.get("attributes", [])}


def replay(spans_path: Path) -> dict[str, Any]:
    """The exported spans' stacks through :class:`NewCode` (see the module docstring)."""
    samples: list[tuple[int, str, int, bool]] = []
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
            leaf = leaf_function(stack.rsplit(";", 1)[-1])
            samples.append((end_ns, leaf, int(count), watch))
    samples.sort(key=lambda s: s[0])
    seen = NewCode()
    events = []
    for t_ns, leaf, count, watch in samples:
        for _ in range(count):
            if seen.observe(leaf, t_ns):
                events.append(
                    {
                        "from_onset_s": round(t_ns / 1e9 - onset, 2) if onset else None,
                        "in_watch": watch,
                        "function": leaf,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    runs = {}
    for workdir in args.workdirs:
        spans = workdir / "spans-adaptive.jsonl"
        if not spans.exists():
            raise SystemExit(f"{spans}: no adaptive spans (a `adaprof bench --workdir` dir?)")
        got = replay(spans)
        db = workdir / "adaprof.db"
        if db.exists():
            got["agent"] = agent_reports(db, got["onset_unix"])
        runs[workdir.name] = got
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
