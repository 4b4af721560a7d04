"""The native sampler beside py-spy on the benchmark's own services, with their truth.

``bench/other_samplers.py`` found no well-kept sampler cheaper than py-spy, and most of
py-spy's CPU goes on ticks that find no thread running Python (it reads the process
100 times a second, busy or not). The native sampler
(``otel_adaprof/instrumentation/profiler/_native_sampler.c``, the agent's native profiler
since session 41, built here by ``bench/native_sampler/build.py``) is a small in-process
sampler: a native thread, holding no GIL and running no Python, reads frames
with ``process_vm_readv`` on its own process (a stale address is an error returned,
never a fault), on one of four clocks (``--clock``):

- ``wall`` (default): the GIL holder every ``--interval-ms`` of wall time (exponential
  gaps), as py-spy ``--gil`` reads it from outside.
- ``thread``: a POSIX timer on each Python thread's own CPU clock, firing at every
  scheduler tick that finds that thread on a CPU; the sample is that thread's stack.
  No tick while the service sleeps: samples cost CPU only as the service uses it (on
  the demo shapes its error is larger than its sample count explains: docs).
- ``tick`` and ``cpu``: the GIL holder on a timer on the *process's* CPU clock (every
  tick, or exponential gaps of ``--interval-ms`` of CPU). Kept to show why not: another
  thread's CPU (I/O, the kernel) is charged to whatever holds the GIL.

Each run starts a demo service of ``--shape`` (no agent) with the native sampler in
it, reads the same process with ``py-spy record --gil --nonblocking --rate 100`` at
the same time, and sends the benchmark's load (its four phases in ``--load-s`` seconds
at ``--rate`` requests a second). Printed per sampler and run: its own CPU (py-spy's
from ``wait4``, the native thread's from its CPU clock), the workload samples, CPU per
workload sample, and the L1 of its function shares against the run's truth
(:func:`otel_adaprof.demo.ground_truth.run_truth`), beside the L1 ideal (independent)
sampling would reach with as many samples.

Usage::

    python bench/native_sampler_services.py --shape shop --runs 2        # ~2.5 minutes
    python bench/native_sampler_services.py --shape ledger --runs 2 --clock wall --json \
        > bench/output/native_sampler_services/ledger_wall.json

``NS_FIFO=1`` in the environment runs the ``thread`` clock's sampler thread under
``SCHED_FIFO`` (root only), to check whether its reads come late. CPython 3.11 or 3.12
and a C compiler (the sampler is built for the running Python into a temporary folder;
nothing is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "native_sampler"))

from build import build  # noqa: E402
from other_samplers import process_cpu_s, reap_cpu_s  # noqa: E402
from thread_per_request_probe import mix_load  # noqa: E402

from otel_adaprof.demo.processes import wait_for_line  # noqa: E402
from otel_adaprof.demo.shapes import SHAPE_ENV, SHAPES  # noqa: E402
from otel_adaprof.instrumentation.profiler.pyspy import find_py_spy  # noqa: E402

#: Run inside the service: start the sampler, write its samples (read time in
#: monotonic ns, collapsed stack) at exit, run the service.
PRELUDE = """
import atexit, json, os, runpy, sys
import _native_sampler as ns, native_start
native_start.start(int(os.environ["NS_INTERVAL_US"]), os.environ["NS_CLOCK"],
                   on_cpu=os.environ.get("NS_ON_CPU") == "1")
agent_stacks = {}
if os.environ.get("NS_AGENT_OUT"):  # --agent: every sample the agent's store keeps, too
    from otel_adaprof.instrumentation.join import samples as _store
    _add_many = _store.SampleStore.add_many
    def _counted(self, tid, got, version=0, idle=False):
        got = list(got)
        if tid not in self.ignored and not idle:  # the CPU samples, as the profile counts
            for t_ns, stack, _since in got:
                agent_stacks.setdefault(";".join(stack), []).append(t_ns)
        return _add_many(self, tid, got, version, idle=idle)
    _store.SampleStore.add_many = _counted
def _dump():
    ns.stop()
    samples = [(ts, ";".join(reversed(s))) for ts, _tid, s in ns.drain()]
    with open(os.environ["NS_OUT"], "w") as out:
        json.dump({"stats": ns.stats(), "samples": samples}, out)
    if os.environ.get("NS_AGENT_OUT"):
        with open(os.environ["NS_AGENT_OUT"], "w") as out:
            json.dump(agent_stacks, out)
atexit.register(_dump)
if os.environ["NS_SERVICE"] == "thread-per-request":
    sys.argv = ["app.py"]
    runpy.run_path(os.environ["NS_APP"], run_name="__main__")
else:
    sys.argv = ["service", "--port", "0"]
    runpy.run_module("otel_adaprof.demo.service", run_name="__main__")
"""
#: The thread-per-request service (a new thread for every request, as
#: ``ThreadingMixIn``) and its load: ``/mix`` spends 16 ms of CPU in three functions.
APP = ROOT / "tests" / "agent" / "app.py"
MIX_RATE_RPS = 20.0


def _start_peer(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    """Another demo service of the shape, with no sampler (``--peers``), and its port."""
    env = {**os.environ, SHAPE_ENV: args.shape}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "otel_adaprof.demo.service", "--port", "0"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    url = wait_for_line(proc, "listening on", 60.0).split("listening on ", 1)[1]
    return proc, int(url.strip().rsplit(":", 1)[1])


def _peer_load(args: argparse.Namespace, port: int, k: int) -> threading.Thread:
    """The benchmark's load on a peer: at the same times as the sampled service's
    (``--peers-in-step``, as ``adaprof bench`` sends its six copies), else with Poisson
    gaps of the same mean, a seed of its own."""
    from otel_adaprof.demo.loadgen import LoadGenerator
    from otel_adaprof.demo.phases import schedule

    if args.peers_in_step:
        gen = LoadGenerator(port, schedule(args.load_s, args.rate))
    else:
        gen = LoadGenerator(port, schedule(args.load_s, args.rate), arrivals="poisson", seed=k + 7)
    return threading.Thread(target=gen.run, daemon=True)


def one_run(args: argparse.Namespace, module_dir: Path, folder: Path) -> dict[str, Any]:
    """One service, both samplers on it at once, the benchmark's load."""
    from otel_adaprof.demo import ground_truth
    from otel_adaprof.demo.loadgen import LoadGenerator
    from otel_adaprof.demo.phases import schedule

    native_out, spy_out = folder / "native.json", folder / "py-spy.txt"
    env = {**os.environ, SHAPE_ENV: args.shape, "NS_OUT": str(native_out)}
    env["NS_INTERVAL_US"] = str(int(args.interval_ms * 1000))
    env["NS_CLOCK"] = args.clock
    env["NS_ON_CPU"] = "1" if args.on_cpu else "0"
    env["NS_SERVICE"], env["NS_APP"] = args.service, str(APP)
    env["PYTHONPATH"] = os.pathsep.join([str(module_dir), str(ROOT), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-c", PRELUDE]
    sink = None
    if args.agent:  # the service as the benchmark runs it: the agent at static-100
        from otel_adaprof.demo.loadgen import CAPTURE_ENV
        from otel_adaprof.demo.span_sink import SpanSink
        from otel_adaprof.demo.stack import instrument_command

        sink = SpanSink(folder / "spans.jsonl").start()
        argv = [*instrument_command(), *argv]
        env.update(CAPTURE_ENV)
        env.update({
            "NS_AGENT_OUT": str(folder / "agent.json"), "OTEL_SERVICE_NAME": "native-bench",
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "adaprof",
            "ADAPROF_PROFILER": args.agent,
            "ADAPROF_PARAMS": '{"sampling_interval_ms": 10, "stack_depth": 128}',
        })  # fmt: skip
    service = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    spy: subprocess.Popen[bytes] | None = None
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.spinners)
    ]
    peers = [_start_peer(args) for _ in range(args.peers)]
    try:
        url = wait_for_line(service, "listening on", 60.0).split("listening on ", 1)[1]
        port = int(url.strip().rsplit(":", 1)[1])
        binary = find_py_spy()
        if binary is None:
            raise SystemExit("py-spy not found: install the project (make setup)")
        argv = [binary, "record", "--pid", str(service.pid), "--rate", "100", "--gil"]
        argv += ["--nonblocking", "--format", "raw", "--output", str(spy_out)]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        service_cpu0 = process_cpu_s(service.pid)
        if args.service == "thread-per-request":
            walls, done = mix_load(url.strip() + "/mix?ms=16", args.load_s, MIX_RATE_RPS)
        else:
            peer_loads = [_peer_load(args, peer_port, k) for k, (_p, peer_port) in enumerate(peers)]
            for thread in peer_loads:
                thread.start()
            load_at = (time.monotonic_ns(), time.time_ns())  # the native's clock, the agent's
            result = LoadGenerator(port, schedule(args.load_s, args.rate)).run()
            for thread in peer_loads:
                thread.join(args.load_s + 30)
        service_cpu = process_cpu_s(service.pid) - service_cpu0
        spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        spy_cpu = reap_cpu_s(spy)
    finally:
        for spinner in [*spinners, *(p for p, _port in peers)]:
            spinner.kill()
            spinner.wait()
        if spy is not None and spy.returncode is None:
            spy.kill()
            spy.wait()
        service.send_signal(signal.SIGTERM)
        service.wait(30)
        if sink is not None:
            sink.stop()
    if args.service == "thread-per-request":  # the truth: the wall each function took
        served = {"mix": float(done)}
        truth = {name: took / sum(walls.values()) for name, took in walls.items()}
    else:
        served = {name: float(stats.ok) for name, stats in result.per_phase.items()}
        truth = ground_truth.run_truth(served)
    spy_stacks: Counter[str] = Counter()
    for line in spy_out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        spy_stacks[stack] += int(n)
    native = json.loads(native_out.read_text())
    native_stacks = Counter(stack for _ts, stack in native["samples"])
    readings = []
    if args.agent:  # the agent's own store (its CPU is the process's: not shown)
        agent_times = json.loads((folder / "agent.json").read_text())
        agent_stacks = Counter({stack: len(times) for stack, times in agent_times.items()})
        readings.append((f"the agent's store ({args.agent}, 100 Hz)", agent_stacks, 0.0))
    rows = []
    for name, stacks, cpu_s in (
        *readings,
        ("py-spy --gil, 100 Hz", spy_stacks, spy_cpu),
        (
            f"native, {args.clock} clock {args.interval_ms:g} ms"
            + (", on-CPU only" if args.on_cpu else ""),
            native_stacks,
            native["stats"]["cpu_ns"] / 1e9,
        ),
    ):
        workload = sum(n for s, n in stacks.items() if ground_truth.function_of(s))
        shares = ground_truth.function_shares(stacks)
        rows.append(
            {
                "sampler": name,
                "cpu_s": round(cpu_s, 4),
                "samples": sum(stacks.values()),
                "workload_samples": workload,
                "cpu_ms_per_workload_sample": round(1000 * cpu_s / workload, 4)
                if workload and cpu_s > 0
                else None,
                "l1": round(ground_truth.l1_error(truth, shares), 4),
                "ideal_l1": round(ground_truth.sampling_l1(workload, truth), 4),
                "shares": {k: round(v, 4) for k, v in shares.items()},
            }
        )
    per_phase: dict[str, Any] = {}
    if args.service == "demo":  # each phase's own profile against its own truth
        timed = {"native": [(ts - load_at[0], stack) for ts, stack in native["samples"]]}
        if args.agent:
            timed["agent"] = [
                (t - load_at[1], stack) for stack, times in agent_times.items() for t in times
            ]
        per_phase = _per_phase(timed, args)
    return {
        "per_phase": per_phase,
        "requests": served,
        "service_cpu_s": round(service_cpu, 3),
        "truth": truth,
        "native_stats": native["stats"],
        "rows": rows,
    }


def _per_phase(timed: dict[str, list[tuple[int, str]]], args: argparse.Namespace) -> dict[str, Any]:
    """``{reading: {phase: {l1, ideal_l1, workload_samples, shares}}}``: samples placed
    in the benchmark's phases by their time since the load began."""
    from otel_adaprof.demo import ground_truth
    from otel_adaprof.demo.phases import phase_at, schedule

    phases = schedule(args.load_s, args.rate)
    out: dict[str, Any] = {}
    for reading, samples in timed.items():
        by_phase: dict[str, Counter[str]] = {p.name: Counter() for p in phases}
        for since_ns, stack in samples:
            if 0 <= since_ns <= args.load_s * 1e9:
                by_phase[phase_at(phases, since_ns / 1e9).name][stack] += 1
        rows = {}
        for phase in phases:
            truth = ground_truth.truth_for(phase.hot_path)
            stacks = by_phase[phase.name]
            workload = sum(n for s, n in stacks.items() if ground_truth.function_of(s))
            shares = ground_truth.function_shares(stacks)
            rows[phase.name] = {
                "workload_samples": workload,
                "l1": round(ground_truth.l1_error(truth, shares), 4),
                "ideal_l1": round(ground_truth.sampling_l1(workload, truth), 4),
                "shares": {k: round(v, 4) for k, v in shares.items()},
            }
        out[reading] = rows
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="shop")
    parser.add_argument(
        "--service", choices=("demo", "thread-per-request"), default="demo",
        help="the demo service of --shape under the benchmark's load, or tests/agent/app.py"
        " (a thread per request) under 20 requests/s of /mix",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--load-s", type=float, default=60.0, help="the four phases' length")
    parser.add_argument("--rate", type=float, default=10.0, help="base requests a second")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="of the process's CPU")
    parser.add_argument(
        "--clock", choices=("wall", "thread", "tick", "cpu"), default="wall",
        help="the native sampler's ticks (see above)",
    )  # fmt: skip
    parser.add_argument(
        "--spinners", type=int, default=0,
        help="processes that each burn a core meanwhile (a machine busier than it has cores)",
    )  # fmt: skip
    parser.add_argument(
        "--agent", choices=("native", "py-spy"), default=None,
        help="run the service under opentelemetry-instrument with the agent at static-100 "
        "on this profiler (no controller; spans to a local sink), and also read what the "
        "agent's sample store kept",
    )  # fmt: skip
    parser.add_argument(
        "--peers", type=int, default=0,
        help="other copies of the demo service (no sampler) under the same load meanwhile",
    )  # fmt: skip
    parser.add_argument(
        "--peers-in-step", action="store_true",
        help="the peers' requests at the same times as the sampled service's (as adaprof "
        "bench sends them), not Poisson gaps of their own",
    )  # fmt: skip
    parser.add_argument(
        "--on-cpu", action="store_true",
        help="wall clock: keep a GIL holder's sample only if it ran while read (its CPU "
        "clock moved); an experiment, not the agent's setting",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.interval_ms <= 0 or args.load_s <= 0:
        parser.error("--runs, --interval-ms and --load-s must be positive")
    if args.spinners < 0 or args.peers < 0:
        parser.error("--spinners and --peers must be 0 or more")
    os.environ[SHAPE_ENV] = args.shape  # the truth below is this shape's
    runs = []
    with tempfile.TemporaryDirectory(prefix="adaprof-native-") as tmp:
        module_dir = build(Path(tmp) / "module").parent
        for i in range(args.runs):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            runs.append(one_run(args, module_dir, folder))
            if not args.json:
                _print_run(i, runs[-1])
    meta = {
        "shape": args.shape,
        "service": args.service,
        "load_s": args.load_s,
        "rate_rps": args.rate,
        "interval_ms": args.interval_ms,
        "clock": args.clock,
        "spinners": args.spinners,
        "peers": args.peers,
        "agent": args.agent,
        "peers_in_step": args.peers_in_step,
        "on_cpu": args.on_cpu,
        "python": sys.version.split()[0],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.json:
        print(json.dumps({**meta, "runs": runs}, indent=2))


def _print_run(i: int, run: dict[str, Any]) -> None:
    requests = int(sum(run["requests"].values()))
    print(f"run {i + 1}: {requests} requests, service CPU {run['service_cpu_s']:.2f} s")
    print(
        f"  {'sampler':<28} {'CPU s':>7} {'workload':>9} {'CPU ms/sample':>14}"
        f" {'L1':>7} {'ideal L1':>9}"
    )
    for row in run["rows"]:
        per = row["cpu_ms_per_workload_sample"]
        per_text = f"{per:.3f}" if per is not None else "-"
        print(
            f"  {row['sampler']:<28} {row['cpu_s']:>7.3f} {row['workload_samples']:>9} "
            f"{per_text:>14} {row['l1']:>7.3f} {row['ideal_l1']:>9.3f}"
        )


if __name__ == "__main__":
    main()
