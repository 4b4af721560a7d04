"""The load generator: open loop at a fixed rate, bounded, loopback only, drives phases."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from otel_adaprof.demo.loadgen import (
    CAPTURE_ENV,
    REQUEST_ID_ATTRIBUTE,
    REQUEST_ID_HEADER,
    LoadGenerator,
    endpoint_cycle,
    percentile,
)
from otel_adaprof.demo.phases import Phase, schedule


def test_refuses_non_loopback_targets_and_bad_bounds():
    with pytest.raises(ValueError, match="loopback"):
        LoadGenerator(80, schedule(10.0), host="10.0.0.1")
    with pytest.raises(ValueError, match="max_in_flight"):
        LoadGenerator(80, schedule(10.0), max_in_flight=0)
    with pytest.raises(ValueError, match="arrivals: 'bursty' is not one of uniform, poisson"):
        LoadGenerator(80, schedule(10.0), arrivals="bursty")


def test_mix_and_percentiles():
    assert endpoint_cycle().count("/checkout") == 1 and len(endpoint_cycle()) == 5
    assert percentile([5.0] * 99 + [100.0], 99) == 5.0
    assert percentile(list(map(float, range(1, 101))), 99) == 99.0


def _hot_state(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/control/hot-path")
    return conn.getresponse().read().decode().strip()


def test_open_loop_rate_and_phase_switches_on_the_real_service(demo_service):
    port, _pid = demo_service
    seen: list[tuple[str, str]] = []
    phases = schedule(4.0, base_rate_rps=25.0)
    gen = LoadGenerator(port, phases, on_phase=lambda p: seen.append((p.name, _hot_state(port))))
    t0 = time.monotonic()
    result = gen.run()
    elapsed = time.monotonic() - t0
    assert 3.8 < elapsed < 6.0
    assert seen == [("steady", "off"), ("hot_path", "on"), ("load_change", "on"),
                    ("hot_path_gone", "off")]  # fmt: skip
    for phase in phases:
        stats = result.per_phase[phase.name]
        assert stats.sent == pytest.approx(phase.rate_rps * phase.duration_s, abs=1.5)
        assert stats.errors == 0 and stats.dropped == 0 and stats.ok == stats.sent
        assert 0 < stats.p50_ms <= stats.p99_ms
    assert result.per_phase["load_change"].sent > 1.7 * result.per_phase["hot_path"].sent


class _Slow(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.startswith("/control"):
            time.sleep(1.0)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    do_POST = do_GET


def test_a_slow_service_gets_drops_not_an_unbounded_pile_of_requests():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gen = LoadGenerator(server.server_address[1], [Phase("p", 0.0, 1.0, 40.0, False)],
                            max_in_flight=3)  # fmt: skip
        t0 = time.monotonic()
        stats = gen.run().per_phase["p"]
        # Open loop: the schedule did not wait for the slow answers.
        assert time.monotonic() - t0 < 3.0
        assert gen.in_flight_peak == 3
        assert stats.sent == 40 and stats.dropped >= 30 and stats.ok == 3
    finally:
        server.shutdown()
        server.server_close()


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        _Recorder.seen.append(self.headers.get(REQUEST_ID_HEADER))
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    do_POST = do_GET


@contextlib.contextmanager
def _recorder() -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 recording each request's id header; its port."""
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_every_request_sent_carries_an_id_and_is_recorded():
    with _recorder() as port:
        result = LoadGenerator(port, [Phase("p", 0.0, 1.0, 30.0, False)]).run()
    sent = result.per_phase["p"].sent
    ids = [r.request_id for r in result.requests]
    assert len(ids) == sent and sent in (30, 31) and len(set(ids)) == sent  # one per request
    assert all(r.phase == "p" and r.ok and r.latency_ms > 0 for r in result.requests)
    # the service saw each id in the header (the control call to the hot-path switch has none)
    assert sorted(i for i in _Recorder.seen if i) == sorted(ids)
    assert REQUEST_ID_ATTRIBUTE == "http.request.header.x_adaprof_request"
    assert (
        CAPTURE_ENV["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"]
        == "X-Adaprof-Request"
    )


def test_poisson_arrivals_keep_the_rate_at_random_gaps_the_same_for_every_seeded_run():
    with _recorder() as port:
        runs = [
            LoadGenerator(port, [Phase("p", 0.0, 2.0, 50.0, False)], arrivals="poisson", seed=7)
            for _ in range(2)
        ]
        results = [gen.run() for gen in runs]
    sent = [r.per_phase["p"].sent for r in results]
    # 100 expected (Poisson: sd 10), the same count from the same seed
    assert 60 <= sent[0] <= 140 and sent[0] == sent[1], sent
    times = [r.sent_unix for r in results[0].requests]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    # exponential gaps: the shortest tenth well under the mean (20 ms), the longest over it
    assert gaps[len(gaps) // 10] < 0.008 and gaps[-len(gaps) // 10] > 0.035, gaps
