"""The native sampler's wake-ups and CPU in a demo service, this tree beside a baseline.

Each service is the benchmark's demo service (``python -m otel_adaprof.demo.service``
under ``opentelemetry-instrument``, ``ADAPROF_PROFILER=native``, local params: the
packaged catalog's ``learn-100hz`` by default, which samples only while a request is
open) with its own open-loop load generator at ``--rate`` requests a second. The
services of this tree and of ``--baseline`` (a tree with its extension built: ``git
archive REV otel_adaprof setup.py pyproject.toml | tar -x -C DIR && (cd DIR && python
setup.py build_ext --inplace)``) run *at the same time*, so both see the same machine.
After a warm-up, for ``--seconds``, each agent thread's CPU and wake-ups (its voluntary
context switches) are read as ``bench/agent_threads_profile.py`` reads them
(``read_threads``, ``thread_figures``: ``/proc/<pid>/task/<tid>/``), per thread named
``adaprof-<part>``, with the service's own CPU per request (``psutil``).

Printed per service and round: the sampler thread's (``adaprof-native``) CPU in ms a
second, its wake-ups a second and CPU per wake-up, the other agent threads' CPU, and
the service's CPU per request. Spans go nowhere (``OTEL_TRACES_EXPORTER=none``): the
span join still runs, no exporter does.

Usage::

    python bench/sampler_wakes.py --baseline /tmp/base --rounds 3 --seconds 30 --json \\
        > bench/output/sampler_wakes_s52.json
    python bench/sampler_wakes.py --rate 20 --params '{"sampling_interval_ms": 10}'

Load targets 127.0.0.1 only, bounded in rate and time; every process it starts is
stopped on exit (:class:`otel_adaprof.demo.processes.Children`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent_overhead import action_params  # noqa: E402
from agent_threads_profile import read_threads, thread_figures  # noqa: E402

from otel_adaprof.demo.processes import Children  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def one_round(
    trees: dict[str, Path], params: dict[str, Any], rate: float, seconds: float, shape: str
) -> dict[str, Any]:
    """Start a service per tree, load them all, read their agent threads over ``seconds``."""
    py = Path(sys.executable)
    instrument = py.parent / "opentelemetry-instrument"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("ADAPROF_", "OTEL_"))}
    result: dict[str, Any] = {}
    with Children() as kids, tempfile.TemporaryDirectory() as tmp:
        ports, procs = {}, {}
        for label, tree in trees.items():
            port = free_port()
            env = dict(base_env)
            env.update(
                PYTHONPATH=str(tree),
                ADAPROF_PROFILER="native",
                ADAPROF_PARAMS=json.dumps(params),
                ADAPROF_DEMO_SHAPE=shape,
                OTEL_SERVICE_NAME=f"wakes-{label}",
                OTEL_TRACES_EXPORTER="none",
                OTEL_METRICS_EXPORTER="none",
                OTEL_LOGS_EXPORTER="none",
            )
            argv = [str(instrument), str(py), "-m", "otel_adaprof.demo.service"]
            argv += ["--port", str(port)]
            log = Path(tmp) / f"{label}.log"
            procs[label] = kids.start(label, argv, env=env, cwd=tree, log=log)
            ports[label] = port
        time.sleep(4.0)  # the services listen, the agents start
        for label, port in ports.items():
            kids.start(
                f"load-{label}",
                [str(py), "-m", "otel_adaprof.demo.loadgen", "--port", str(port),
                 "--rate", str(rate), "--duration", str(seconds + 30.0), "--loop"],
                env=base_env, cwd=ROOT,
            )  # fmt: skip
        time.sleep(5.0)  # warm-up: the params in force, the caches full
        before = {label: read_threads(p.pid) for label, p in procs.items()}
        cpu0 = {label: psutil.Process(p.pid).cpu_times() for label, p in procs.items()}
        time.sleep(seconds)
        after = {label: read_threads(p.pid) for label, p in procs.items()}
        cpu1 = {label: psutil.Process(p.pid).cpu_times() for label, p in procs.items()}
        requests = round(rate * seconds)
        for label in trees:
            used = (cpu1[label].user + cpu1[label].system) - (cpu0[label].user + cpu0[label].system)
            result[label] = {
                "threads": thread_figures(before[label], after[label], requests, seconds),
                "service_cpu_ms_per_req": round(used * 1000 / requests, 3),
            }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--baseline", type=Path, help="a tree of an earlier commit, its extension built"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured, per round")
    parser.add_argument("--rate", type=float, default=10.0, help="requests a second, each service")
    parser.add_argument("--shape", default="shop", help="ADAPROF_DEMO_SHAPE")
    parser.add_argument("--params", help="params JSON (default: the catalog's learn-100hz)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "otel_adaprof" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    if not 0 < args.rate <= 50 or not 0 < args.seconds <= 600 or not 1 <= args.rounds <= 10:
        parser.error("--rate in (0, 50], --seconds in (0, 600], --rounds in 1..10")
    params = json.loads(args.params) if args.params else action_params("learn-100hz")
    trees = {"this": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds} ({args.seconds:.0f} s)...", file=sys.stderr, flush=True)
        rounds.append(one_round(trees, params, args.rate, args.seconds, args.shape))
    out = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rate": args.rate,
        "seconds": args.seconds,
        "shape": args.shape,
        "params": params,
        "trees": {k: str(v) for k, v in trees.items()},
        "rounds": rounds,
    }
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for i, r in enumerate(rounds, 1):
        for label, figures in r.items():
            threads = figures["threads"]
            native = threads.get("adaprof-native", {})
            others = sum(v["pct_core"] for k, v in threads.items() if k.startswith("adaprof-"))
            others -= native.get("pct_core", 0.0)
            cpu, wakes = 10 * native.get("pct_core", 0), native.get("wakes_per_s", 0)
            each, per_req = native.get("cpu_us_per_wake", 0), figures["service_cpu_ms_per_req"]
            print(
                f"round {i} {label:9s} sampler {cpu:6.3f} ms/s, {wakes:6.1f} wake-ups/s, "
                f"{each:5.1f} us each; other agent threads {10 * others:6.3f} ms/s; "
                f"service {per_req:.2f} ms/req"
            )


if __name__ == "__main__":
    main()
