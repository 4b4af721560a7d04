"""Soak and cost of reading other threads' stacks in-process, per backend and Python.

The agent reads other threads' stacks in-process (slow-span capture, the in-process
fallback sampler) through :mod:`otel_adaprof.instrumentation.profiler.thread_stacks`.
Walking ``sys._current_frames()`` with ``f_back`` crashed the service on CPython 3.11.
This script is the evidence for which backend is safe where.

**Soak.** For each interpreter (``--python``, default this one) and backend
(``walk``, ``faulthandler``), real child processes churn — short-lived threads,
generators left half-consumed, asyncio tasks created and cancelled, recursion 150
deep, exceptions raised and caught deep in the stack (tracebacks keep frames),
reference cycles with ``__del__`` (the collector runs at allocations, finalizers
run Python code) — while a reader thread reads every thread's stack, 64 frames deep,
as fast as it can (the switch interval is 50 µs, so threads interleave often).
A child lives ``--child-seconds``; children are started one after another until
``--seconds`` per (interpreter, backend) are spent. A child that exits by a signal is a
*crash*; one still running 10 s after its end is a *hang* (killed); a read that raised
(e.g. ``AttributeError: 'dict' object has no attribute 'f_code'``: freed memory
reused) is a *fault*: the reader disables itself, so the child reports it and ends.
Reads are counted by the child every 0.2 s, so a crashed child's reads are known to
within 0.2 s.

**Cost.** ``--cost``: per interpreter and backend, threads parked 20 frames deep
(4, 20, 64 threads), the wall and CPU time of one read of every thread (``faulthandler``
holds the GIL for most of it), the interval that keeps reads at 2 % of a core (from
the CPU time, as the agent computes it), and for ``faulthandler`` the dump alone into
the pipe the reader uses against an in-memory file (``memfd``).

Usage::

    .venv/bin/python bench/thread_stacks_soak.py --seconds 60 \\
        --python /root/.pyenv/versions/3.12.1/bin/python --json
    .venv/bin/python bench/thread_stacks_soak.py --cost --json

Bounded: every child is killed after ``--child-seconds`` + 10 s; nothing listens on
the network.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: ``walk-unguarded`` is the walk without the collector held off (``hold_gc=False``):
#: what crashed on CPython 3.11, kept to show the soak still finds it.
BACKENDS = ("walk", "faulthandler", "walk-unguarded")
#: Share of a core the slow-span capture allows its reads (for the cost table).
CORE_SHARE = 0.02
MAX_SECONDS = 1800.0

CHURN = r"""
import asyncio, gc, json, os, sys, threading, time
from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks

backend, seconds = sys.argv[1], float(sys.argv[2])
sys.setswitchinterval(5e-5)
stop = threading.Event()
if backend == "walk-unguarded":  # the walk as it was before it held the collector off
    reader = ThreadStacks("walk", hold_gc=False)
else:
    reader = ThreadStacks(backend)
reads = [0]

finalised = [0]

class Cycle:
    def __init__(self):
        self.me = self
    def __del__(self):
        finalised[0] += 1
        sum(range(20))  # Python code run by the collector, wherever it was triggered

def deep(n):
    if n:
        return deep(n - 1)
    return sum(g for g in (x for x in range(50)))

def raiser(n):
    if n:
        return raiser(n - 1)
    raise ValueError("deep")

def gen(n):
    for i in range(n):
        yield i
        Cycle()

def churn_threads():
    while not stop.is_set():
        ts = [threading.Thread(target=deep, args=(30,)) for _ in range(4)]
        for t in ts: t.start()
        for t in ts: t.join()

def churn_frames():
    while not stop.is_set():
        deep(150)
        try:
            raiser(60)
        except ValueError as exc:
            tb = exc.__traceback__
        g = gen(10); next(g); next(g)  # left half-consumed
        [Cycle() for _ in range(10)]
        del tb, g

async def task(n):
    await asyncio.sleep(0)
    deep(n)
    await asyncio.sleep(0.001)

async def loop_main():
    while not stop.is_set():
        tasks = [asyncio.ensure_future(task(20 + k)) for k in range(20)]
        await asyncio.sleep(0.0005)
        for t in tasks[::2]: t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

def churn_async():
    asyncio.run(loop_main())

def read_loop():
    while not stop.is_set() and reader.active:
        reader.read(64)
        reads[0] += 1

workers = [threading.Thread(target=f, daemon=True)
           for f in (churn_threads, churn_frames, churn_frames, churn_async)]
for w in workers: w.start()
r = threading.Thread(target=read_loop, daemon=True); r.start()
end = time.monotonic() + seconds
while time.monotonic() < end and reader.active:
    time.sleep(0.2)
    print(json.dumps({"reads": reads[0]}), flush=True)
stop.set()
r.join(5)
collections = sum(g["collections"] for g in gc.get_stats())
print(json.dumps({"reads": reads[0], "fault": reader.failed, "done": True,
                  "collections": collections, "finalised": finalised[0]}), flush=True)
os._exit(0)
"""

COST = r"""
import json, sys, threading, time
from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks

backend, counts, share = sys.argv[1], [int(n) for n in sys.argv[2].split(",")], float(sys.argv[3])
make = ((lambda: ThreadStacks("walk", hold_gc=False)) if backend == "walk-unguarded"
        else (lambda: ThreadStacks(backend)))

def park(n, stop):
    if n:
        return park(n - 1, stop)
    stop.wait()

out = []
for threads in counts:
    stop = threading.Event()
    ws = [threading.Thread(target=park, args=(20, stop), daemon=True) for _ in range(threads)]
    for w in ws: w.start()
    time.sleep(0.2)
    reader = make()
    reader.read(64)  # warm the caches (names, qualified names)
    n = max(20, int(2000 / threads))
    t_cpu, t0 = time.thread_time(), time.perf_counter()
    for _ in range(n):
        got = reader.read(64)
    wall = (time.perf_counter() - t0) / n
    cpu = (time.thread_time() - t_cpu) / n
    assert len(got) >= threads and reader.active, (len(got), reader.failed)
    row = {"threads": threads, "reads": n, "ms_per_read": round(wall * 1e3, 3),
           "cpu_ms_per_read": round(cpu * 1e3, 3),
           "interval_ms_at_share": round(cpu / share * 1e3, 1)}
    if backend == "faulthandler":  # the dump alone: into a pipe (used) vs a memfd
        import faulthandler, os
        memfd = os.memfd_create("cost")
        for key, fd in (("pipe_dump_cpu_ms", reader._pipe[1]), ("memfd_dump_cpu_ms", memfd)):
            t_cpu = time.thread_time()
            for _ in range(n):
                os.lseek(fd, 0, os.SEEK_SET) if fd == memfd else None
                faulthandler.dump_traceback(fd, all_threads=True)
                if fd != memfd:
                    reader.read(64)  # drains the pipe (its own dump counted apart below)
            row[key] = round((time.thread_time() - t_cpu) / n * 1e3, 3)
        row["pipe_dump_cpu_ms"] = round(row["pipe_dump_cpu_ms"] - cpu * 1e3, 3)
        os.close(memfd)
    stop.set()
    for w in ws: w.join()
    out.append(row)
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def soak_one(python: str, backend: str, seconds: float, child_seconds: float) -> dict[str, Any]:
    """Children churning under a reader, until ``seconds`` are spent."""
    runs = crashes = hangs = faults = reads = collections = finalised = 0
    signals: dict[str, int] = {}
    fault_texts: list[str] = []
    t0 = time.monotonic()
    while (left := seconds - (time.monotonic() - t0)) > 1.0:
        life = min(child_seconds, left)
        proc = subprocess.Popen(
            [python, "-c", CHURN, backend, str(life)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        killed = False
        try:
            out, err = proc.communicate(timeout=life + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            killed = True
            out, err = proc.communicate()
        runs += 1
        last: dict[str, Any] = {}
        for line in out.splitlines():
            try:
                last = json.loads(line)
            except ValueError:
                continue
        reads += int(last.get("reads", 0))
        collections += int(last.get("collections", 0))
        finalised += int(last.get("finalised", 0))
        if killed:
            hangs += 1
        elif proc.returncode < 0:
            crashes += 1
            name = signal.Signals(-proc.returncode).name
            signals[name] = signals.get(name, 0) + 1
        elif last.get("fault"):
            faults += 1
            fault_texts.append(str(last["fault"])[:160])
        elif proc.returncode != 0 or not last.get("done"):
            faults += 1
            fault_texts.append(f"exit {proc.returncode}: {err.strip()[-160:]}")
    per = reads / 1e6
    return {
        "python": _version(python),
        "backend": backend,
        "seconds": round(time.monotonic() - t0, 1),
        "children": runs,
        "reads": reads,
        "crashes": crashes,
        "crash_signals": signals,
        "hangs": hangs,
        "faults": faults,
        "fault_examples": fault_texts[:3],
        "failures_per_million_reads": round((crashes + hangs + faults) / per, 2) if per else None,
        # the collector at work meanwhile (children that ended normally): collections
        # run, and finalisers (``__del__``, Python code) they ran, per second
        "collections_per_s": round(collections / max(1e-9, time.monotonic() - t0), 1),
        "finalisers_per_s": round(finalised / max(1e-9, time.monotonic() - t0), 1),
    }


def cost_one(python: str, backend: str, threads: tuple[int, ...]) -> dict[str, Any]:
    """One child measuring reads of ``threads`` parked threads with ``backend``."""
    out = subprocess.run(
        [python, "-c", COST, backend, ",".join(map(str, threads)), str(CORE_SHARE)],
        capture_output=True, text=True, timeout=300, env=_env(), check=False,
    )  # fmt: skip
    if out.returncode != 0:
        return {"python": _version(python), "backend": backend, "error": out.stderr[-400:]}
    return {"python": _version(python), "backend": backend, "rows": json.loads(out.stdout)}


def markdown(result: dict[str, Any]) -> str:
    """The result as markdown tables."""
    lines: list[str] = []
    if result.get("soak"):
        lines += [
            f"Soak: {result['args']['seconds']:g} s per interpreter and backend, children of "
            f"{result['args']['child_seconds']:g} s; crash = exit by a signal, fault = a read "
            "raised (freed memory reused), hang = still running 10 s after its end (killed)",
            "",
            "| Python | backend | children | reads | crashes | hangs | faults "
            "| failures per million reads |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["soak"]:
            sigs = ", ".join(f"{k} ×{v}" for k, v in r["crash_signals"].items())
            rate = r["failures_per_million_reads"]
            lines.append(
                f"| {r['python']} | {r['backend']} | {r['children']} | {r['reads']:,} "
                f"| {r['crashes']}{f' ({sigs})' if sigs else ''} | {r['hangs']} | {r['faults']} "
                f"| {'—' if rate is None else f'{rate:g}'} |"
            )
    if result.get("cost"):
        lines += [
            "",
            f"Cost of one read of every thread (threads parked 20 frames deep, depth 64); "
            f"interval = the shortest that keeps reads at {CORE_SHARE:.0%} of a core",
            "",
            "| Python | backend | threads | ms per read | CPU ms per read | interval at 2 % "
            "| dump alone, CPU ms: pipe / memfd |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for c in result["cost"]:
            for row in c.get("rows", []):
                dumps = (
                    f"{row['pipe_dump_cpu_ms']:.3f} / {row['memfd_dump_cpu_ms']:.3f}"
                    if "memfd_dump_cpu_ms" in row
                    else "—"
                )
                lines.append(
                    f"| {c['python']} | {c['backend']} | {row['threads']} "
                    f"| {row['ms_per_read']:.3f} | {row['cpu_ms_per_read']:.3f} "
                    f"| {row['interval_ms_at_share']:g} ms | {dumps} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the soak (or the cost table) and print markdown or JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter (repeatable)")
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="(repeatable)")
    parser.add_argument("--seconds", type=float, default=60.0, help="per interpreter+backend")
    parser.add_argument("--child-seconds", type=float, default=15.0, help="life of a child")
    parser.add_argument("--cost", action="store_true", help="the cost table instead")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if not (0 < args.seconds <= MAX_SECONDS and 1 <= args.child_seconds <= MAX_SECONDS):
        parser.error(f"--seconds in (0, {MAX_SECONDS:g}], --child-seconds ≥ 1")
    pythons = args.python or [sys.executable]
    backends = tuple(args.backend or BACKENDS)
    result: dict[str, Any] = {
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average": os.getloadavg(),
    }
    if args.cost:
        result["cost"] = [cost_one(p, b, (4, 20, 64)) for p in pythons for b in backends]
    else:
        result["soak"] = [
            soak_one(p, b, args.seconds, args.child_seconds) for p in pythons for b in backends
        ]
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
