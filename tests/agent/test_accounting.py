"""Honest accounting, on a real service process with real py-spy, polling over real HTTP.

A recording controller on 127.0.0.1 answers each poll with params of its choosing and
keeps every report the agent sends (decoded with the real protocol):

* a params change: the next window's report holds only the samples, the CPU and the
  rates of the new version (not the tail of the old version's py-spy run);
* CPU burnt on purpose inside the agent's own threads (clock beacon, poller, the
  profiler's parsing) shows in ``profiler_cpu_breakdown`` and in
  ``profiler_cpu_seconds``, which is its sum.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest, PollResponse, decode_poll_request, encode

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
pytestmark = pytest.mark.skipif(not Path(PY_SPY).exists(), reason="needs the py-spy binary")

SERVICE = r"""
import sys, threading, time
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import otel_adaprof
from otel_adaprof.instrumentation.settings import AgentSettings

BURN = sys.argv[2] == "burn"
SATURATE = sys.argv[2] == "saturate"
if SATURATE:  # py-spy (a child: it inherits this) and the service on one core
    import os
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

def spin(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass

def hot_loop():
    while True:
        sum(i * i for i in range(500))

if BURN:  # known CPU inside the agent's own threads
    from otel_adaprof.instrumentation.control import poller
    from otel_adaprof.instrumentation.profiler import clock_beacon, supervisor
    note = clock_beacon.ClockBeacon.note  # a move's notes (cpu mode: on the fast loop's thread)
    def slow_note(self):
        spin(0.005)  # 5 ms per move (a move every 20 ms at 100 Hz): up to 0.2 of a core
        note(self)
    clock_beacon.ClockBeacon.note = slow_note
    report = poller.Poller._report
    def slow_report(self, first):
        spin(0.1)
        return report(self, first)
    poller.Poller._report = slow_report
    parse = supervisor.parse_chrometrace
    def slow_parse(*a, **k):
        spin(0.05)
        return parse(*a, **k)
    supervisor.parse_chrometrace = slow_parse

def deep(n):  # waits 40 frames deep: py-spy in wall mode reads them all at every sample
    return deep(n - 1) if n else threading.Event().wait()

if SATURATE:
    for _ in range(32):
        threading.Thread(target=deep, args=(40,), daemon=True).start()
else:
    threading.Thread(target=hot_loop, daemon=True).start()
otel_adaprof.configure(
    service_name="accounting", exporter=InMemorySpanExporter(),
    settings=AgentSettings(profiler="py-spy", controller_url=sys.argv[1], window_s=1.0,
                           segment_s=10 if SATURATE else 2),
)
print("ready", flush=True)
time.sleep(120)
"""


class Recorder:
    """A controller stand-in on 127.0.0.1: answers with ``answer(n)``, keeps every report."""

    def __init__(self) -> None:
        self.reports: list[PollRequest] = []
        self.version = 1
        self.params = Params(sampling_interval_ms=10, profile_mode="wall")
        self.poll_interval_s = 1.0
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.reports.append(decode_poll_request(body))
                answer = encode(
                    PollResponse(
                        config_version=recorder.version,
                        params=recorder.params,
                        poll_interval_s=recorder.poll_interval_s,
                    )
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def windows(self, version: int) -> list[PollRequest]:
        return [r for r in self.reports if r.window is not None and r.config_version == version]

    def wait_windows(
        self, version: int, count: int, timeout: float = 20.0, where=lambda r: True
    ) -> list[PollRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in self.windows(version) if where(r)]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"{count} windows of v{version}: got {self.windows(version)}")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    try:
        yield rec
    finally:
        rec.server.shutdown()


def _service(tmp_path: Path, url: str, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, mode],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_a_params_change_reports_only_the_new_versions_samples_and_cpu(tmp_path, recorder):
    proc = _service(tmp_path, recorder.url, "plain")
    try:
        # 1 s windows, 2 s py-spy segments: a window holds the samples of the segments
        # that ended in it, and says when samples are still in flight
        ons = recorder.wait_windows(1, 3)
        assert sum(r.stacks.total_samples for r in ons if r.stacks) > 50, ons
        on = ons[-1]
        assert on.window is not None and on.window.profiler_cpu_breakdown.get("pyspy", 0) > 0
        assert on.window.requested_rate_hz == 100
        assert any(r.window and r.window.samples_pending_since for r in ons), ons

        # v2: profiling off. Its windows hold nothing of v1's py-spy runs: the run is cut
        # and its samples (and the CPU it spent after v1's report) come as v1's late part.
        recorder.version, recorder.params = 2, Params(sampling_interval_ms=0)
        off = recorder.wait_windows(2, 2)
        for report in off:
            assert report.stacks is not None and report.stacks.total_samples == 0, report.stacks
            assert report.window is not None
            assert report.window.samples_per_s == 0
            assert report.window.profiler_cpu_breakdown.get("pyspy", 0.0) == 0.0, report.window
            assert report.window.requested_rate_hz == 0
            assert report.window.samples_pending_since is None
            assert all(late.config_version == 1 for late in report.late_stacks), report
        # the cut run's CPU comes as v1's late part (with its samples, when it had taken
        # any: cut just after a segment began, under a loaded CI pass, it had none, 0
        # samples and 0.016 CPU-s; above, no v2 window holds any of v1's samples)
        late = off[0].late_stacks
        assert late and late[0].profiler_cpu_seconds > 0, off[0]

        # v3: on again (cpu mode): its windows get its samples as its segments end
        recorder.version, recorder.params = 3, Params(sampling_interval_ms=10)
        first = recorder.wait_windows(3, 1)[0]
        assert first.window is not None and first.window.requested_rate_hz == 100
        # py-spy's CPU is read while it runs (in clock ticks): in v3's windows, not v2's
        recorder.wait_windows(
            3, 1, where=lambda r: r.window.profiler_cpu_breakdown.get("pyspy", 0) > 0
        )
        with_samples = recorder.wait_windows(3, 1, where=lambda r: r.stacks.total_samples > 0)
        assert with_samples[0].stacks is not None
    finally:
        _stop(proc)


def test_cpu_burnt_in_every_agent_thread_is_reported(tmp_path, recorder):
    recorder.params = Params(sampling_interval_ms=10, profile_mode="cpu")
    proc = _service(tmp_path, recorder.url, "burn")
    try:
        # 5 windows after the first: py-spy runs as long as the params allow, so a few
        # windows see one parse (3 windows summed 0.06 s of parse in a clean-clone CI run)
        windows = recorder.wait_windows(1, 6, timeout=60.0)[1:]
    finally:
        _stop(proc)
    for report in windows:
        w = report.window
        assert w is not None
        parts = w.profiler_cpu_breakdown
        assert abs(sum(parts.values()) - w.profiler_cpu_seconds) < 1e-3, w
        # 0.1 s in the poller per poll; 5 ms per beacon move; 50 ms per parse. The
        # beacon moves less often while a hot thread holds the GIL: >= 0.04 of a core
        # (unburnt it uses ~0.005)
        assert parts.get("poller", 0) >= 0.09, parts
        assert parts.get("beacon", 0) >= 0.04 * w.window_seconds, parts
    # py-spy's CPU is read in clock ticks (10 ms) while it runs: at 100 Hz in cpu mode it
    # uses about 1.5 % of a core here, so a 1 s window inside one of its runs can see no
    # tick (it is counted in a later window); together the windows see it
    breakdowns = [r.window.profiler_cpu_breakdown for r in windows if r.window]
    assert sum(parts.get("pyspy", 0) for parts in breakdowns) > 0, breakdowns
    assert sum(parts.get("parse", 0) for parts in breakdowns) >= 0.1
    print(json.dumps([r.window.profiler_cpu_breakdown for r in windows if r.window]))


def test_py_spy_falling_behind_is_reported(tmp_path, recorder):
    # wall mode at 1000 Hz on 32 threads waiting 40 frames deep, py-spy and the service
    # on one core: reading them takes py-spy more than a millisecond per sample
    recorder.params = Params(sampling_interval_ms=1, profile_mode="wall")
    recorder.poll_interval_s = 6.0
    proc = _service(tmp_path, recorder.url, "saturate")
    try:
        behind = recorder.wait_windows(
            1, 1, timeout=60.0, where=lambda r: r.window and r.window.pyspy_behind_events > 0
        )[0].window
    finally:
        _stop(proc)
    assert behind is not None and behind.requested_rate_hz == 1000
    assert behind.effective_rate_hz < 0.9 * behind.requested_rate_hz, behind
