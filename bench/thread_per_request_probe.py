"""Where the agent's thread-per-request samples go: py-spy's output, replayed against the truth.

``tests/agent/test_thread_per_request.py`` checks the session profile's shares of
``parse_catalog``/``price_items``/``render_invoice`` (L1 <= 0.08). This probe runs the
same service and load (``tests/agent/app.py``, one thread per request, under
``opentelemetry-instrument`` with the agent: py-spy at 100 Hz in wall mode, local
params, no controller) and records, inside the service, each py-spy run as the agent
parsed it (its events and clock anchor), the agent's thread-liveness evidence, and the
wall-clock interval of every call of the three functions (the truth). It then replays
the runs through the current parser and liveness rules and prints, per run:

* ``kept`` against ``truth`` (wall time x rate) per function, and the L1 of the shares;
* ``dropped_in_own``: samples dropped by the liveness rules although placed inside a
  call of their own function on that thread id (what the rules lose);
* the same counts with ``GRACE_NS`` (how long after a thread's last sign of life its
  samples still count) at 0, 3 and 6 ms: the thread's last stack's sensitivity to it;
* ``pooled``: the L1 of 2 and 3 runs added together, to see how the error shrinks with
  the number of samples (a longer load).

Usage::

    python bench/thread_per_request_probe.py --runs 6 --seconds 14
    python bench/thread_per_request_probe.py --runs 6 --keep DIR  # recordings kept in DIR
    python bench/thread_per_request_probe.py --replay DIR --json \
        > bench/output/thread_per_request_probe.json           # again, on recorded runs
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.demo.processes import wait_for_line  # noqa: E402
from otel_adaprof.demo.span_sink import SpanSink  # noqa: E402
from otel_adaprof.instrumentation import threads  # noqa: E402
from otel_adaprof.instrumentation.profiler.chrometrace import parse_chrometrace  # noqa: E402

FUNCTIONS = ("parse_catalog", "price_items", "render_invoice")
RATE_HZ = 100
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))

# Runs inside the service (``python -c``): wraps the parser and the workload, then runs
# tests/agent/app.py; at exit writes what it recorded to $PROBE_OUT.
SERVICE = r"""
import atexit, functools, json, os, runpy, threading, time
import otel_adaprof.instrumentation.profiler.supervisor as sup
from otel_adaprof.demo import workload
from otel_adaprof.instrumentation.threads import ThreadLiveness
RUNS, TRUTH, LIVE = [], [], []
parse = sup.parse_chrometrace
def state():
    if not LIVE:
        return {}, []
    live = LIVE[0]
    with live._lock:
        live._merge()
        return ({i: [list(l.los), list(l.his), list(l.natives)] for i, l in live._threads.items()},
                list(live._snapshot_times))
def recording_parse(events, **kw):
    lives, snaps = state()  # what the rules knew when this run was parsed
    RUNS.append({"events": events, "started_at_ns": kw["started_at_ns"],
                 "ignored": sorted(kw.get("ignored") or ()), "gil": bool(kw.get("gil")),
                 "lives": lives, "snaps": snaps})
    return parse(events, **kw)
sup.parse_chrometrace = recording_parse
keep = ThreadLiveness.keep
def recording_keep(self, ident, samples):
    if not LIVE: LIVE.append(self)
    return keep(self, ident, samples)
ThreadLiveness.keep = recording_keep
def timed(work):
    @functools.wraps(work)
    def call(ms):
        w0 = time.time_ns(); out = work(ms); w1 = time.time_ns()
        TRUTH.append((threading.get_ident(), work.__name__, w0, w1))
        return out
    return call
for name in ("parse_catalog", "price_items", "render_invoice"):
    setattr(workload, name, timed(getattr(workload, name)))
def dump():
    with open(os.environ["PROBE_OUT"], "w") as fh:
        json.dump({"runs": RUNS, "truth": TRUTH}, fh)
atexit.register(dump)
runpy.run_path(os.environ["PROBE_APP"], run_name="__main__")
"""


def mix_load(url: str, seconds: float, per_s: float) -> tuple[dict[str, float], int]:
    """``per_s`` requests a second, one at a time, to ``tests/agent/app.py``'s ``/mix``
    for ``seconds``: the wall seconds the service measured in each function (summed),
    and the requests done. (Also the load of ``tests/agent/test_thread_per_request.py``.)"""
    walls = dict.fromkeys(FUNCTIONS, 0.0)
    done, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        if done < elapsed * per_s:
            with urllib.request.urlopen(url, timeout=10) as resp:
                for name, took in json.loads(resp.read()).items():
                    walls[name] += took
            done += 1
        else:
            time.sleep(0.005)
    return walls, done


def record(out: Path, seconds: float) -> dict[str, Any]:
    """One run of the test's load; the recording in ``out`` and the walls the service said."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADAPROF_"))}
    sink = SpanSink(out.with_suffix(".spans.jsonl")).start()
    try:
        env.update(
            {
                "OTEL_SERVICE_NAME": "tpr-probe",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "300",
                "OTEL_TRACES_SAMPLER": "adaprof",
                "ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 10, "profile_mode": "wall"}),
                "ADAPROF_PROFILE_SEGMENT_S": "1",
                "ADAPROF_PROFILE_SEGMENT_MAX_S": "1",
                "ADAPROF_WINDOW_S": "1",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(ROOT),
                "PROBE_OUT": str(out),
                "PROBE_APP": str(ROOT / "tests" / "agent" / "app.py"),
            }
        )
        proc = subprocess.Popen(
            [INSTRUMENT, sys.executable, "-c", SERVICE],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            line = wait_for_line(proc, "listening on", 30.0)
            url = line.split("listening on ", 1)[1].strip() + "/mix?ms=16"
            time.sleep(3.0)  # py-spy reading the service at 100 Hz
            walls, done = mix_load(url, seconds, 20.0)
            time.sleep(3.0)  # the last runs parsed
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    finally:
        sink.stop()
    return {"requests": done, "walls": walls, "load_average": os.getloadavg()}


def _liveness(run: dict[str, Any]) -> threads.ThreadLiveness:
    """The liveness evidence as it was when the run was parsed."""
    live = threads.ThreadLiveness()
    for ident, (los, his, natives) in run["lives"].items():
        life = threads._Life()
        life.los, life.his, life.natives = list(los), list(his), list(natives)
        live._threads[int(ident)] = life
    live._snapshot_times = list(run["snaps"])
    live.snapshots = len(run["snaps"])
    return live


def replay(rec: dict[str, Any]) -> dict[str, Any]:
    """The recorded runs through today's parser and liveness: counts against the truth."""
    calls: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    truth: Counter[str] = Counter()
    for ident, name, w0, w1 in rec["truth"]:
        calls[ident].append((w0, w1, name))
        truth[name] += (w1 - w0) * RATE_HZ / 1e9
    for rows in calls.values():
        rows.sort()
    kept: Counter[str] = Counter()
    dropped_in_own: Counter[str] = Counter()
    for run in rec["runs"]:
        if run["gil"]:
            continue
        live = _liveness(run)
        per_thread = parse_chrometrace(
            run["events"],
            started_at_ns=run["started_at_ns"],
            rate_hz=RATE_HZ,
            ignored=set(run["ignored"]),
            lived_until=live.lived_until if live.snapshots else None,
        )
        for tid, samples in per_thread.items():
            kept_here = set(live.keep(tid, samples) if live.snapshots else samples)
            rows = calls.get(tid, [])
            starts = [r[0] for r in rows]
            for sample in samples:
                t_ns, stack, _since = sample
                leaf = stack[-1].split(" ", 1)[0] if stack else ""
                if leaf not in FUNCTIONS:
                    continue
                if sample in kept_here:
                    kept[leaf] += 1
                    continue
                k = bisect.bisect_right(starts, t_ns) - 1
                if k >= 0 and t_ns <= rows[k][1] and rows[k][2] == leaf:
                    dropped_in_own[leaf] += 1
    return {"kept": kept, "truth": truth, "dropped_in_own": dropped_in_own}


def l1(kept: Counter[str], truth: Counter[str]) -> float:
    total, true_total = sum(kept[f] for f in FUNCTIONS), sum(truth[f] for f in FUNCTIONS)
    return sum(abs(kept[f] / total - truth[f] / true_total) for f in FUNCTIONS)


def summarise(recs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": [], "grace_ms": {}}
    base = threads.GRACE_NS
    try:
        for grace_ms in (0, 3, 6):
            threads.GRACE_NS = grace_ms * 1_000_000
            res = [replay(rec) for rec in recs]
            kept = sum((r["kept"] for r in res), Counter())
            truth = sum((r["truth"] for r in res), Counter())
            out["grace_ms"][str(grace_ms)] = {
                "kept_over_truth": {f: round(kept[f] / truth[f], 3) for f in FUNCTIONS},
                "l1": [round(l1(r["kept"], r["truth"]), 4) for r in res],
            }
            if grace_ms * 1_000_000 == base:
                current = res
    finally:
        threads.GRACE_NS = base
    for r in current:
        out["runs"].append(
            {
                "l1": round(l1(r["kept"], r["truth"]), 4),
                "kept": {f: r["kept"][f] for f in FUNCTIONS},
                "truth": {f: round(r["truth"][f]) for f in FUNCTIONS},
                "dropped_in_own": {f: r["dropped_in_own"][f] for f in FUNCTIONS},
            }
        )
    for k in (2, 3):
        pooled = []
        for combo in itertools.combinations(current, k):
            kept = sum((r["kept"] for r in combo), Counter())
            truth = sum((r["truth"] for r in combo), Counter())
            pooled.append(l1(kept, truth))
        if pooled:
            out[f"pooled_{k}"] = {
                "combinations": len(pooled),
                "mean_l1": round(sum(pooled) / len(pooled), 4),
                "above_0.08": round(sum(x > 0.08 for x in pooled) / len(pooled), 3),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=14.0, help="load per run (s)")
    parser.add_argument("--keep", type=Path, help="keep the recordings in this folder")
    parser.add_argument("--replay", type=Path, help="only replay the recordings in this folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.replay is not None:
        folder = args.replay
    else:
        folder = args.keep or Path(tempfile.mkdtemp(prefix="tpr-probe-"))
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(args.runs):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"run-{k}.json").unlink()
            said = record(folder / f"run-{k}.json", args.seconds)
            (folder / f"run-{k}.walls.json").write_text(json.dumps(said))
            if not args.json:
                print(f"recorded run {k}: {said['requests']} requests", flush=True)
    recs, loads = [], []
    for path in sorted(folder.glob("run-*.json")):
        if path.name.endswith(".walls.json"):
            loads.append(json.loads(path.read_text()).get("load_average"))
        else:
            recs.append(json.loads(path.read_text()))
    result = summarise(recs)
    result["seconds"] = args.seconds
    result["load_average_per_run"] = loads  # 1, 5, 15 min, as each run's load ended
    print(json.dumps(result, indent=None if not args.json else 2))


if __name__ == "__main__":
    main()
