"""The profiler's measured cost: py-spy plus every agent thread, by mode, rate and threads.

Each cell is a fresh child process that starts ``--threads`` threads and the real agent
(py-spy, local params at ``--rate`` Hz in ``profile_mode`` cpu or wall, no
controller), waits for py-spy to attach, then counts the agent's CPU for
``--seconds`` with the agent's own accounting (every agent thread and every py-spy
run, :class:`~otel_adaprof.instrumentation.observe.agent_cpu.AgentCpu`). *Idle*: every
thread waits. *Loaded*: two of the threads run Python code 20 frames deep all the
time (the GIL is always held). Cells run in a rotating order.

Per mode it fits, by least squares over the loaded cells (what a budget must plan
for), ``cores = a + b·rate + c·rate·threads`` and prints every cell with the fit's
residual; idle cells get their own fit. ``--write`` stores the fit in
``otel_adaprof/cost_fit.json`` (read by :func:`otel_adaprof.cost_model.load_cost_model`)
and every figure in ``bench/output/cost_model.json``. It also measures one in-process
capture of a thread's stack as the agent makes one (a wake-up from a sleep, the GIL
taken from two busy threads, one thread read 20 frames deep), the unit of slow-span
capture's cost.

Usage::

    python bench/cost_model.py                     # 36 cells of 5 s, about 4 minutes
    python bench/cost_model.py --seconds 20 --write   # cells covering whole 10 s segments
    python bench/cost_model.py --write             # same, and store the fit
    python bench/cost_model.py --quick --json      # 6 cells of 2 s (tests)
    python bench/cost_model.py --refit --write     # fit the committed cells again
    python bench/cost_model.py --compare --write   # py-spy and native, each cell side by side
    python bench/cost_model.py --compare --refit --write  # the native fits from those cells
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIT_PATH = ROOT / "otel_adaprof" / "cost_fit.json"
RAW_PATH = ROOT / "bench" / "output" / "cost_model.json"
MODES = ("cpu", "wall")
THREADS = (4, 20, 64)
RATES = (1, 10, 100)
#: Seconds a cell waits for py-spy's first run before it counts.
WARMUP_S = 1.5


def _deep(n: int, stop: threading.Event) -> None:
    if n:
        _deep(n - 1, stop)
        return
    while not stop.is_set():
        _work()


def _work() -> int:
    return sum(_leaf(i) for i in range(200))


def _leaf(i: int) -> int:
    return i * i


def _duty(share: float, stop: threading.Event, period_s: float = 0.02) -> None:
    """Run Python 20 frames deep for ``share`` of every ``period_s``, sleep the rest:
    one thread holding the GIL that share of the time (a partly loaded service)."""
    if share >= 1.0:
        _deep(20, stop)
        return
    while not stop.is_set():
        until = time.perf_counter() + share * period_s
        while time.perf_counter() < until:
            _burn(20)
        time.sleep((1.0 - share) * period_s)


def _burn(n: int) -> int:
    return _burn(n - 1) if n else _work()


def cell(
    mode: str,
    threads: int,
    rate: int,
    loaded: bool,
    seconds: float,
    busy: float | None = None,
    profiler: str = "py-spy",
) -> dict[str, Any]:
    """One measurement in this process (a child): the agent's CPU per second.

    ``busy`` (0–1), when given, replaces ``loaded``: one thread holds the GIL that share
    of the time (:func:`_duty`); 1 is the loaded cell (two threads always busy).
    ``profiler``: the agent's backend (``py-spy`` or ``native``)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    agent = otel_adaprof.configure(
        service_name="cost-model",
        exporter=InMemorySpanExporter(),
        settings=AgentSettings(profiler=profiler),  # type: ignore[arg-type]
        params={"sampling_interval_ms": max(1, round(1000 / rate)), "profile_mode": mode},
    )
    assert agent is not None
    # the threads start once the agent is up: two busy threads slow the imports it makes
    # (each import's file reads hand the GIL over) by seconds
    stop = threading.Event()
    share = (1.0 if loaded else 0.0) if busy is None else busy
    workers = 2 if share >= 1.0 else (1 if share > 0 else 0)
    for k in range(threads):
        if k < workers:
            target = threading.Thread(target=_duty, args=(share, stop), daemon=True)
        else:
            target = threading.Thread(target=stop.wait, daemon=True)
        target.start()
    time.sleep(WARMUP_S)
    agent.cpu.checkpoint(0)
    agent.cpu.take(0)
    agent.profiler.take_rates(0)
    t0, process0 = time.monotonic(), time.process_time()
    time.sleep(seconds)
    agent.cpu.checkpoint(0)
    wall = time.monotonic() - t0
    process = time.process_time() - process0
    parts = agent.cpu.take(0)
    behind, requested, effective = agent.profiler.take_rates(0)
    stop.set()
    if agent.profiler.backend != profiler:
        raise SystemExit(f"asked for {profiler}, the agent runs {agent.profiler.backend}")
    return {
        "profiler": profiler,
        "mode": mode,
        "threads": threads,
        "rate_hz": rate,
        "loaded": loaded,
        **({"busy": share} if busy is not None else {}),
        # the process's own CPU (its threads, the agent's in-process ones included)
        "process_cores": round(process / wall, 4),
        "seconds": round(wall, 3),
        "cores": round(sum(parts.values()) / wall, 5),
        "parts": {k: round(v / wall, 5) for k, v in sorted(parts.items())},
        "runs": agent.profiler.runs,
        "failures": agent.profiler.failures,
        "behind_events": behind,
        "effective_rate_hz": effective,
        "requested_rate_hz": requested,
    }


def capture_cost(repeats: int = 200, threads: int = 20, every_s: float = 0.02) -> float:
    """CPU seconds of one slow-span capture as the agent makes it: its thread wakes from
    a sleep (the fast loop's tick), takes the GIL from two busy threads (a loaded
    service) and reads one thread 20 frames deep with the agent's own stack reader
    (``ThreadStacks``, the backend safe on this Python: the walk, which reads only the
    thread asked for; until session 25 faulthandler on CPython 3.11, which dumps every
    thread, so its cost grew with them), in a process of ``threads`` threads (the demo
    service's count). The reading thread's own CPU time over ``repeats`` captures, one
    every ``every_s``: the wake-up is part of what a capture costs (with the walk, most
    of it)."""
    from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks

    stop = threading.Event()
    busy = [threading.Thread(target=_deep, args=(20, stop), daemon=True) for _ in range(2)]
    idle = [threading.Thread(target=stop.wait, daemon=True) for _ in range(threads - 3)]
    for t in (*busy, *idle):
        t.start()
    time.sleep(0.05)
    tid = busy[0].ident or 0
    spent: list[float] = []

    def captures() -> None:
        reader = ThreadStacks()
        reader.read(64, (tid,))  # fills the name caches
        try:
            t0 = time.thread_time()
            for _ in range(repeats):
                time.sleep(every_s)
                reader.read(64, (tid,))
            spent.append((time.thread_time() - t0) / repeats)
        finally:
            reader.close()

    capturer = threading.Thread(target=captures, name="adaprof-capture-cost")
    try:
        capturer.start()
        capturer.join()
    finally:
        stop.set()
    return spent[0]


def fit(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Least squares ``cores = a + b·rate + c·rate·threads`` with residuals.

    Cost cannot fall as threads or the rate grow: a negative ``b`` or ``c`` (noise, or
    py-spy starved of CPU in a cell) is set to 0 and the others refitted.
    """
    x = np.array([[1.0, c["rate_hz"], c["rate_hz"] * c["threads"]] for c in cells])
    y = np.array([c["cores"] for c in cells])
    keep = [0, 1, 2]
    coef = np.zeros(3)
    while True:
        sub, *_ = np.linalg.lstsq(x[:, keep], y, rcond=None)
        coef = np.zeros(3)
        coef[keep] = sub
        negative = [k for k in keep[1:] if coef[k] < 0]
        if not negative:
            break
        keep.remove(negative[0])
    a, b, c = (float(v) for v in coef)
    predicted = x @ coef
    residuals = y - predicted
    for item, pred in zip(cells, predicted, strict=True):
        item["predicted"] = round(float(pred), 5)
    return {
        "a": round(a, 6),
        "b": round(b, 8),
        "c": round(c, 9),
        "rms_residual": round(float(np.sqrt(np.mean(residuals**2))), 5),
        "max_abs_residual": round(float(np.max(np.abs(residuals))), 5),
        "cells": len(cells),
    }


def _plan(
    threads: tuple[int, ...], rates: tuple[int, ...], loaded_first: bool = False
) -> list[tuple[str, int, int, bool]]:
    """Every (mode, threads, rate, loaded) cell, idle ones first unless ``loaded_first``."""
    return [
        (mode, n, rate, loaded)
        for loaded in ((True, False) if loaded_first else (False, True))
        for mode in MODES
        for n in threads
        for rate in rates
    ]


def run_cells(quick: bool, seconds: float) -> list[dict[str, Any]]:
    """Every cell in a fresh child, in a rotating order."""
    plan = _plan((4, 20) if quick else THREADS, (10, 100) if quick else RATES)
    if quick:  # three loaded cells per mode: enough for a fit
        plan = [p for p in plan if p[3] and (p[1], p[2]) in ((4, 10), (4, 100), (20, 100))]
    out = []
    for k, (mode, n, rate, loaded) in enumerate(plan):
        out.append(_run_cell(mode, n, rate, loaded, seconds))
        state = "loaded" if loaded else "idle"
        print(f"[{k + 1}/{len(plan)}] {mode} {n} threads {rate} Hz {state}: "
              f"{out[-1]['cores']:.4f}", file=sys.stderr)  # fmt: skip
    return out


def _run_cell(
    mode: str, n: int, rate: int, loaded: bool, seconds: float, profiler: str = "py-spy"
) -> dict[str, Any]:
    """One cell in a fresh child process."""
    argv = [sys.executable, __file__, "--cell", mode, str(n), str(rate),
            "1" if loaded else "0", "--seconds", str(seconds), "--profiler", profiler]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cell {profiler} {mode}/{n}/{rate} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


#: ``--compare``: the cells measured with both profilers, side by side.
COMPARE_RATES = (10, 100)
COMPARE_PATH = ROOT / "bench" / "output" / "cost_model_native.json"


def run_compare(seconds: float, quick: bool) -> dict[str, Any]:
    """Each cell with py-spy and with the native profiler, one right after the other
    (which goes first alternates), so that a ratio is of one moment of the machine."""
    rows = measure_compare(seconds, quick)
    return compare_result(
        rows,
        "python bench/cost_model.py --compare"
        + (" --quick" if quick else "")
        + (f" --seconds {seconds:g}" if seconds != 5.0 else ""),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        seconds,
    )


def measure_compare(seconds: float, quick: bool) -> list[dict[str, Any]]:
    """The ``--compare`` cells (both profilers in each)."""
    plan = _plan((4, 20) if quick else THREADS, COMPARE_RATES, loaded_first=True)
    if quick:  # one loaded cell at 100 Hz (tests)
        plan = [p for p in plan if p[3] and p[0] == "cpu" and p[1] == 4 and p[2] == 100]
    rows = []
    for k, (mode, n, rate, loaded) in enumerate(plan):
        order = ("py-spy", "native") if k % 2 == 0 else ("native", "py-spy")
        got = {p: _run_cell(mode, n, rate, loaded, seconds, p) for p in order}
        spy, native = got["py-spy"], got["native"]
        rows.append({
            "mode": mode, "threads": n, "rate_hz": rate, "loaded": loaded,
            "pyspy_cores": spy["cores"], "native_cores": native["cores"],
            "ratio": round(spy["cores"] / native["cores"], 2) if native["cores"] else None,
            "pyspy_effective_hz": spy["effective_rate_hz"],
            "native_effective_hz": native["effective_rate_hz"],
            "pyspy_parts": spy["parts"], "native_parts": native["parts"],
        })  # fmt: skip
        state = "loaded" if loaded else "idle"
        print(f"[{k + 1}/{len(plan)}] {mode} {n} threads {rate} Hz {state}: py-spy "
              f"{spy['cores']:.4f}, native {native['cores']:.4f}", file=sys.stderr)  # fmt: skip
    return rows


def compare_result(
    rows: list[dict[str, Any]], command: str, measured_at: str, seconds: float
) -> dict[str, Any]:
    """The ``--compare`` figures: the cells, and the native profiler's fits per mode,
    loaded and idle (what the controller's cost estimates use for an agent whose
    profiler is native: ``backends.native`` in ``otel_adaprof/cost_fit.json``)."""
    fits: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        for state, loaded in (("loaded", True), ("idle", False)):
            group = [
                {**r, "cores": r["native_cores"]}
                for r in rows
                if r["mode"] == mode and r["loaded"] == loaded
            ]
            if len(group) >= 3:
                fits.setdefault(mode, {})[state] = fit(group)
    ratios = [r["ratio"] for r in rows if r["ratio"]]
    return {
        "command": command,
        "measured_at": measured_at,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seconds_per_cell": seconds,
        "cells": rows,
        "ratio_min": min(ratios, default=None),
        "ratio_max": max(ratios, default=None),
        "native_fits_loaded": {mode: by["loaded"] for mode, by in fits.items() if "loaded" in by},
        "native_fits": fits,
    }


def store_compare(compared: dict[str, Any]) -> None:
    """Write ``--compare``'s figures and put the native fits into the packaged fit
    (``backends.native``), when both modes have both fits."""
    COMPARE_PATH.write_text(json.dumps(compared, indent=2) + "\n")
    fits = compared["native_fits"]
    if any(set(fits.get(mode, {})) != {"loaded", "idle"} for mode in MODES):
        print("native fits incomplete (--quick?): cost_fit.json left as it is", file=sys.stderr)
        return
    fitted = json.loads(FIT_PATH.read_text())
    fitted["backends"] = {
        "native": {
            "source": compared["command"] + " --write (bench/output/cost_model_native.json)",
            "measured_at": compared["measured_at"],
            "profiler": {
                mode: {k: {p: f[p] for p in ("a", "b", "c")} for k, f in by.items()}
                for mode, by in fits.items()
            },
        }
    }
    FIT_PATH.write_text(json.dumps(fitted, indent=2) + "\n")


def compare_table(result: dict[str, Any]) -> str:
    """The ``--compare`` cells as a markdown table."""
    lines = [
        f"agent CPU (profiler + every agent thread), fraction of a core; "
        f"{result['seconds_per_cell']:g} s per cell, py-spy then native or the reverse\n",
        "| mode | load | threads | Hz | py-spy | native | py-spy ÷ native "
        "| eff. Hz py-spy | eff. Hz native |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in result["cells"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        lines.append(
            f"| {r['mode']} | {'loaded' if r['loaded'] else 'idle'} | {r['threads']} "
            f"| {r['rate_hz']} | {r['pyspy_cores']:.4f} | {r['native_cores']:.4f} | {ratio} "
            f"| {r['pyspy_effective_hz']:g} | {r['native_effective_hz']:g} |"
        )
    for mode, f in result["native_fits_loaded"].items():
        lines.append(
            f"\nnative {mode} loaded: cores = {f['a']:.5f} + {f['b']:.3e}·rate + "
            f"{f['c']:.3e}·rate·threads (rms residual {f['rms_residual']:.4f})"
        )
    return "\n".join(lines)


#: ``--partial``: the service's busy share (GIL held) between the idle and loaded cells.
PARTIAL_BUSY = (0.0, 0.1, 0.25, 0.5, 1.0)
PARTIAL_PATH = ROOT / "bench" / "output" / "cost_model_partial.json"


def busy_curve(rows: list[dict[str, Any]]) -> list[list[float]]:
    """``[[busy, share of the idle → loaded gap], ...]`` over the rates together (each
    share the rates' summed excess over idle ÷ their summed gaps, so the rate with the
    larger gap counts more), held within [0, 1] and never falling as busy grows.

    >>> busy_curve([{"rate_hz": 100, "busy": b, "cores_median": c}
    ...             for b, c in ((0.0, 0.03), (0.5, 0.05), (1.0, 0.06))])
    [[0.0, 0.0], [0.5, 0.667], [1.0, 1.0]]
    """
    by_rate: dict[int, dict[float, float]] = {}
    for row in rows:
        by_rate.setdefault(row["rate_hz"], {})[row["busy"]] = row["cores_median"]
    gap = sum(cells[1.0] - cells[0.0] for cells in by_rate.values())
    curve, highest = [], 0.0
    for share in sorted({b for cells in by_rate.values() for b in cells}):
        excess = sum(cells[share] - cells[0.0] for cells in by_rate.values())
        value = 1.0 if share == 1.0 else 0.0 if share == 0.0 else excess / gap if gap > 0 else share
        highest = max(highest, min(1.0, max(0.0, value)))
        curve.append([share, round(highest, 3)])
    return curve


def run_partial(seconds: float, repeat: int, threads: int = 20) -> dict[str, Any]:
    """Cells at busy shares between idle and loaded (cpu mode, ``threads`` threads, 10
    and 100 Hz), ``repeat`` rounds in a rotating order, against the straight line
    between the same run's idle and loaded cells (what :meth:`CostModel.profiler_cores`
    interpolates for a service busy that share of the time)."""
    plan = [(rate, share) for rate in (10, 100) for share in PARTIAL_BUSY]
    cells: list[dict[str, Any]] = []
    for r in range(repeat):
        order = plan[r % len(plan) :] + plan[: r % len(plan)]
        for rate, share in order:
            argv = [sys.executable, __file__, "--cell", "cpu", str(threads), str(rate),
                    "0", "--seconds", str(seconds), "--busy", str(share)]  # fmt: skip
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                raise SystemExit(f"cell {rate} Hz busy {share} failed:\n{done.stderr[-2000:]}")
            cells.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"[round {r + 1}/{repeat}] {rate} Hz busy {share:g}: "
                  f"{cells[-1]['cores']:.4f}", file=sys.stderr)  # fmt: skip
    rows = []
    for rate, share in plan:
        mine = [c["cores"] for c in cells if c["rate_hz"] == rate and c["busy"] == share]
        idle = [c["cores"] for c in cells if c["rate_hz"] == rate and c["busy"] == 0.0]
        full = [c["cores"] for c in cells if c["rate_hz"] == rate and c["busy"] == 1.0]
        lo, hi = float(np.median(idle)), float(np.median(full))
        line = lo + share * (hi - lo)
        measured = float(np.median(mine))
        rows.append({
            "rate_hz": rate, "busy": share, "cores_median": round(measured, 5),
            "cores_runs": mine, "line": round(line, 5),
            "process_cores": round(float(np.median(
                [c["process_cores"] for c in cells
                 if c["rate_hz"] == rate and c["busy"] == share])), 4),
            "residual": round(measured - line, 5),
        })  # fmt: skip
    return {
        "command": f"python bench/cost_model.py --partial --seconds {seconds:g} --repeat {repeat}",
        "busy_curve": busy_curve(rows),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "threads": threads,
        "mode": "cpu",
        "rows": rows,
        "cells": cells,
    }


def store_partial(partial: dict[str, Any]) -> None:
    """Write ``--partial``'s figures and put its busy curve into the packaged fit."""
    PARTIAL_PATH.write_text(json.dumps(partial, indent=2) + "\n")
    fitted = json.loads(FIT_PATH.read_text())
    fitted["busy_curve"] = partial["busy_curve"]
    fitted["busy_curve_source"] = partial["command"] + " --write"
    FIT_PATH.write_text(json.dumps(fitted, indent=2) + "\n")


def partial_table(partial: dict[str, Any]) -> str:
    """``--partial``'s figures as a markdown table, the busy curve first."""
    lines = [
        f"busy curve (share of the idle → loaded gap): {partial['busy_curve']}",
        "",
        "| Hz | busy share | cores (median) | line idle→loaded | residual | process cores |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in partial["rows"]:
        lines.append(
            f"| {row['rate_hz']} | {row['busy']:g} | {row['cores_median']:.4f} | "
            f"{row['line']:.4f} | {row['residual']:+.4f} | {row['process_cores']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="counted seconds per cell")
    parser.add_argument("--quick", action="store_true", help="6 cells of 2 s (tests)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--write", action="store_true", help="store the fit and raw output")
    parser.add_argument(
        "--refit",
        action="store_true",
        help="fit again the committed cells (bench/output/cost_model.json; with --compare, "
        "cost_model_native.json)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="cells at busy shares 0, 0.1, 0.25, 0.5 and 1 (cpu mode, 20 threads, 10 and 100 "
        "Hz) against the line between idle and loaded; --write stores "
        "bench/output/cost_model_partial.json",
    )
    parser.add_argument("--repeat", type=int, default=2, help="--partial: rounds")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="each cell (10 and 100 Hz) with py-spy and with the native profiler, side by "
        "side; --write stores bench/output/cost_model_native.json and the native fits "
        "(backends.native in the packaged fit); with --refit, the committed cells again",
    )
    parser.add_argument("--profiler", choices=("py-spy", "native"), default="py-spy",
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--cell", nargs=4, metavar=("MODE", "THREADS", "RATE", "LOADED"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--busy", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        mode, n, rate, loaded = args.cell
        got = cell(mode, int(n), int(rate), loaded == "1", args.seconds, args.busy, args.profiler)
        print(json.dumps(got))
        return 0
    if args.compare:
        if args.refit:  # the committed cells, fitted again
            old = json.loads(COMPARE_PATH.read_text())
            compared = compare_result(
                old["cells"], old["command"], old["measured_at"], old["seconds_per_cell"]
            )
        else:
            compared = run_compare(2.0 if args.quick else args.seconds, args.quick)
        if args.write:
            store_compare(compared)
        print(json.dumps(compared, indent=2) if args.json else compare_table(compared))
        return 0
    if args.partial:
        if not 1 <= args.repeat <= 10:
            parser.error("--repeat must be in [1, 10]")
        partial = run_partial(args.seconds, args.repeat)
        if args.write:
            store_partial(partial)
        print(json.dumps(partial, indent=2) if args.json else partial_table(partial))
        return 0
    seconds = 2.0 if args.quick else args.seconds
    if args.refit:
        old = json.loads(RAW_PATH.read_text())
        cells, seconds = old["cells"], old["seconds_per_cell"]
    else:
        cells = run_cells(args.quick, seconds)
    fits: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        for state, loaded in (("loaded", True), ("idle", False)):
            group = [c for c in cells if c["mode"] == mode and c["loaded"] == loaded]
            if len(group) >= 3:
                fits.setdefault(mode, {})[state] = fit(group)
    capture_s = capture_cost()
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.refit:
        measured_at = old["measured_at"]
    result = {
        "command": "python bench/cost_model.py"
        + (" --quick" if args.quick else "")
        + (f" --seconds {seconds:g}" if not args.quick and seconds != 5.0 else ""),
        "measured_at": measured_at,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "shared machine, other jobs running",
        },
        "seconds_per_cell": seconds,
        "model": "cores = a + b*rate_hz + c*rate_hz*threads",
        "fits": fits,
        "slow_span_capture_cpu_s": round(capture_s, 9),
        "cells": cells,
    }
    if args.write:
        fit_file = {
            "provisional": False,
            "source": "bench/cost_model.py --write (bench/output/cost_model.json)",
            "measured_at": result["measured_at"],
            "model": result["model"],
            "profiler": {
                mode: {k: {p: f[p] for p in ("a", "b", "c")} for k, f in by.items()}
                for mode, by in fits.items()
            },
            "slow_span_capture_cpu_s": result["slow_span_capture_cpu_s"],
        }
        before = json.loads(FIT_PATH.read_text()) if FIT_PATH.exists() else {}
        for key in ("busy_curve", "busy_curve_source", "backends"):  # --partial, --compare
            if key in before:
                fit_file[key] = before[key]
        FIT_PATH.write_text(json.dumps(fit_file, indent=2) + "\n")
        RAW_PATH.parent.mkdir(parents=True, exist_ok=True)
        RAW_PATH.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"profiler CPU (py-spy + agent threads), fraction of a core; {seconds:g} s per cell\n")
    print("| mode | load | threads | Hz | cores | fit | residual | behind | eff. Hz | parts |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in cells:
        pred = c.get("predicted", float("nan"))
        parts = ", ".join(f"{k} {v:.4f}" for k, v in c["parts"].items())
        print(f"| {c['mode']} | {'loaded' if c['loaded'] else 'idle'} | {c['threads']} "
              f"| {c['rate_hz']} | {c['cores']:.4f} | {pred:.4f} | {c['cores'] - pred:+.4f} "
              f"| {c['behind_events']} | {c['effective_rate_hz']:g} | {parts} |")  # fmt: skip
    print()
    for mode, by in fits.items():
        for state, f in by.items():
            print(f"{mode} {state}: cores = {f['a']:.5f} + {f['b']:.3e}·rate + "
                  f"{f['c']:.3e}·rate·threads  (rms residual {f['rms_residual']:.4f}, "
                  f"max {f['max_abs_residual']:.4f}, {f['cells']} cells)")  # fmt: skip
    print(f"slow-span capture: {capture_s * 1e6:.1f} µs CPU per capture")
    return 0


if __name__ == "__main__":
    sys.exit(main())
