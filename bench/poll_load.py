"""Poll handling of the controller on one core: requests per second and latency.

The controller runs pinned to CPU 0; a separate load process pinned to CPU 1 simulates
N agents on 127.0.0.1, each carrying its config version forward and sending a full
window report with a stack histogram, with a bounded number of polls in flight, for a
bounded time. Both policy paths are measured: no session (static defaults) and an open
adaptive session (Vowpal Wabbit decides and learns on every poll).

    python bench/poll_load.py                      # 100 and 1000 agents, both modes
    python bench/poll_load.py --agents 100 --seconds 5 --json
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


def _load_process(
    url: str, service: str, agents: int, seconds: float, concurrency: int, out: Any
) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    out.put(asyncio.run(_drive(url, service, agents, seconds, concurrency)))


def _start_controller(db: Path) -> tuple[subprocess.Popen[bytes], str]:
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


def run(agents: int, mode: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """One measurement on a fresh controller and database."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_controller(Path(tmp) / "bench.db")
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
            queue: Any = mp.get_context("spawn").Queue()
            load = mp.get_context("spawn").Process(
                target=_load_process, args=(url, service, agents, seconds, concurrency, queue)
            )
            load.start()
            result: dict[str, Any] = queue.get(timeout=seconds + 120)
            load.join(timeout=10)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"agents": agents, "mode": mode, "concurrency": concurrency, **result}


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| agents | mode | requests | req/s | p50 ms | p99 ms | errors |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['agents']} | {r['mode']} | {r['requests']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
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
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    rows = []
    for agents in args.agents:
        for mode in args.modes:
            rows.append(run(agents, mode, args.seconds, args.concurrency))
            if not args.json:
                print(f"  {agents} agents, {mode}: {rows[-1]['rps']:.0f} req/s", file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
