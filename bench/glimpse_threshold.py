"""How sensitive should the reflex's glimpse be? (``glimpse_sensitivity`` in
``otel_adaprof/controller/policy/actions.yaml``; ``reflex.GLIMPSE_SECONDS``)

A glimpse is one short py-spy run at 100 Hz that the agent starts when CPU per request
or the span rate *rises* past ``glimpse_sensitivity`` (its CUSUM, baseline std), before
the evidence reaches the burst's 8 std. This script runs the agent's real
``ChangeDetector`` and ``BurstReflex`` as its fast loop does (a reading every 0.25 s,
the detector rebased when a glimpse or burst changes the profiling level, CPU per
request x1.3 while at 100 Hz) on the benchmark's two services, request by request as
the benchmark's load generator sends them (10 requests/s, evenly spaced, endpoints in
the shape's fixed cycle: ``loadgen.endpoint_cycle``), each costing its endpoint's CPU
(``otel_adaprof.demo.shapes``, +2.5 ms of framework a request as in
``change_detector_refire.mixed_load``, ±10 %), at the watch's params (``watch-reflex``:
8 std, 15 s bursts at 100 Hz) and each candidate sensitivity:

* **steady** — 40 s to warm up, then 600 s without a change: glimpses started (false
  ones) and the share of the time spent in them;
* **onset** — 60 s steady, then the hot path (the shop's: +3.3 ms a request on average,
  0.40 of the CPU; the ledger's: +18 %, 0.15 of the CPU on one request in ten): the
  delay from the onset to the first glimpse and to the first burst (none in 30 s:
  missed).

The model has no machine noise (the benchmark's six services share two cores): its
false glimpses are a floor. ``--workdirs`` adds what real runs showed (``adaprof bench
--workdir`` folders): adaptive's change statistics at each window's end (the reports;
the statistic *within* a window is not logged, so crossings between two ends are
missed): the share of windows more than 20 s after a phase switch whose rise was at
least each sensitivity (noise: a phase is steady by then), and, per hot-path onset,
the first window's end after it at or above it (s from the onset).

Usage::

    .venv/bin/python bench/glimpse_threshold.py                       # about 5 s
    .venv/bin/python bench/glimpse_threshold.py --seeds 100 --write   # committed
    .venv/bin/python bench/glimpse_threshold.py --workdirs W1 W2 ...  # with real runs

``--write`` stores the figures in ``bench/output/glimpse_threshold.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

from otel_adaprof.demo.bench_figures import phase_switches
from otel_adaprof.demo.loadgen import endpoint_cycle
from otel_adaprof.demo.shapes import SHAPES, Shape
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.reflex import BurstReflex
from otel_adaprof.instrumentation.observe.change_signals import ChangeDetector, Inputs
from otel_adaprof.params import Params

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the fast loop's reading period, and CPU per request at 100 Hz against the watch
from change_detector_refire import BURST_COST, TICK_S

OUTPUT = Path(__file__).resolve().parent / "output" / "glimpse_threshold.json"
#: Framework CPU per request (ms) on top of the shape's functions
#: (``change_detector_refire.mixed_load``: 6.25 ms for /catalog's 3.75).
FRAMEWORK_MS = 2.5
#: Requests per second (the benchmark's load at 1x).
RPS = 10.0
#: Candidate sensitivities (std); 0 = no glimpse.
CANDIDATES = (0.0, 2.0, 2.5, 3.0, 4.0, 5.0)
#: The watch action's params (configs/actions.yaml), the glimpse's sensitivity apart.
WATCH = {"sampling_interval_ms": 0, "burst_sensitivity": 8, "burst_interval_ms": 10,
         "burst_seconds": 15}  # fmt: skip
STEADY_S, WARM_S, BEFORE_S, AFTER_S = 600.0, 40.0, 60.0, 30.0


def request_ms(rng: random.Random, shape: Shape, path: str, hot: bool) -> float:
    """One request's CPU (ms) at endpoint ``path``: its functions and the framework, ±10 %."""
    endpoint = next(e for e in shape.endpoints if e.path == path)
    ms = sum(endpoint.cpu_ms.values()) + FRAMEWORK_MS + (endpoint.hot_cpu_ms if hot else 0.0)
    return ms * rng.uniform(0.9, 1.1)


def run(shape: Shape, sensitivity: float, seed: int, onset_s: float | None, seconds: float
        ) -> dict[str, Any]:  # fmt: skip
    """The fast loop over ``seconds`` of load (the hot path from ``onset_s``): when the
    glimpses and bursts started (s), and the seconds spent in glimpses."""
    rng = random.Random(seed)
    live = LiveParams(Params.parse({**WATCH, "glimpse_sensitivity": sensitivity}))
    reflex = BurstReflex(live)
    detector = ChangeDetector()
    detector.level = live.params.sampling_interval_ms
    cycle = endpoint_cycle(shape.endpoints)
    cpu, requests, sent = 0.0, 0, rng.randrange(len(cycle))
    glimpses: list[float] = []
    bursts: list[float] = []
    for i in range(int(seconds / TICK_S)):
        now = i * TICK_S
        hot = onset_s is not None and now >= onset_s
        bursting = live.params.sampling_interval_ms == WATCH["burst_interval_ms"]
        factor = BURST_COST if bursting else 1.0
        n = int((i + 1) * TICK_S * RPS) - int(i * TICK_S * RPS)  # evenly spaced
        for _ in range(n):
            cpu += request_ms(rng, shape, cycle[sent % len(cycle)], hot) * factor / 1000.0
            sent += 1
        requests += n
        fired = detector.observe(
            Inputs(now=now, cpu_seconds=cpu, requests=requests, spans=requests),
            reflex.threshold, profile_mode="cpu",
        )  # fmt: skip
        before = reflex.glimpses, reflex.bursts
        reflex.react(fired, now, rise=detector.rise)
        if reflex.glimpses > before[0]:
            glimpses.append(now)
        elif reflex.bursts > before[1] or (fired and reflex.in_burst and not bursts):
            bursts.append(now)
        if live.params.sampling_interval_ms != detector.level:
            detector.rebase(live.params.sampling_interval_ms)
    return {"glimpses": glimpses, "bursts": bursts, "glimpse_s": reflex.glimpse_seconds}


def figures(shape: Shape, sensitivity: float, seeds: int) -> dict[str, Any]:
    """Steady and onset figures of one shape at one sensitivity over ``seeds`` runs."""
    false, share = [], []
    for seed in range(seeds):
        got = run(shape, sensitivity, 1000 + seed, None, WARM_S + STEADY_S)
        false.append(sum(1 for t in got["glimpses"] if t >= WARM_S))
        share.append(got["glimpse_s"] / (WARM_S + STEADY_S))
    to_glimpse, to_burst = [], []
    for seed in range(seeds):
        got = run(shape, sensitivity, 5000 + seed, BEFORE_S, BEFORE_S + AFTER_S)
        g = [t - BEFORE_S for t in got["glimpses"] if t >= BEFORE_S]
        b = [t - BEFORE_S for t in got["bursts"] if t >= BEFORE_S]
        to_glimpse.append(g[0] if g else None)
        to_burst.append(b[0] if b else None)

    def median(values: list[float | None]) -> float | None:
        seen = [v for v in values if v is not None]
        return round(statistics.median(seen), 2) if seen else None

    def within(values: list[float | None], s: float) -> float:
        return round(sum(1 for v in values if v is not None and v <= s) / len(values), 3)

    return {
        "sensitivity": sensitivity,
        "false_glimpses_per_hour": round(statistics.mean(false) * 3600.0 / STEADY_S, 2),
        "glimpse_time_share_steady": round(statistics.mean(share), 5),
        "onset_to_glimpse_s_median": median(to_glimpse),
        "onset_glimpsed_within_3s": within(to_glimpse, 3.0),
        "onset_glimpsed_within_30s": within(to_glimpse, 30.0),
        "onset_to_burst_s_median": median(to_burst),
        "onset_burst_within_30s": within(to_burst, 30.0),
    }


def real_windows(workdir: Path) -> dict[str, Any]:
    """Adaptive's window-end rises in one ``adaprof bench --workdir`` folder: per
    candidate, the share of windows > 20 s after a phase switch at or above it, and
    for the hot path's onset the first window end at or above it (s after the onset)."""
    db_path = workdir / "adaprof.db"
    spans = workdir / "spans-adaptive.jsonl"
    if not db_path.is_file() or not spans.is_file():
        raise SystemExit(f"{workdir}: not an adaprof bench --workdir folder "
                         "(adaprof.db and spans-adaptive.jsonl needed)")  # fmt: skip
    switches = phase_switches(spans)
    rows: list[tuple[float, float]] = []  # (s since the last switch, rise)
    onset_rows: list[tuple[float, float]] = []  # (window end - hot path onset, rise)
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        reports = db.execute(
            "SELECT window FROM reports WHERE service = 'bench-adaptive' ORDER BY id"
        ).fetchall()
    for (text,) in reports:
        window = json.loads(text or "{}")
        if not window:
            continue
        start = float(window["window_start"])
        end = start + float(window["window_seconds"])
        signals = window.get("change_signals", {})
        rise = max(0.0, float(signals.get("cpu_per_request", 0.0)),
                   float(signals.get("span_rate", 0.0)))  # fmt: skip
        before = [t for t in switches if t <= start]
        if len(before) >= 1:
            rows.append((start - before[-1], rise))
        if len(switches) >= 2 and end > switches[1]:
            onset_rows.append((end - switches[1], rise))
    steady = [rise for since, rise in rows if since > 20.0]
    out: dict[str, Any] = {"workdir": str(workdir), "steady_windows": len(steady)}
    for c in CANDIDATES[1:]:
        above = sum(1 for r in steady if r >= c)
        out[f"steady_share_at_{c:g}"] = round(above / max(1, len(steady)), 4)
        first = next((t for t, r in onset_rows if r >= c and t <= 30.0), None)
        out[f"hot_path_first_end_at_{c:g}"] = None if first is None else round(first, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10, help="runs per scenario (default 10)")
    ap.add_argument("--write", action="store_true", help=f"store the figures in {OUTPUT}")
    ap.add_argument(
        "--workdirs",
        nargs="*",
        type=Path,
        default=[],
        help="adaprof bench --workdir folders: their window-end rises too",
    )
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    result: dict[str, Any] = {"seeds": args.seeds, "rps": RPS, "shapes": {}}
    for name in ("shop", "ledger"):
        rows = []
        for sensitivity in CANDIDATES:
            rows.append(figures(SHAPES[name], sensitivity, args.seeds))
            print(f"  {name} {sensitivity:g} std done", file=sys.stderr)
        result["shapes"][name] = rows
    print("| shape | glimpse at (std) | false glimpses / h | time in glimpses (steady) "
          "| onset → glimpse (median s) | glimpsed ≤ 3 s | onset → burst (median s) "
          "| burst ≤ 30 s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, rows in result["shapes"].items():
        for r in rows:
            print(f"| {name} | {r['sensitivity']:g} | {r['false_glimpses_per_hour']} "
                  f"| {r['glimpse_time_share_steady']:.4f} | {r['onset_to_glimpse_s_median']} "
                  f"| {r['onset_glimpsed_within_3s']} | {r['onset_to_burst_s_median']} "
                  f"| {r['onset_burst_within_30s']} |")  # fmt: skip
    if args.workdirs:
        result["real_runs"] = [real_windows(w) for w in args.workdirs]
        cs = [f"{c:g}" for c in CANDIDATES[1:]]
        print()
        print(
            "| run | steady windows | "
            + " | ".join(f"share ≥ {c}" for c in cs)
            + " | "
            + " | ".join(f"hot path: first end ≥ {c} (s)" for c in cs)
            + " |"
        )
        print("|---|---:|" + "---:|" * (2 * len(cs)))
        for r in result["real_runs"]:
            print(
                f"| {Path(r['workdir']).name} | {r['steady_windows']} | "
                + " | ".join(str(r[f"steady_share_at_{c}"]) for c in cs)
                + " | "
                + " | ".join(str(r[f"hot_path_first_end_at_{c}"]) for c in cs)
                + " |"
            )
    if args.write:
        OUTPUT.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {OUTPUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
