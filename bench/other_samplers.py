"""Other CPython samplers against py-spy: CPU per workload sample, and a short function's share.

#11 needs samples cheaper than py-spy's: on the benchmark services it costs about 2 ms
of CPU per workload sample, because it reads the process at every tick whether or not
a thread runs Python. Two well-kept samplers could do better on paper:

- **Austin** (``austin-dist`` on PyPI), another external sampler written in C, with a
  ``--sleepless`` mode that keeps only on-CPU samples;
- **echion** (``echion`` on PyPI), an in-process sampler whose native thread reads the
  frames without the GIL, so it has none of the in-process capture's GIL bias
  (docs/benchmarks.md, "The in-process capture as the sampler").

And a sampler of our own, **native** (``bench/native_sampler``, built here for the
target's Python): a native thread that reads frames with ``process_vm_readv`` on its
own process, on one of four clocks: ``wall`` (the GIL holder every interval of wall
time, as py-spy ``--gil``), ``thread`` (each Python thread at every scheduler tick
that finds it on a CPU, through a timer on that thread's CPU clock), ``tick`` and
``cpu`` (the GIL holder on a timer on the process's CPU clock: every tick, or at
exponential gaps of CPU).

This runs one small target per sampler, the same each time: a thread that spends 3.75 ms
of CPU in ``other`` and then 1.25 ms in ``compute_tax`` (which then sleeps, as the
shop's ends in a socket write), then sleeps ``--idle-ms``; and eight threads parked on
a queue, as a server's pool. Each sampler reads it for ``--seconds`` at ``--rate``
in its CPU mode (py-spy ``--gil``, Austin ``--sleepless``, echion ``ECHION_CPU=1``).
Printed per sampler: its CPU (an external sampler's own, from ``wait4``; echion's as
the target's CPU over a run of the same target with no sampler; the native one's
thread CPU clock), the workload samples, CPU per workload sample, and
``compute_tax``'s share of them (truth 0.25).

Usage::

    python bench/other_samplers.py                      # py-spy, and the others if found
    python bench/other_samplers.py --python /venv/bin/python --austin /venv/bin/austin \\
        --json > bench/output/other_samplers.json

``--python`` is the target's interpreter (where echion is installed); Austin 4 needs
glibc 2.38, so on Debian 12 install ``'austin-dist<4'``. A sampler not found is
reported as such and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from otel_adaprof.instrumentation.profiler.pyspy import find_py_spy  # noqa: E402

TARGET = """
import queue, sys, threading, time
def busy(ms):
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
def other(): busy(3.75)
def compute_tax(): busy(1.25)
def worker(idle_s):
    while True:
        other(); compute_tax(); time.sleep(idle_s)
pool = queue.Queue()
for _ in range(8):
    threading.Thread(target=pool.get, daemon=True).start()
threading.Thread(target=worker, args=(float(sys.argv[1]),), daemon=True).start()
print("ready", flush=True)
time.sleep(1e6)
"""

ECHION_START = (
    "import echion.bootstrap as b, sys; b.start(); sys.argv[0] = 'target'; exec(sys.argv.pop(1))"
)
#: The native sampler (native_sampler/build.py) in the target: started after the settling
#: second, its samples written and the target ended ``NS_SECONDS`` later.
NATIVE_START = """
import json, os, sys, threading, _native_sampler as ns, native_start
def _start():
    native_start.start(int(os.environ["NS_INTERVAL_US"]), os.environ["NS_CLOCK"])
def _dump():
    ns.stop()
    stacks = [";".join(reversed(s)) for _ts, _tid, s in ns.drain()]
    with open(os.environ["NS_OUT"], "w") as out:
        json.dump({"stats": ns.stats(), "stacks": stacks}, out)
    os._exit(0)
threading.Timer(1.0, _start).start()
threading.Timer(1.0 + float(os.environ["NS_SECONDS"]), _dump).start()
sys.argv[0] = "target"
exec(sys.argv.pop(1))
"""

#: ``compute_tax``'s true share of the workload's CPU.
TRUTH = 0.25
#: Seconds the target runs before a sampler starts (imports, threads parked).
SETTLE_S = 1.0


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def reap_cpu_s(proc: subprocess.Popen[bytes]) -> float:
    """Wait for a child to end; the CPU seconds it used itself (``wait4``'s rusage)."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def start_target(
    python: str, idle_s: float, env: dict[str, str] | None = None, prelude: str | None = None
) -> subprocess.Popen[str]:
    argv = [python, "-c", prelude, TARGET] if prelude else [python, "-c", TARGET]
    argv.append(str(idle_s))
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"the target did not start under {python}")
    time.sleep(SETTLE_S)
    return proc


def leaf_counts(lines: list[tuple[str, float]]) -> dict[str, float]:
    """Samples (or µs) whose stack holds ``other`` or ``compute_tax``, by which."""
    out = {"other": 0.0, "compute_tax": 0.0}
    for stack, n in lines:
        for name in out:
            if f"{name} (" in stack or f":{name}:" in stack:
                out[name] += n
    return out


def run_external(argv: list[str], output: Path) -> float:
    """CPU seconds of one external sampler run (its own, from ``wait4``)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu_s = reap_cpu_s(proc)
    if not output.exists():
        raise RuntimeError(f"{argv[0]} wrote no output (exit status {proc.returncode})")
    return cpu_s


def py_spy(binary: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    target = start_target(args.python, args.idle_ms / 1000)
    try:
        out = folder / "py-spy.txt"
        argv = [binary, "record", "--pid", str(target.pid), "--rate", str(args.rate), "--gil"]
        argv += [
            "--nonblocking",
            "--format",
            "raw",
            "--duration",
            str(args.seconds),
            "--output",
            str(out),
        ]
        cpu = run_external(argv, out)
    finally:
        target.kill()
        target.wait()
    lines = [
        (s, float(n)) for s, _, n in (ln.rpartition(" ") for ln in out.read_text().splitlines())
    ]
    counts = leaf_counts(lines)
    return {
        "sampler": "py-spy --gil",
        "cpu_s": cpu,
        "samples": sum(counts.values()),
        **_share(counts),
    }


def austin(binary: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    target = start_target(args.python, args.idle_ms / 1000)
    try:
        out = folder / "austin.txt"
        interval_us = int(1_000_000 / args.rate)
        argv = [binary, "--sleepless", "-i", f"{interval_us}us", "-x", str(args.seconds)]
        argv += ["-p", str(target.pid), "-o", str(out)]
        cpu = run_external(argv, out)
    finally:
        target.kill()
        target.wait()
    lines = []
    for line in out.read_text().splitlines():
        if line.startswith("P"):
            stack, _, n = line.rpartition(" ")
            lines.append(
                (stack, 1.0 if int(n) > 0 else 0.0)
            )  # one sample per line, µs of CPU after it
    counts = leaf_counts(lines)
    return {
        "sampler": "austin --sleepless",
        "cpu_s": cpu,
        "samples": sum(counts.values()),
        **_share(counts),
    }


def echion(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """echion's cost as the target's CPU over a run with no sampler (no share: its
    output is MOJO, and its cost already rules it out, see the module's docstring)."""
    cpus = {}
    for label, env in (
        ("none", None),
        (
            "echion",
            {
                "ECHION_CPU": "1",
                "ECHION_OUTPUT": str(folder / "echion.mojo"),
                "ECHION_INTERVAL": str(int(1_000_000 / args.rate)),
            },
        ),
    ):
        target = start_target(args.python, args.idle_ms / 1000, env, ECHION_START if env else None)
        try:
            before = process_cpu_s(target.pid)
            time.sleep(args.seconds)
            cpus[label] = process_cpu_s(target.pid) - before
        finally:
            target.kill()
            target.wait()
    return {
        "sampler": "echion (cpu mode)",
        "cpu_s": cpus["echion"] - cpus["none"],
        "samples": None,
        "target_cpu_s_without": cpus["none"],
        "target_cpu_s_with": cpus["echion"],
    }


def native(args: argparse.Namespace, folder: Path, clock: str) -> dict[str, Any]:
    """The native sampler in the target; its CPU is its own thread's CPU clock."""
    out = folder / f"native-{clock}.json"
    env = {"NS_INTERVAL_US": str(int(1_000_000 / args.rate)), "NS_CLOCK": clock}
    env |= {"NS_OUT": str(out), "NS_SECONDS": str(args.seconds)}
    env["PYTHONPATH"] = os.pathsep.join([str(folder / "native"), os.environ.get("PYTHONPATH", "")])
    target = start_target(args.python, args.idle_ms / 1000, env, NATIVE_START)
    try:
        target.wait(args.seconds + 30)
    finally:
        if target.returncode is None:
            target.kill()
            target.wait()
    got = json.loads(out.read_text())
    counts = leaf_counts([(stack, 1.0) for stack in got["stacks"]])
    return {
        "sampler": f"native, {clock} clock",
        "cpu_s": got["stats"]["cpu_ns"] / 1e9,
        "samples": sum(counts.values()),
        "stats": got["stats"],
        **_share(counts),
    }


def build_native(python: str, folder: Path) -> str | None:
    """Build the native sampler for ``python`` into ``folder``; why not, if it fails."""
    script = Path(__file__).resolve().parent / "native_sampler" / "build.py"
    done = subprocess.run([python, str(script), str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def _share(counts: dict[str, float]) -> dict[str, Any]:
    total = sum(counts.values())
    return {"compute_tax_share": counts["compute_tax"] / total if total else None}


def runs(binary: str | None) -> bool:
    """Whether ``binary -V`` runs (Austin 4 on an older glibc does not)."""
    if not binary:
        return False
    try:
        return subprocess.run([binary, "-V"], capture_output=True).returncode == 0
    except OSError:
        return False


def echion_importable(python: str) -> bool:
    return subprocess.run([python, "-c", "import echion.core"], capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10, help="each sampler's run (s)")
    parser.add_argument("--rate", type=int, default=100, help="samples a second")
    parser.add_argument(
        "--idle-ms", type=float, default=45.0, help="the worker's sleep after 5 ms of CPU"
    )
    parser.add_argument("--python", default=sys.executable, help="the target's interpreter")
    parser.add_argument("--austin", default=shutil.which("austin"), help="the austin binary")
    parser.add_argument(
        "--native-clocks", nargs="*", default=["wall", "thread"],
        choices=["wall", "thread", "tick", "cpu"], help="the native sampler's clocks to run",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.rate < 1 or args.idle_ms < 0:
        parser.error("--seconds and --rate must be 1 or more, --idle-ms 0 or more")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="adaprof-samplers-") as tmp:
        folder = Path(tmp)
        binary = find_py_spy()
        if binary is None:
            raise SystemExit("py-spy not found: install the project (make setup)")
        rows.append(py_spy(binary, args, folder))
        if runs(args.austin):
            rows.append(austin(args.austin, args, folder))
        else:
            skipped.append(f"austin: not found or does not run ({args.austin})")
        if echion_importable(args.python):
            rows.append(echion(args, folder))
        else:
            skipped.append(f"echion: not importable by {args.python}")
        why_not = build_native(args.python, folder / "native")
        if why_not is None:
            rows += [native(args, folder, clock) for clock in args.native_clocks]
        else:
            skipped.append(f"native sampler: {why_not}")
    for row in rows:
        samples = row["samples"]
        row["cpu_ms_per_sample"] = 1000 * row["cpu_s"] / samples if samples else None
    meta = {
        "seconds": args.seconds,
        "rate_hz": args.rate,
        "idle_ms": args.idle_ms,
        "truth": TRUTH,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.json:
        print(json.dumps({**meta, "rows": rows, "skipped": skipped}, indent=2))
        return
    print(
        f"{args.seconds} s at {args.rate} Hz; worker busy 5 ms then idle {args.idle_ms:g} ms;"
        " 8 parked threads"
    )
    print(
        f"{'sampler':<22} {'CPU s':>7} {'samples':>8} {'CPU ms/sample':>14}"
        f" {'compute_tax share':>18}"
    )
    for row in rows:
        per = row["cpu_ms_per_sample"]
        share = row.get("compute_tax_share")
        per_text = f"{per:.2f}" if per else "-"
        share_text = f"{share:.3f}" if share is not None else "-"
        print(
            f"{row['sampler']:<22} {row['cpu_s']:>7.3f} {int(row['samples'] or 0) or '-':>8} "
            f"{per_text:>14} {share_text:>18}"
        )
    print(f"truth: compute_tax share {TRUTH}")
    for line in skipped:
        print("skipped:", line)


if __name__ == "__main__":
    main()
