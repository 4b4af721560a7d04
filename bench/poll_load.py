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

``--db sqlite postgresql --replicas 1 2`` measures the same load on SQLite and on
PostgreSQL with one and with two controller replicas (every replica pinned to CPU 0,
the load's round-robin client sending each poll to the next replica), each on a fresh
database. ``postgresql`` starts a temporary PostgreSQL 15 server (tests/support/postgres.py;
as an unprivileged user when run as root); ``postgresql://…`` uses a server you run (a
fresh database is created on it per measurement and dropped after). Rows on PostgreSQL
also give the server's CPU per poll (``db CPU ms/poll``), when it runs on this machine.

    python bench/poll_load.py                      # 100 and 1000 agents, both modes
    python bench/poll_load.py --agents 100 --seconds 5 --json
    python bench/poll_load.py --agents 1000 --modes adaptive --paced 5 --seconds 20
    python bench/poll_load.py --agents 1000 --modes adaptive --db sqlite postgresql --replicas 1 2
    python bench/poll_load.py --agents 1000 --modes adaptive --callgrind 2000
    python bench/poll_load.py --agents 1000 --modes adaptive --paced 5 --seconds 20 --breakdown

``--breakdown`` (paced): the controller sends each poll's parts in a ``Server-Timing``
header (otel_adaprof/controller/poll_timing.py) and its handler's start on the
machine's monotonic clock; the bench prints, per part, p50 and p99 over every poll and
the mean over the slowest 1 % of polls: what the tail is made of. Its GC pauses over
the measurement come from the controller's /metrics.

``--callgrind POLLS`` counts instead of timing: the controller runs under ``valgrind
--tool=callgrind`` and the figure is the instructions it executes per poll (all its
threads, user space), which does not move with the load of a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
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
    urls: list[str],
    service: str,
    agents: int,
    seconds: float,
    concurrency: int,
    max_polls: int = 0,
) -> dict[str, Any]:
    import aiohttp

    versions = [1] * agents  # every agent made its first poll (see _first_polls)
    latencies: list[float] = []
    errors = 0
    next_agent = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal next_agent, errors, sent
        while time.perf_counter() < deadline and not (max_polls and sent >= max_polls):
            i = next_agent
            next_agent = (next_agent + 1) % agents
            url = urls[sent % len(urls)]  # round robin over the replicas
            sent += 1
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

    timeout = aiohttp.ClientTimeout(total=600 if max_polls else 10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
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
    urls: list[str], service: str, agents: int, seconds: float, interval: float
) -> dict[str, Any]:
    """Every agent polls once per ``interval`` at its own phase (spread evenly). When the
    controller sends ``Server-Timing`` (``--breakdown``), each poll's parts are kept."""
    import aiohttp

    versions = [1] * agents  # every agent made its first poll (see _first_polls)
    latencies: list[float] = []
    late: list[float] = []  # how late the load process sent polls (its own lag)
    timed: list[dict[str, float]] = []  # per poll: client latency and its parts (ms)
    errors = 0

    async def agent(session: aiohttp.ClientSession, i: int, start: float) -> None:
        nonlocal errors
        due = start + interval * i / agents
        turn = i
        while due < start + seconds:
            url = urls[turn % len(urls)]  # round robin over the replicas
            turn += 1
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            body = poll_body(service, f"agent-{i}", versions[i])
            # monotonic: the clock of the controller's Server-Timing start, too
            sent = time.monotonic()
            try:
                async with session.post(
                    f"{url}/v1/agents/poll", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    data = await resp.read()
                    received = time.monotonic()
                    if resp.status != 200:
                        errors += 1
                    else:
                        versions[i] = json.loads(data)["config_version"]
                        latencies.append(received - sent)
                        header = resp.headers.get("Server-Timing")
                        if header:
                            timed.append(_poll_parts(header, sent, received))
            except (aiohttp.ClientError, asyncio.TimeoutError):
                errors += 1
            due += interval

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
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
        **({"breakdown": breakdown(timed)} if timed else {}),
    }


#: A poll's parts, in order: before the handler (the client's send, the socket, the
#: controller's event loop), the controller's parts (otel_adaprof/controller/poll_timing.py)
#: and after the handler (the answer's write, the socket, the client's read).
POLL_PARTS = (
    "before",
    "parse",
    "read",
    "credit",
    "decide",
    "queue",
    "write",
    "commit",
    "resume",
    "answer",
    "after",
)


def _poll_parts(header: str, sent: float, received: float) -> dict[str, float]:
    """One poll's parts (ms) from its Server-Timing header and the client's monotonic
    stamps (one clock for every process of the machine)."""
    items: dict[str, float] = {}
    for item in header.split(","):
        name, _, rest = item.strip().partition(";")
        key, _, value = rest.partition("=")
        if key in ("dur", "desc"):
            items[name] = float(value.strip('"'))
    parts = {p: items.get(p, 0.0) for p in POLL_PARTS[1:-1]}
    start, total = items.get("start", sent), items.get("total", 0.0)
    parts["before"] = (start - sent) * 1000
    parts["after"] = (received - start) * 1000 - total
    parts["handler"] = total
    parts["client"] = (received - sent) * 1000
    return parts


def breakdown(timed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per part: p50 and p99 over every poll, and its mean over the slowest 1 % of polls
    (by the client's latency), which says what the tail is made of."""
    slowest = sorted(timed, key=lambda t: t["client"])[-max(1, len(timed) // 100) :]

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    out = {}
    for part in (*POLL_PARTS, "handler", "client"):
        values = [t[part] for t in timed]
        out[part] = {
            "p50_ms": pct(values, 0.5),
            "p99_ms": pct(values, 0.99),
            "slowest_1pct_mean_ms": statistics.fmean(t[part] for t in slowest),
        }
    return out


def _load_process(
    urls: list[str],
    service: str,
    agents: int,
    seconds: float,
    concurrency: int,
    paced: float,
    out: Any,
    max_polls: int = 0,
) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {1})
    if paced:
        waited = _run_delay("self")
        result = asyncio.run(_drive_paced(urls, service, agents, seconds, paced))
        result["load_run_queue_s"] = _run_delay("self") - waited
        out.put(result)
    else:
        out.put(asyncio.run(_drive(urls, service, agents, seconds, concurrency, max_polls)))


def _start_controller(
    db: str,
    source: Path | None,
    log: Path,
    wrapper: list[str] | None = None,
    server_timing: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    def pin() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})

    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            [
                *(wrapper or []),
                sys.executable,
                "-m",
                "otel_adaprof.cli",
                "controller",
                "--port",
                "0",
                "--db",
                db,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=pin,
            cwd=source,
            env={
                **os.environ,
                **({"PYTHONPATH": str(source)} if source else {}),
                # each poll's parts in a Server-Timing header (a tree without it ignores it)
                **({"ADAPROF_SERVER_TIMING": "1"} if server_timing else {}),
            },
        )
    deadline = time.monotonic() + (600 if wrapper else 20)
    while time.monotonic() < deadline:
        found = re.findall(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return proc, found[-1]
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"controller did not start:\n{log.read_text()}")


_BUCKET = re.compile(
    r'^adaprof_http_request_duration_seconds_bucket\{le="([^"]+)",route="/v1/agents/poll"\} (\S+)',
    re.M,
)


def _poll_buckets(url: str) -> dict[float, float]:
    """The controller's own poll-latency histogram (cumulative counts per bound)."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    return {float(le): float(n) for le, n in _BUCKET.findall(text)}


_GC_PAUSE = re.compile(
    r'^adaprof_gc_pause_seconds_bucket\{generation="(\d+)",le="([^"]+)"\} (\S+)', re.M
)


def _histograms(urls: list[str], pattern: re.Pattern[str]) -> dict[str, dict[float, float]]:
    """A labelled histogram of every replica's /metrics, added: {label: {bound: count}}."""
    total: dict[str, dict[float, float]] = {}
    for url in urls:
        text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        for label, le, n in pattern.findall(text):
            bounds = total.setdefault(label, {})
            bounds[float(le)] = bounds.get(float(le), 0.0) + float(n)
    return total


def _histogram_summary(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """Count over the measurement, and the bucket bound (ms) holding the longest one."""
    diff = {le: n - before.get(le, 0.0) for le, n in after.items()}
    count = diff.get(float("inf"), 0.0)
    longest = next((le for le in sorted(diff) if diff[le] >= count), float("inf"))
    return {"count": count, "longest_within_ms": longest * 1000 if count else 0.0}


def _server_p99(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """(share of polls the controller answered within 10 ms, bucket bound holding its p99)
    over the measurement, from the histogram the controller keeps (its handler's time:
    without the socket and the client)."""
    diff = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = diff.get(float("inf"), 0.0)
    if total <= 0:
        return 0.0, 0.0
    p99 = next((le for le in sorted(diff) if diff[le] >= 0.99 * total), float("inf"))
    return diff.get(0.01, 0.0) / total, p99 * 1000


def _first_polls(urls: list[str], service: str, agents: int) -> None:
    """Every agent's first poll (no window yet: version 0 -> 1), before the measurement."""
    from concurrent.futures import ThreadPoolExecutor

    def first(i: int) -> None:
        req = urllib.request.Request(
            f"{urls[i % len(urls)]}/v1/agents/poll",
            data=poll_body(service, f"agent-{i}", 0),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
        assert answer["config_version"] == 1, answer

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(first, range(agents)))


def _grow_profile(urls: list[str], service: str, stacks: int) -> None:
    """Before the measurement: windows from warm-up agents (not among the measured ones)
    carrying ``stacks`` distinct stacks in all, so the service's profile holds that many
    (a real service's profile has thousands; the measured windows keep 3 stacks)."""
    per_poll = 50
    for k in range(0, stacks, per_poll):
        instance = f"warm-{k // per_poll}"
        for version in (0, 1):
            body = json.loads(poll_body(service, instance, version))
            if version:
                body["stacks"] = {
                    "stacks": [
                        {
                            "stack": f"main (app.py:1);h_{i} (views.py:{i});leaf (lib.py:{i})",
                            "count": 1 + i % 7,
                        }
                        for i in range(k, min(k + per_poll, stacks))
                    ],
                    "total_samples": 0,
                    "depth": 64,
                }
                body["stacks"]["total_samples"] = sum(s["count"] for s in body["stacks"]["stacks"])
            req = urllib.request.Request(
                f"{urls[0]}/v1/agents/poll",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(req, timeout=60).read()


def _poll_buckets_all(urls: list[str]) -> dict[float, float]:
    """The poll-latency histograms of every replica, added."""
    total: dict[float, float] = {}
    for url in urls:
        for le, n in _poll_buckets(url).items():
            total[le] = total.get(le, 0.0) + n
    return total


def _cpu_all(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of several processes, added."""
    times = [_cpu_seconds(pid) for pid in pids]
    return sum(t[0] for t in times), sum(t[1] for t in times)


def _cpu_busy() -> dict[int, float]:
    """Busy seconds of each CPU since boot (/proc/stat: everything but idle and iowait)."""
    tick = os.sysconf("SC_CLK_TCK")
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields[:8]]
            busy[int(name[3:])] = (sum(values) - values[3] - values[4]) / tick
    return busy


def _run_delay(pid: int | str) -> float:
    """Seconds the threads of a process (alive now) have spent runnable but waiting for a
    CPU (the scheduler's run queue: /proc/PID/task/TID/schedstat, second field). On a
    shared machine this is the time other processes held the core."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class Databases:
    """Where each measurement's fresh database comes from: a SQLite file in a temporary
    folder, or a new database on a PostgreSQL server (temporary or given by URL)."""

    def __init__(self) -> None:
        self._server: Any = None  # tests.support.postgres.PostgresServer, when started here

    def fresh(self, kind: str, folder: Path) -> tuple[str, Callable[[], None]]:
        """A ``--db`` argument for a new empty database, and how to drop it."""
        if kind == "sqlite":
            return str(folder / "bench.db"), lambda: None
        import psycopg

        admin = kind
        if kind == "postgresql":
            admin = self._temporary_server().url()
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        url = admin.rsplit("/", 1)[0] + "/" + name

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

        return url, drop

    def _temporary_server(self) -> Any:
        if self._server is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.support.postgres import PostgresServer

            self._server = PostgresServer().start()
        return self._server

    def server_pids(self) -> list[int]:
        """Processes of the temporary server (postmaster and its backends)."""
        if self._server is None:
            return []
        try:
            root = int((self._server.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        pids = [root]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == root:
                pids.append(int(stat.parent.name))
        return pids

    def close(self) -> None:
        if self._server is not None:
            self._server.remove()
            self._server = None


def run(
    agents: int,
    mode: str,
    seconds: float,
    concurrency: int,
    paced: float = 0.0,
    source: Path | None = None,
    label: str = "this tree",
    db: str = "sqlite",
    replicas: int = 1,
    databases: Databases | None = None,
    profile_stacks: int = 0,
    server_timing: bool = False,
) -> dict[str, Any]:
    """One measurement on fresh controllers (of ``source``, default this tree) and a
    fresh database; ``paced`` > 0 makes every agent poll once per ``paced`` seconds;
    ``replicas`` controllers share the database, polls go to them in turn;
    ``server_timing``: the controllers send each poll's parts (a paced run breaks its
    latency down, see :func:`breakdown`)."""
    databases = databases or Databases()
    with tempfile.TemporaryDirectory() as tmp:
        db_arg, drop = databases.fresh(db, Path(tmp))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            urls = []
            for k in range(replicas):
                proc, url = _start_controller(
                    db_arg, source, Path(tmp) / f"controller-{k}.log", None, server_timing
                )
                procs.append(proc)
                urls.append(url)
            service = "bench"
            if mode == "adaptive":
                req = urllib.request.Request(
                    f"{urls[0]}/v1/sessions",
                    method="POST",
                    data=json.dumps(
                        {"service": service, "mode": "adaptive", "duration_s": 3600}
                    ).encode(),
                )
                urllib.request.urlopen(req, timeout=10).read()
                if replicas > 1:
                    time.sleep(1.5)  # every replica sees the session (1 s cache), one owns it
            _first_polls(urls, service, agents)
            if profile_stacks:
                _grow_profile(urls, service, profile_stacks)
            server = databases.server_pids() if db != "sqlite" else []
            cpu_before = _cpu_all([p.pid for p in procs])
            db_cpu_before = sum(sum(_cpu_seconds(pid)) for pid in server)
            buckets_before = _poll_buckets_all(urls)
            pauses_before = _histograms(urls, _GC_PAUSE)
            load_average = os.getloadavg()[0]
            waited = sum(_run_delay(p.pid) for p in procs)
            busy_before, wall_before = _cpu_busy(), time.monotonic()
            queue: Any = mp.get_context("spawn").Queue()
            load = mp.get_context("spawn").Process(
                target=_load_process,
                args=(urls, service, agents, seconds, concurrency, paced, queue),
            )
            load.start()
            result: dict[str, Any] = queue.get(timeout=seconds + 120)
            user, system = (
                a - b for a, b in zip(_cpu_all([p.pid for p in procs]), cpu_before, strict=True)
            )
            cpu = user + system
            result["system_cpu_share"] = system / cpu if cpu > 0 else 0.0
            within, server_p99 = _server_p99(buckets_before, _poll_buckets_all(urls))
            result["server_within_10ms"] = within
            result["server_p99_bucket_ms"] = server_p99
            result["load_average"] = load_average
            result["run_queue_s"] = sum(_run_delay(p.pid) for p in procs) - waited
            wall = time.monotonic() - wall_before
            result["cpu_busy_share"] = {
                f"cpu{core}": (busy - busy_before.get(core, 0.0)) / wall
                for core, busy in _cpu_busy().items()
            }
            result["measured_wall_s"] = wall
            pauses = _histograms(urls, _GC_PAUSE)
            if pauses:  # a tree that times its GC pauses (seconds -> ms)
                result["gc_pauses"] = {
                    f"gen {g}": _histogram_summary(pauses_before.get(g, {}), pauses[g])
                    for g in sorted(pauses)
                }
            server_after = databases.server_pids() if db != "sqlite" else []
            db_cpu = sum(sum(_cpu_seconds(pid)) for pid in server_after) - db_cpu_before
            load.join(timeout=10)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            drop()
    # CPU the controllers used during the measurement (the agents' first polls were made
    # before it). On a shared machine this is the steadier figure: polls one core serves
    # = 1 / cpu_s_per_poll.
    polls = result["requests"] + result["errors"]
    result["cpu_ms_per_poll"] = cpu / polls * 1000 if polls else 0.0
    result["polls_per_cpu_s"] = polls / cpu if cpu > 0 else 0.0
    # time the controller's threads were ready to run but another thread held its core
    result["run_queue_ms_per_poll"] = result["run_queue_s"] / polls * 1000 if polls else 0.0
    # of CPU 0 (the controllers' core), the share other processes used meanwhile
    shares = result["cpu_busy_share"]
    own = cpu / result["measured_wall_s"]
    result["cpu0_others_share"] = max(0.0, shares.get("cpu0", 0.0) - own)
    # backends that ended during the run are not counted: a lower bound
    result["db_cpu_ms_per_poll"] = db_cpu / polls * 1000 if polls and server else None
    load_shape = f"every {paced:g} s" if paced else f"{concurrency} in flight"
    return {
        "controller": label,
        "db": "sqlite" if db == "sqlite" else "postgresql",
        "replicas": replicas,
        "agents": agents,
        "mode": mode,
        "load": load_shape,
        "concurrency": concurrency,
        "profile_stacks": profile_stacks,
        **result,
    }


def _callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _callgrind_total(folder: Path, pid: int) -> int:
    """Instructions (Ir) in the newest dump callgrind wrote for ``pid``."""
    dumps = sorted(folder.glob(f"callgrind.{pid}.*"), key=lambda f: f.stat().st_mtime)
    for dump in reversed(dumps):
        found = re.search(r"^(?:totals|summary): (\d+)", dump.read_text(errors="replace"), re.M)
        if found:
            return int(found.group(1))
    raise RuntimeError(f"no callgrind dump for {pid} in {folder}")


def run_callgrind(
    agents: int,
    mode: str,
    polls: int,
    concurrency: int,
    source: Path | None = None,
    label: str = "this tree",
    keep: Path | None = None,
) -> dict[str, Any]:
    """Instructions the controller executes per poll, counted by ``valgrind
    --tool=callgrind`` (every thread, user space; the kernel's share, e.g. fsync and
    sockets, is not counted). Unlike times, the count does not depend on what else the
    machine runs. The controller starts uninstrumented; counting covers exactly
    ``polls`` polls of the closed loop after every agent's first poll. ``keep``: a folder
    to copy the dump to (read it with ``callgrind_annotate``)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={folder}/callgrind.%p",
        ]
        proc, url = _start_controller(
            str(folder / "bench.db"), source, folder / "controller.log", wrapper
        )
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
                urllib.request.urlopen(req, timeout=60).read()
            _first_polls([url], service, agents)
            _callgrind_control(proc.pid, "--instr=on")
            _callgrind_control(proc.pid, "--zero")
            queue: Any = mp.get_context("spawn").Queue()
            load = mp.get_context("spawn").Process(
                target=_load_process,
                args=([url], service, agents, 3600.0, concurrency, 0.0, queue, polls),
            )
            load.start()
            result: dict[str, Any] = queue.get(timeout=3600)
            load.join(timeout=10)
            _callgrind_control(proc.pid, "--dump")
            instructions = _callgrind_total(folder, proc.pid)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for dump in folder.glob(f"callgrind.{proc.pid}.*"):
                    shutil.copy(dump, keep / f"{label.replace(' ', '_')}-{mode}-{dump.name}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    answered = result["requests"] + result["errors"]
    return {
        "controller": label,
        "agents": agents,
        "mode": mode,
        "load": f"{concurrency} in flight",
        "polls": answered,
        "errors": result["errors"],
        "instructions": instructions,
        "instructions_per_poll": instructions / answered if answered else 0.0,
    }


def callgrind_table(rows: list[dict[str, Any]]) -> str:
    """The instruction counts as a markdown table."""
    lines = [
        "| controller | agents | mode | load | polls counted | errors | instructions per poll |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['controller']} | {r['agents']} | {r['mode']} | {r['load']} | {r['polls']} "
            f"| {r['errors']} | {r['instructions_per_poll'] / 1e6:.2f} M |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    """The results as a markdown table."""
    lines = [
        "| controller | db | replicas | agents | mode | load | requests | req/s | p50 ms "
        "| p99 ms | errors | CPU ms/poll | polls per CPU-s | db CPU ms/poll "
        "| controller's p99 | answered in 10 ms |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        db_cpu = r.get("db_cpu_ms_per_poll")
        lines.append(
            f"| {r['controller']} | {r['db']} | {r['replicas']} | {r['agents']} | {r['mode']} "
            f"| {r['load']} | {r['requests']} | {r['rps']:.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['errors']} | {r['cpu_ms_per_poll']:.2f} "
            f"| {r['polls_per_cpu_s']:.0f} | {'' if db_cpu is None else f'{db_cpu:.2f}'} "
            f"| ≤ {r['server_p99_bucket_ms']:g} ms | {r['server_within_10ms'] * 100:.1f} % |"
        )
    return "\n".join(lines)


PART_NAMES = {
    "before": "before the handler (client send, socket, controller's event loop)",
    "parse": "parse",
    "read": "database read / model load",
    "credit": "credit (reward, bandit learns)",
    "decide": "decide (policy)",
    "queue": "group-commit queue",
    "write": "write the batch's rows",
    "commit": "COMMIT (WAL append + fsync)",
    "resume": "event loop resumes the poll",
    "answer": "answer JSON",
    "after": "after the handler (response write, socket, client read)",
    "handler": "the controller's handler (parse to answer)",
    "client": "client latency (before + handler + after)",
}


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    """Where each paced row's time went (rows whose controller sent Server-Timing)."""
    timed = [r for r in rows if r.get("breakdown")]
    if not timed:
        return ""
    names, seen = [], {}  # a setup measured more than once: its runs numbered
    for r in timed:
        seen[r["controller"]] = seen.get(r["controller"], 0) + 1
        names.append(f"{r['controller']} (run {seen[r['controller']]})")
    if all(n == 1 for n in seen.values()):
        names = [r["controller"] for r in timed]
    head = "| part | " + " | ".join(f"{n} p50 ms | p99 ms | mean of slowest 1 % ms" for n in names)
    lines = [head + " |", "|---|" + "---:|---:|---:|" * len(timed)]
    for part, name in PART_NAMES.items():
        cells = []
        for r in timed:
            b = r["breakdown"][part]
            cells.append(f"{b['p50_ms']:.2f} | {b['p99_ms']:.2f} | {b['slowest_1pct_mean_ms']:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, r in zip(names, timed, strict=True):
        pauses = r.get("gc_pauses") or {}
        text = ", ".join(
            f"{g}: {int(p['count'])} (longest ≤ {p['longest_within_ms']:g} ms)"
            for g, p in pauses.items()
        )
        lines.append("")
        lines.append(
            f"{name}: p99 {r['p99_ms']:.2f} ms; load average {r.get('load_average', 0):.2f} "
            f"at the start; CPU 0 (the controller's) busy "
            f"{r['cpu_busy_share'].get('cpu0', 0) * 100:.0f} %, other processes "
            f"{r['cpu0_others_share'] * 100:.0f} % of it; CPU 1 (the load's) busy "
            f"{r['cpu_busy_share'].get('cpu1', 0) * 100:.0f} %; the controller's threads were "
            f"runnable but waiting for CPU 0 {r['run_queue_s'] * 1000:.0f} ms "
            f"({r['run_queue_ms_per_poll']:.2f} ms per poll), the load process's threads "
            f"{r.get('load_run_queue_s', 0) * 1000:.0f} ms; load process sent late p99 "
            f"{r.get('sent_late_p99_ms', 0):.2f} ms; GC pauses: {text or 'not reported'}"
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
    parser.add_argument(
        "--db",
        nargs="+",
        default=["sqlite"],
        metavar="DB",
        help="sqlite, postgresql (a temporary server) or a postgresql:// URL; several "
        "are measured in turn",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1],
        help="controller replicas sharing the database (more than 1: PostgreSQL only)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every setup this many times, interleaved, and report the medians "
        "(a shared machine's load then falls on every setup alike)",
    )
    parser.add_argument(
        "--profile-stacks",
        type=int,
        default=0,
        metavar="N",
        help="before measuring, grow the service's profile to N distinct stacks (warm-up "
        "agents' windows; the controller keeps at most 5000)",
    )
    parser.add_argument(
        "--callgrind",
        type=int,
        default=0,
        metavar="POLLS",
        help="instead of timing, count the instructions the controller runs per poll "
        "under valgrind's callgrind, over POLLS polls of the closed loop (SQLite)",
    )
    parser.add_argument(
        "--callgrind-keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --callgrind: keep the callgrind dumps in DIR (for callgrind_annotate)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="with --paced: the controller sends each poll's parts (Server-Timing) and "
        "the bench prints where the time went, p50/p99 and in the slowest 1 %%",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--runs-json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write every run's figures (before any median) to FILE as JSON",
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.repeat > 20:
        parser.error("--repeat must be in [1, 20]")
    for db in args.db:
        if db not in ("sqlite", "postgresql") and not db.startswith("postgresql://"):
            parser.error(f"--db {db}: expected sqlite, postgresql or a postgresql:// URL")
    if any(n < 1 or n > 8 for n in args.replicas):
        parser.error("--replicas must be in [1, 8]")
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    if any(n < 1 or n > 100_000 for n in args.agents):
        parser.error("--agents must be in [1, 100000]")
    if args.concurrency < 1 or args.paced < 0:
        parser.error("--concurrency must be >= 1 and --paced >= 0")
    if args.profile_stacks < 0 or args.profile_stacks > 100_000:
        parser.error("--profile-stacks must be in [0, 100000]")
    if args.paced < 0 or args.paced > 300:
        parser.error("--paced must be in [0, 300]")
    if args.breakdown and not args.paced:
        parser.error("--breakdown needs --paced (it breaks a paced poll's latency down)")
    if args.baseline is not None and not (args.baseline / "otel_adaprof").is_dir():
        parser.error(f"--baseline {args.baseline}: no otel_adaprof package in it")
    trees: list[tuple[Path | None, str]] = [(None, args.label)]
    if args.baseline is not None:
        trees.insert(0, (args.baseline.resolve(), args.baseline_label))
    if args.callgrind:
        if args.callgrind < 10 or args.callgrind > 100_000:
            parser.error("--callgrind must be in [10, 100000]")
        counted = [
            run_callgrind(
                agents, mode, args.callgrind, args.concurrency, source, label, args.callgrind_keep
            )
            for agents in args.agents
            for mode in args.modes
            for source, label in trees
        ]
        print(json.dumps(counted, indent=2) if args.json else callgrind_table(counted))
        return
    setups = [
        (db, n)
        for db in args.db
        for n in args.replicas
        if n == 1 or db != "sqlite"  # one SQLite file has one controller
    ]
    rows = []
    databases = Databases()
    try:
        for agents in args.agents:
            for mode in args.modes:
                for db, replicas, source, label in [
                    (db, n, source, label)
                    for _ in range(args.repeat)  # interleaved: every setup sees the same load
                    for db, n in setups
                    for source, label in trees
                ]:
                    if source is not None and db != "sqlite":
                        continue  # the baseline tree may not know PostgreSQL
                    rows.append(
                        run(
                            agents,
                            mode,
                            args.seconds,
                            args.concurrency,
                            args.paced,
                            source,
                            label,
                            db,
                            replicas,
                            databases,
                            args.profile_stacks,
                            args.breakdown,
                        )
                    )
                    if not args.json:
                        r = rows[-1]
                        print(
                            f"  {label}, {r['db']} x{replicas}: {agents} agents, {mode}, "
                            f"{r['load']}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms",
                            file=sys.stderr,
                        )
    finally:
        databases.close()
    runs = rows
    if args.runs_json is not None:
        args.runs_json.write_text(json.dumps(runs, indent=2) + "\n")
    if args.repeat > 1:
        rows = medians(rows)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    if args.breakdown and not args.json:
        print()
        print(breakdown_table(runs))  # every run (a median of parts would not add up)


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setup: the median of each figure over its repeats (``runs`` = how many)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (r["controller"], r["db"], r["replicas"], r["agents"], r["mode"], r["load"])
        groups.setdefault(key, []).append(r)
    out = []
    for group in groups.values():
        row = dict(group[0])
        for field, value in group[0].items():
            if isinstance(value, (int, float)) and field not in ("replicas", "agents"):
                values = [g[field] for g in group if g.get(field) is not None]
                middle = statistics.median(values) if values else None
                is_count = isinstance(value, int) and not isinstance(value, bool)
                row[field] = round(middle) if is_count and middle is not None else middle
        row["runs"] = len(group)
        out.append(row)
    return out


if __name__ == "__main__":
    main()
