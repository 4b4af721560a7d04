"""Poll handling of the controller on one core: requests per second and latency.

The controller runs pinned to CPU 0; a separate load process pinned to CPU 1 simulates
N agents on 127.0.0.1, each carrying its config version forward and sending a full
window report with a stack histogram, for a bounded time. Two load shapes:

- closed loop (default): a fixed number of polls in flight (``--concurrency``), as fast
  as the controller answers: the throughput;
- paced (``--paced 5``): every agent polls once every 5 s at its own phase, as real
  agents do: the latency at that load.

Both policy paths are measured: no session (static defaults) and an open adaptive
session (Vowpal Wabbit decides and learns on every poll). ``--baseline DIR`` also runs
the controller of another source tree (e.g. ``git archive main | tar -x -C DIR``) in
the same run, alternating with this one, so that each figure has its comparison.

    python bench/poll_load.py                      # 100 and 1000 agents, both modes
    python bench/poll_load.py --agents 100 --seconds 5 --json
    python bench/poll_load.py --agents 1000 --modes adaptive --paced 5 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

STACKS = {
    "main (app.py:1);handle (app.py:9);burn_cpu (work.py:3)": 40,
    "main (app.py:1);handle (app.py:9);render (tpl.py:20)": 12,
    "main (app.py:1);query (db.py:4)": 8,
}


def poll_body(service: str, instance: str, version: int) -> bytes:
    """A realistic poll: identity, a window's observed state and a stack histogram."""
    body: dict[str, Any] = {
        "protocol_version": 1,
        "agent": {
            "service": service,
            "instance_id": instance,
            "host": "bench",
            "pid": 1,
            "profiler_backend": "py-spy",
        },
        "config_version": version,
    }
    if version:
        body["window"] = {
            "window_start": time.time() - 5,
            "window_seconds": 5.0,
            "process_cpu": 0.4,
            "node_cpu": 0.3,
            "profiler_cpu_seconds": 0.05,
            "markers_per_s": 5.0,
            "samples_per_s": 20.0,
            "bytes_exported_per_s": 8000.0,
            "poll_rtt_ms": 1.0,
        }
        body["stacks"] = {
            "stacks": [{"stack": s, "count": c} for s, c in STACKS.items()],
            "total_samples": sum(STACKS.values()),
            "depth": 64,
        }
    return json.dumps(body).encode()


async def _drive(
    url: str, service: str, agents: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    import aiohttp

    versions = [0] * agents
    latencies: list[float] = []
    errors = 0
    next_agent = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_agent, errors
        while time.perf_counter() < deadline:
            i = next_agent
            next_agent = (next_agent + 1) % agents
            body = poll_body(service, f"agent-{i}", versions[i])
            started = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/v1/agents/poll", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    data = await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                    versions[i] = json.loads(data)["config_version"]
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # first polls (no window) so every agent has a version, outside the measurement
        for i in range(agents):
            async with session.post(
                f"{url}/v1/agents/poll", data=poll_body(service, f"agent-{i}", 0)
            ) as resp:
                versions[i] = json.loads(await resp.read())["config_version"]
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


async def _drive_paced(
    url: str, service: str, agents: int, seconds: float, interval: float
) -> dict[str, Any]:
    """Every agent polls once per ``interval`` at its own phase (spread evenly)."""
    import aiohttp

    versions = [0] * agents
    latencies: list[float] = []
    late: list[float] = []  # how late the load process sent polls (its own lag)
    errors = 0

    async def agent(session: aiohttp.ClientSession, i: int, start: float) -> None:
        nonlocal errors
        due = start + interval * i / agents
        while due < start + seconds:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            body = poll_body(service, f"agent-{i}", versions[i])
            sent = time.perf_counter()
            try:
                async with session.post(
                    f"{url}/v1/agents/poll", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    data = await resp.read()
                    if resp.status != 200:
                        errors += 1
                    else:
                        versions[i] = json.loads(data)["config_version"]
                        latencies.append(time.perf_counter() - sent)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
            due += interval

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for i in range(agents):
            async with session.post(
                f"{url}/v1/agents/poll", data=poll_body(service, f"agent-{i}", 0)
            ) as resp:
                versions[i] = json.loads(await resp.read())["config_version"]
        start = time.perf_counter() + 0.5
        await asyncio.gather(*(agent(session, i, start) for i in range(agents)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    late.sort()

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else 0.0

    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.50),
        "p99_ms": pct(latencies, 0.99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "sent_late_p99_ms": pct(late, 0.99) if len(late) > len(latencies) // 100 else 0.0,
    }


def _load_process(
    url: str,
    service: str,
    agents: int,
    seconds: float,
    concurrency: int,
    paced: float,
    out: Any,
) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    if paced:
        out.put(asyncio.run(_drive_paced(url, service, agents, seconds, paced)))
    else:
        out.put(asyncio.run(_drive(url, service, agents, seconds, concurrency)))


def _start_controller(db: Path, source: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})

    log = db.with_suffix(".log")
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "otel_adaprof.cli",
                "controller",
                "--port",
                "0",
                "--db",
                str(db),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,
            cwd=source,
            env={**os.environ, "PYTHONPATH": str(source)} if source else None,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.findall(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return proc, found[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"controller did not start:\n{log.read_text()}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    agents: int,
    mode: str,
    seconds: float,
    concurrency: int,
    paced: float = 0.0,
    source: Path | None = None,
    label: str = "this tree",
) -> dict[str, Any]:
    """One measurement on a fresh controller (of ``source``, default this tree) and
    database; ``paced`` > 0 makes every agent poll once per ``paced`` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_controller(Path(tmp) / "bench.db", source)
        try:
            service = "bench"
            if mode == "adaptive":
                req = urllib.request.Request(
                    f"{url}/v1/sessions",
                    method="POST",
                    data=json.dumps(
                        {"service": service, "mode": "adaptive", "duration_s": 3600}
                    ).encode(),
                )
                urllib.request.urlopen(req, timeout=10).read()
            cpu_before = _cpu_seconds(proc.pid)
            queue: Any = mp.get_context("spawn").Queue()
            load = mp.get_context("spawn").Process(
                target=_load_process,
                args=(url, service, agents, seconds, concurrency, paced, queue),
            )
            load.start()
            result: dict[str, Any] = queue.get(timeout=seconds + 120)
            cpu = _cpu_seconds(proc.pid) - cpu_before
            load.join(timeout=10)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    # CPU the controller used during the load (including its first polls of every agent,
    # which are not counted as requests: a slight overestimate per poll). On a shared
    # machine this is the steadier figure: polls one core serves = 1 / cpu_s_per_poll.
    polls = result["requests"] + agents
    result["cpu_ms_per_poll"] = cpu / polls * 1000 if polls else 0.0
    result["polls_per_cpu_s"] = polls / cpu if cpu > 0 else 0.0
    load = f"every {paced:g} s" if paced else f"{concurrency} in flight"
    return {
        "controller": label,
        "agents": agents,
        "mode": mode,
        "load": load,
        "concurrency": concurrency,
        **result,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| controller | agents | mode | load | requests | req/s | p50 ms | p99 ms | errors "
        "| CPU ms/poll | polls per CPU-s |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['controller']} | {r['agents']} | {r['mode']} | {r['load']} | "
            f"{r['requests']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['errors']} | {r['cpu_ms_per_poll']:.2f} | {r['polls_per_cpu_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--modes", nargs="+", choices=["static", "adaptive"], default=["static", "adaptive"]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement per run")
    parser.add_argument("--concurrency", type=int, default=32, help="polls in flight")
    parser.add_argument(
        "--paced",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="each agent polls once per SECONDS (instead of a fixed number in flight)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="also measure the controller of this source tree, alternating with this one",
    )
    parser.add_argument("--label", default="this tree", help="name of this tree's rows")
    parser.add_argument("--baseline-label", default="baseline", help="name of the baseline rows")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    if args.paced < 0 or args.paced > 300:
        parser.error("--paced must be in [0, 300]")
    if args.baseline is not None and not (args.baseline / "otel_adaprof").is_dir():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    trees: list[tuple[Path | None, str]] = [(None, args.label)]
    if args.baseline is not None:
        trees.insert(0, (args.baseline.resolve(), args.baseline_label))
    rows = []
    for agents in args.agents:
        for mode in args.modes:
            for source, label in trees:
                rows.append(
                    run(agents, mode, args.seconds, args.concurrency, args.paced, source, label)
                )
                if not args.json:
                    r = rows[-1]
                    print(
                        f"  {label}: {agents} agents, {mode}, {r['load']}: {r['rps']:.0f} req/s, "
                        f"p99 {r['p99_ms']:.2f} ms",
                        file=sys.stderr,
                    )
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
