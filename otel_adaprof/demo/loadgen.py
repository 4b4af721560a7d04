"""Open-loop load generator for the demo service, driving its phases.

Requests are sent at fixed times (``1/rate`` apart; with ``arrivals="poisson"``, at
exponentially distributed gaps of the same mean, from a seeded generator so every
configuration of a benchmark gets the same times) whatever the service's latency —
open loop, so a slow service shows up as latency, not as a lower request rate. At
most ``max_in_flight`` requests are outstanding; a request due when that many are
outstanding is dropped and counted, so the generator itself stays bounded. It talks
to loopback addresses only. At each phase start it sets the service's hot-path switch.

Every request carries a request id in the :data:`REQUEST_ID_HEADER` header and is
recorded (:class:`RequestRecord`: id, phase, send time, client latency, outcome), so a
benchmark can judge coverage over *every request sent*, not only over the spans that
reached a sink: the service's OpenTelemetry WSGI middleware records the header on its
server span when ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` names it
(:data:`CAPTURE_ENV`), and a request whose trace was dropped simply has no span. (An id
in a ``traceparent`` header would do the same, but the service's parent-based sampler
would then follow the caller's sampled flag instead of its own trace ratio.)

Usage::

    >>> from otel_adaprof.demo.loadgen import LoadGenerator
    >>> from otel_adaprof.demo.phases import schedule
    >>> gen = LoadGenerator(port=8000, phases=schedule(60.0))   # doctest: +SKIP
    >>> result = gen.run()                                       # doctest: +SKIP
    >>> result.per_phase["steady"].p99_ms                        # doctest: +SKIP

or ``python -m otel_adaprof.demo.loadgen --port 8000 --duration 60 [--json]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from otel_adaprof.demo.phases import ENDPOINTS, Endpoint, Phase, phase_at, schedule

#: Hosts the generator will send to.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Most outstanding requests.
DEFAULT_MAX_IN_FLIGHT = 32
#: Per-request timeout (s).
REQUEST_TIMEOUT_S = 10.0
#: Header carrying each request's id.
REQUEST_ID_HEADER = "X-Adaprof-Request"
#: Environment a service needs so its server spans record :data:`REQUEST_ID_HEADER`.
CAPTURE_ENV = {"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": REQUEST_ID_HEADER}
#: How requests are spaced: ``uniform`` (``1/rate`` apart, the benchmark's load) or
#: ``poisson`` (exponential gaps of the same mean, as independent clients send them).
ARRIVALS = ("uniform", "poisson")
#: Span attribute the WSGI middleware records the header under.
REQUEST_ID_ATTRIBUTE = "http.request.header." + REQUEST_ID_HEADER.lower().replace("-", "_")


def endpoint_cycle(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> list[str]:
    """The deterministic request mix: endpoint paths repeated by weight (in units of
    the weights' greatest common divisor, to a thousandth).

    >>> endpoint_cycle()
    ['/catalog', '/catalog', '/price', '/price', '/checkout']
    >>> from otel_adaprof.demo.phases import SHAPES
    >>> endpoint_cycle(SHAPES["ledger"].endpoints).count("/checkout")
    1
    """
    milli = [round(ep.weight * 1000) for ep in endpoints]
    unit = math.gcd(*milli)
    return [ep.path for ep, m in zip(endpoints, milli, strict=True) for _ in range(m // unit)]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``; 0.0 when empty.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.0
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class PhaseStats:
    """What happened to the requests of one phase."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float:
        """Median latency of completed requests."""
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        """99th percentile latency of completed requests."""
        return percentile(self.latencies_ms, 99)

    def summary(self) -> dict[str, float | int]:
        """JSON-ready figures (without the raw latencies)."""
        data = asdict(self)
        data.pop("latencies_ms")
        data["p50_ms"] = round(self.p50_ms, 3)
        data["p99_ms"] = round(self.p99_ms, 3)
        return data


@dataclass(frozen=True)
class RequestRecord:
    """One request sent: its id, phase, send time (unix), client latency and outcome."""

    request_id: str
    phase: str
    sent_unix: float
    latency_ms: float
    ok: bool


@dataclass
class LoadResult:
    """Per-phase stats of a run, when each phase really started (unix time), and every
    request sent."""

    per_phase: dict[str, PhaseStats]
    phase_started_at: dict[str, float]
    requests: list[RequestRecord] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "phases": {name: s.summary() for name, s in self.per_phase.items()},
            "phase_started_at": self.phase_started_at,
        }


class LoadGenerator:
    """Sends the demo's request mix to ``host:port`` following ``phases``."""

    def __init__(
        self,
        port: int,
        phases: list[Phase],
        host: str = "127.0.0.1",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        on_phase: Callable[[Phase], None] | None = None,
        arrivals: str = "uniform",
        seed: int = 0,
    ) -> None:
        if arrivals not in ARRIVALS:
            raise ValueError(f"arrivals: {arrivals!r} is not one of {', '.join(ARRIVALS)}")
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"host {host!r}: the load generator only targets loopback addresses")
        if not phases:
            raise ValueError("phases: at least one phase is needed")
        if not 1 <= max_in_flight <= 1024:
            raise ValueError(f"max_in_flight: {max_in_flight} is outside [1, 1024]")
        self.host, self.port, self.phases = host, port, phases
        self.max_in_flight = max_in_flight
        self.on_phase = on_phase
        self.arrivals = arrivals
        self._rng = random.Random(seed)
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.in_flight_peak = 0
        self._in_flight = 0
        self._records: list[RequestRecord] = []
        self._run_id = f"{int(time.time() * 1000) % 10**9:x}"

    def gap_s(self, rate_rps: float) -> float:
        """Seconds from one request to the next at ``rate_rps`` (see :data:`ARRIVALS`).

        >>> gen = LoadGenerator(8000, schedule(10.0), arrivals="poisson", seed=1)
        >>> gaps = [gen.gap_s(10.0) for _ in range(4000)]
        >>> round(sum(gaps) / len(gaps), 2), len(set(gaps)) == len(gaps)
        (0.1, True)
        >>> LoadGenerator(8000, schedule(10.0)).gap_s(10.0)
        0.1
        """
        if self.arrivals == "poisson":
            return self._rng.expovariate(rate_rps)
        return 1.0 / rate_rps

    def stop(self) -> None:
        """Ask :meth:`run` to stop at the next request slot."""
        self._stop.set()

    def _request(self, method: str, path: str, request_id: str | None = None) -> int:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            headers = {REQUEST_ID_HEADER: request_id} if request_id else {}
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def set_hot_path(self, on: bool, attempts: int = 3) -> None:
        """Flip the service's hot-path switch (raises if the service does not answer)."""
        for attempt in range(attempts):
            try:
                status = self._request("POST", f"/control/hot-path?on={1 if on else 0}")
            except OSError:
                if attempt + 1 == attempts:
                    raise
                continue
            if status != 200:
                raise RuntimeError(f"hot-path switch answered HTTP {status}")
            return

    def _send(self, path: str, stats: PhaseStats, request_id: str, phase: str) -> None:
        sent = time.time()
        start = time.perf_counter()
        try:
            status = self._request("GET", path, request_id)
            ok = status == 200
        except OSError:
            ok = False
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        with self._lock:
            self._in_flight -= 1
            self._records.append(RequestRecord(request_id, phase, sent, elapsed_ms, ok))
            if ok:
                stats.ok += 1
                stats.latencies_ms.append(elapsed_ms)
            else:
                stats.errors += 1
        self._slots.release()

    def run(self) -> LoadResult:
        """Drive every phase to its end (or until :meth:`stop`); return the stats."""
        stats = {p.name: PhaseStats() for p in self.phases}
        started: dict[str, float] = {}
        cycle = endpoint_cycle()
        end_s = self.phases[-1].end_s
        t0 = time.monotonic()
        next_at = 0.0
        i = 0
        current: Phase | None = None
        with ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="load") as pool:
            while not self._stop.is_set() and next_at < end_s:
                phase = phase_at(self.phases, next_at)
                if phase is not current:
                    current = phase
                    started[phase.name] = time.time()
                    self.set_hot_path(phase.hot_path)
                    if self.on_phase is not None:
                        self.on_phase(phase)
                delay = t0 + next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                st = stats[phase.name]
                st.sent += 1
                if self._slots.acquire(blocking=False):
                    with self._lock:
                        self._in_flight += 1
                        self.in_flight_peak = max(self.in_flight_peak, self._in_flight)
                    rid = f"{self._run_id}-{i}"
                    pool.submit(self._send, cycle[i % len(cycle)], st, rid, phase.name)
                else:
                    st.dropped += 1
                i += 1
                next_at += self.gap_s(phase.rate_rps)
        with self._lock:
            records = sorted(self._records, key=lambda r: r.sent_unix)
        return LoadResult(stats, started, records)


def main(argv: list[str] | None = None) -> None:
    """``python -m otel_adaprof.demo.loadgen --port P [--duration S] [--rate R] [--loop]``."""
    parser = argparse.ArgumentParser(description="Open-loop load for the demo service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--rate", type=float, default=20.0, help="base requests per second")
    parser.add_argument("--loop", action="store_true", help="repeat the phases until killed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    while True:
        _wait_ready(args.host, args.port)
        gen = LoadGenerator(args.port, schedule(args.duration, args.rate), host=args.host)
        result = gen.run()
        if args.json:
            print(json.dumps(result.summary()), flush=True)
        else:
            for name, st in result.per_phase.items():
                print(name, st.summary(), flush=True)
        if not args.loop:
            break


def _wait_ready(host: str, port: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2.0)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


if __name__ == "__main__":
    main()
