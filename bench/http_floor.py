"""What a poll costs the controller beyond HTTP: the floor of aiohttp on this machine.

Issue #12 asks for 3,000 polls per CPU-second (one core, 32 in flight, 1,000 agents,
an adaptive session). This bench measures, side by side in one run, with the same
client as ``poll_load.py`` (pinned to CPU 1, the server to CPU 0):

* ``bare``: an aiohttp server whose ``POST /v1/agents/poll`` reads the body and
  answers a fixed JSON — the HTTP floor;
* ``parse``: the same, also parsing the body with the controller's ``read_poll``;
* ``controller``: the real controller on a fresh SQLite file with an adaptive session,
  its CPU split between the event loop's thread (HTTP, parsing, credit, decide, the
  answer) and its other threads (the group commit's writer, the WAL checkpoints).

    python bench/http_floor.py                 # 6 s each, 3 repeats, interleaved
    python bench/http_floor.py --seconds 10 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from poll_load import _drive, _first_polls, _start_controller

AGENTS = 1000
CONCURRENCY = 32
ANSWER = json.dumps(
    {"config_version": 2, "params": {"sampling_interval_ms": 50}, "session_id": None,
     "poll_interval_s": 5.0}
).encode()  # fmt: skip


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


def _server(port_out: Any, parse: bool) -> None:
    """A bare aiohttp app on 127.0.0.1 (CPU 0) answering polls with a fixed body."""
    _pin(0)
    from aiohttp import web

    from otel_adaprof.controller.poll_codec import read_poll

    async def poll(request: web.Request) -> web.Response:
        body = await request.read()
        if parse:
            read_poll(body)
        return web.Response(body=ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/agents/poll", poll)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


def _load(url: str, seconds: float, out: Any) -> None:
    _pin(1)
    out.put(asyncio.run(_drive([url], "bench", AGENTS, seconds, CONCURRENCY)))


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _drive_and_measure(url: str, pid: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    before = _thread_cpu(pid)
    load = ctx.Process(target=_load, args=(url, seconds, out))
    load.start()
    result = out.get()
    load.join()
    after = _thread_cpu(pid)
    main = after.get(pid, 0.0) - before.get(pid, 0.0)
    rest = sum(v - before.get(t, 0.0) for t, v in after.items() if t != pid)
    polls = max(1, result["requests"])
    return {
        "requests": result["requests"],
        "errors": result["errors"],
        "req_per_s": round(result["rps"], 1),
        "cpu_ms_per_poll": round(1000 * (main + rest) / polls, 4),
        "event_loop_ms_per_poll": round(1000 * main / polls, 4),
        "other_threads_ms_per_poll": round(1000 * rest / polls, 4),
        "polls_per_cpu_s": round(polls / max(main + rest, 1e-9)),
    }


def measure_bare(parse: bool, seconds: float) -> dict[str, Any]:
    """The bare (or parsing) aiohttp server under the closed loop."""
    ctx = mp.get_context("fork")
    port_out = ctx.Queue()
    server = ctx.Process(target=_server, args=(port_out, parse), daemon=True)
    server.start()
    try:
        port = port_out.get(timeout=30)
        assert server.pid is not None
        return _drive_and_measure(f"http://127.0.0.1:{port}", server.pid, seconds)
    finally:
        server.kill()
        server.join()


def measure_controller(seconds: float) -> dict[str, Any]:
    """The real controller (SQLite, an adaptive session, 1,000 agents' first polls made)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_controller(str(Path(tmp) / "bench.db"), None, Path(tmp) / "log")
        try:
            req = urllib.request.Request(
                f"{url}/v1/sessions",
                data=json.dumps({"service": "bench", "mode": "adaptive", "duration_s": 3600})
                .encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            urllib.request.urlopen(req, timeout=10).read()
            _first_polls([url], "bench", AGENTS)
            return _drive_and_measure(url, proc.pid, seconds)
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="closed loop per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument("--json", action="store_true", help="print the JSON result")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 120 or not 1 <= args.repeat <= 20:
        parser.error("--seconds must be in [1, 120] and --repeat in [1, 20]")
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "parse": [], "controller": []}
    for i in range(args.repeat):
        for name in runs:
            row = (
                measure_controller(args.seconds)
                if name == "controller"
                else measure_bare(name == "parse", args.seconds)
            )
            runs[name].append(row)
            print(f"  run {i + 1}/{args.repeat} {name}: {row}", file=sys.stderr, flush=True)
    keys = ("req_per_s", "cpu_ms_per_poll", "event_loop_ms_per_poll",
            "other_threads_ms_per_poll", "polls_per_cpu_s")  # fmt: skip
    summary = {
        name: {key: statistics.median(r[key] for r in rows) for key in keys}
        for name, rows in runs.items()
    }
    result = {
        "command": "python bench/http_floor.py " + " ".join(sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg(),
        "medians": summary,
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print("| server | req/s | CPU ms/poll | event loop ms/poll | other threads ms/poll "
          "| polls per CPU-s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in summary.items():
        print(f"| {name} | {m['req_per_s']:.0f} | {m['cpu_ms_per_poll']:.3f} | "
              f"{m['event_loop_ms_per_poll']:.3f} | {m['other_threads_ms_per_poll']:.3f} | "
              f"{m['polls_per_cpu_s']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
