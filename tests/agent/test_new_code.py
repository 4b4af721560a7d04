"""New code (:mod:`otel_adaprof.instrumentation.observe.new_code`): a function of the
service's that its CPU samples never had, seen again and again, starts a glimpse.

* The tracker: a warm-up learns the process's functions; one sample of an unknown
  function is not new code, two within the window are, two further apart are not; once
  new it is known.
* The sample store tells it of every CPU sample, slow-span captures included, never of
  a waiting one, keyed by the sample's innermost own frame: a framework function met for
  the first time under known code is not new code, a new function of the service's
  spending its CPU in the standard library is.
* The reflex takes a glimpse on new code within its own allowance (two at once, one
  more every 20 s), apart from a rise's glimpse, and not while the params in force
  already sample as fast; the catalog's learning at 100 Hz glimpses at 200 Hz.
* In a real service process under the native profiler, polling a controller on
  127.0.0.1: in the watch, a slow request that runs a function the agent never sampled
  brings a glimpse and a report a second later, with that function's samples in it;
  the same requests running known code bring none; while it learns at 100 Hz, the same
  new code brings a glimpse at 200 Hz and its report.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.reflex import NEW_CODE_GLIMPSE_EVERY_S, BurstReflex
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.observe.new_code import NewCode, code_key, leaf_function
from otel_adaprof.params import Params
from otel_adaprof.protocol import PollRequest
from tests.agent.test_accounting import Recorder
from tests.support.native import needs_native

S = 1_000_000_000
HANDLE = ("main (app.py:1)", "handle (app.py:10)")


def _warm(seen: NewCode, n: int = 5) -> None:
    for i in range(n):
        seen.observe("handle (app.py)", i * S)


def test_one_sample_of_an_unknown_function_is_not_new_code_two_close_together_are():
    seen = NewCode(warmup=5, hits=2, hit_window_s=5.0)
    _warm(seen)
    assert not seen.observe("socket_open (socket.py)", 10 * S)
    assert not seen.observe("socket_open (socket.py)", 16 * S)  # 6 s apart: each alone
    assert seen.take() == [] and not seen.pending
    assert not seen.observe("compress (app.py)", 20 * S)
    assert seen.observe("compress (app.py)", 23 * S)
    assert seen.pending and seen.take() == ["compress (app.py)"] and seen.events == 1
    assert not seen.observe("compress (app.py)", 24 * S)  # known now
    assert not seen.observe("compress (app.py)", 25 * S)
    assert seen.events == 1


def test_the_warm_up_learns_the_processs_functions():
    seen = NewCode(warmup=4)
    for t, fn in enumerate(["a (x.py)", "b (x.py)", "b (x.py)", "c (x.py)"]):
        assert not seen.observe(fn, t * S)
    for t in range(10):  # every function of the warm-up is the process's own
        assert not seen.observe("c (x.py)", (10 + t) * S)
        assert not seen.observe("a (x.py)", (10 + t) * S)
    assert seen.events == 0


def test_the_store_tells_it_of_cpu_samples_slow_span_captures_included_never_waiting_ones():
    store = SampleStore()
    woken: list[int] = []
    store.new_code = NewCode(warmup=3, on_new=lambda: woken.append(1))
    for i in range(3):
        store.add_one(1, i * S, (*HANDLE, "burn (app.py:20)"))
    new = (*HANDLE, "compress (app.py:30)")
    # waiting: the thread was seen using no CPU, or its leaf is a known wait
    store.add_one(1, 5 * S, new, idle=True)
    store.add_one(1, 6 * S, new, idle=True)
    store.add_one(1, 7 * S, (*HANDLE, "Condition.wait (threading.py:320)"))
    assert store.new_code.events == 0 and not woken
    # a slow-span capture (on its span only, not in the profile) counts, as a line apart
    store.add_one(1, 8 * S, new, in_profile=False)
    store.add_many(1, [(9 * S, (*HANDLE, "compress (app.py:31)"), 9 * S)])
    assert store.new_code.take() == ["compress (app.py)"] and woken == [1]


SERVER_LOOP = "serve_forever (socketserver.py:233)"
OTEL_DETACH = "detach (opentelemetry/context/__init__.py:160)"


def test_new_code_is_the_services_own_not_the_frameworks_it_calls():
    store = SampleStore()
    store.new_code = NewCode(warmup=3)
    for i in range(3):
        store.add_one(1, i * S, (*HANDLE, "burn (app.py:20)"))
    # known code opening its first socket, twice within the window: a new leaf, not new code
    for t in (5, 6):
        store.add_one(1, t * S, (*HANDLE, "create_connection (socket.py:851)"))
    # the OpenTelemetry SDK or the server loop alone: no own frame at all, never new code
    for t in (7, 8):
        store.add_one(1, t * S, (SERVER_LOOP, OTEL_DETACH))
    assert store.new_code.events == 0
    # a new function of the service's whose CPU is json's: new code, by its own frame
    exporting = (*HANDLE, "export_report (app.py:50)", "dumps (json/__init__.py:231)")
    for t in (10, 11):
        store.add_one(1, t * S, exporting)
    assert store.new_code.take() == ["export_report (app.py)"]
    # the agent's own frames are framework; its demo services are applications
    demo = "main (otel_adaprof/demo/service.py:9)"
    assert code_key((demo,)) == "main (otel_adaprof/demo/service.py)"
    assert code_key((demo, "on_end (otel_adaprof/instrumentation/join/span_join.py:9)")) == (
        "main (otel_adaprof/demo/service.py)"
    )


def test_a_leaf_function_leaves_out_the_line():
    assert leaf_function("burn (a.py:1)") == leaf_function("burn (a.py:2)") == "burn (a.py)"
    assert leaf_function("burn (a.py:1)") != leaf_function("burn (b.py:1)")


WATCH = {
    "sampling_interval_ms": 0,
    "burst_sensitivity": 8,
    "burst_interval_ms": 10,
    "burst_seconds": 15,
    "glimpse_sensitivity": 2.5,
}


def test_new_code_starts_a_glimpse_within_its_allowance_apart_from_a_rises():
    live = LiveParams(Params.parse(WATCH))
    reflex = BurstReflex(live)
    assert not reflex.react([], now=0.0)
    assert reflex.react([], now=1.0, new_code=["socket_open (socket.py)"])
    assert reflex.in_glimpse and live.params.sampling_interval_ms == 10
    assert not reflex.react([], now=3.5)  # the glimpse (2 s) ended; its rest (2 s)
    assert live.params.sampling_interval_ms == 0
    # a second new code soon after (a false one must not silence the real change), met
    # while the reflex rests: its glimpse when the rest ends
    assert not reflex.react([], now=5.0, new_code=["compress (app.py)"])
    assert reflex.react([], now=6.0)
    assert reflex.in_glimpse and reflex.new_code_glimpses == 2
    # met while a glimpse runs: nothing more (the glimpse's samples show it)
    assert not reflex.react([], now=7.0, new_code=["during (app.py)"])
    assert not reflex.react([], now=8.5)  # ended; resting until 11.0
    assert not reflex.react([], now=11.5)  # "during" was not kept for later
    # the allowance is spent: a third waits until one is regained (every 20 s)
    assert not reflex.react([], now=12.0, new_code=["other (app.py)"])
    # a rise is not held back by new code's allowance (nor the reverse)
    assert reflex.react([], now=12.5, rise=3.0) and reflex.in_glimpse
    assert not reflex.react([], now=15.0)
    later = 1.0 + NEW_CODE_GLIMPSE_EVERY_S + 1.0
    assert reflex.react([], now=later, new_code=["other (app.py)"])
    assert reflex.glimpses == 4 and reflex.new_code_glimpses == 3


def test_no_glimpse_on_new_code_while_the_params_already_sample_as_fast():
    live = LiveParams(Params.parse({**WATCH, "sampling_interval_ms": 10}))
    reflex = BurstReflex(live)
    assert not reflex.react([], now=1.0, new_code=["compress (app.py)"])
    assert not reflex.in_glimpse and reflex.glimpses == 0
    off = LiveParams(Params.parse({**WATCH, "glimpse_sensitivity": 0}))
    assert not BurstReflex(off).react([], now=1.0, new_code=["compress (app.py)"])


def test_the_learning_action_glimpses_on_new_code_at_twice_its_rate_not_on_a_rise():
    """The catalog's ``learn-100hz`` samples at 10 ms and glimpses at 5 ms: new code
    starts a glimpse at 200 Hz; a rise of 5 std does not (its sensitivity is the bound,
    20: at 100 Hz the samples show a rise already)."""
    learn = load_catalog().get("learn-100hz")
    assert learn is not None
    live = LiveParams(learn.params)
    reflex = BurstReflex(live)
    assert not reflex.react([], now=1.0, rise=5.0)
    assert live.params.sampling_interval_ms == 10
    assert reflex.react([], now=2.0, new_code=["compress (app.py)"])
    assert reflex.in_glimpse and live.params.sampling_interval_ms == 5
    assert not reflex.react(["cpu_per_request"], now=3.0)  # no burst: it has none
    assert not reflex.react([], now=4.5) and live.params.sampling_interval_ms == 10
    assert reflex.bursts == reflex.glimpses == reflex.new_code_glimpses == 1


SERVICE = r"""
import os, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import otel_adaprof
from otel_adaprof.instrumentation.settings import AgentSettings

def known_work():
    end, x = time.thread_time() + 0.04, 1
    while time.thread_time() < end:
        x = (x * 69069 + 1) & 0xFFFFFFFF
    return x

def new_code_path():  # the same CPU a request: only the code (the leaf function) differs
    end, x = time.thread_time() + 0.04, 1
    while time.thread_time() < end:
        x = (x * 69069 + 1) & 0xFFFFFFFF
    return x

otel_adaprof.configure(
    service_name="new-code", exporter=InMemorySpanExporter(),
    settings=AgentSettings(profiler="native", controller_url=sys.argv[1], window_s=1.0),
)
tracer = trace.get_tracer("new-code")
flag = sys.argv[2]
print("ready", flush=True)
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    with tracer.start_as_current_span("GET /report", kind=trace.SpanKind.SERVER):
        (new_code_path if os.path.exists(flag) else known_work)()
    time.sleep(0.01)
"""


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    rec.params = Params(sampling_interval_ms=10, profile_mode="cpu")
    try:
        yield rec
    finally:
        rec.server.shutdown()


def _samples_in(report, function: str) -> int:
    rows = report.stacks.stacks if report.stacks else []
    return sum(row.count for row in rows if row.stack.rsplit(";", 1)[-1].startswith(function + " "))


def _run_to_new_code(
    tmp_path, recorder: Recorder, phase: Params
) -> tuple[PollRequest, PollRequest, float]:
    """The service learnt at 100 Hz, then under ``phase`` (version 2, polls every 5 s):
    a whole window of known code, then the flag (new code from then on). The quiet
    window, the first window after it, and when the flag was set (unix s)."""
    script, flag = tmp_path / "service.py", tmp_path / "new-code-on"
    script.write_text(SERVICE)
    proc = subprocess.Popen(
        [sys.executable, str(script), recorder.url, str(flag)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        # the warm-up: 100 Hz until the agent has sampled known_work plenty
        recorder.wait_windows(
            1, 1, timeout=30.0,
            where=lambda _r: sum(_samples_in(r, "known_work") for r in recorder.windows(1)) >= 250,
        )  # fmt: skip
        recorder.version, recorder.poll_interval_s = 2, 5.0
        recorder.params = phase
        quiet = recorder.wait_windows(2, 2, timeout=20.0)[1]  # a whole window of the phase
        flag.touch()
        flagged = time.time()
        assert quiet.window is not None
        quiet_end = quiet.window.window_start + quiet.window.window_seconds
        after = recorder.wait_windows(
            2, 1, timeout=15.0,
            where=lambda r: r.window is not None and r.window.window_start >= quiet_end - 0.01,
        )  # fmt: skip
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err[-3000:]
    return quiet, after[0], flagged


def _closed_soon_after(first: PollRequest, flagged: float) -> None:
    """The window closed about a second after the glimpse began, not at its 5 s (4.8 s
    or more after the flag); the new code is seen at the span join's next pass, up to a
    second after its request ended, and a loaded machine wakes the poller late."""
    assert first.window is not None
    assert first.window.change_signals.new_code >= 1, first.window
    assert first.window.glimpse_seconds > 0, first.window
    closed = first.window.window_start + first.window.window_seconds
    assert closed - flagged <= 3.5, (closed - flagged, first.window)


@needs_native
@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
def test_a_slow_request_running_code_never_sampled_brings_a_glimpse_and_its_report(
    tmp_path, recorder
):
    """Learnt at 100 Hz, then watched (no sampling; slow-span capture and glimpses, the
    burst and a rise's glimpse out of the way; polls every 5 s): requests that run known
    code bring no glimpse in a whole window; the same requests running a function the
    agent never sampled do, and the window closes about a second after it, with that
    function's samples in it (the watch takes none). Fails without new code: the CPU per
    request does not change, so nothing else would start a glimpse and the window runs
    its 5 s."""
    # (the reflex's burst off and a rise's glimpse out of reach: on a loaded machine
    # the CPU per request moves, and only new code is what this test is about)
    watch = Params.parse(
        {**WATCH, "burst_sensitivity": 0, "glimpse_sensitivity": 20,
         "slow_span_interval_ms": 20, "marker_trigger": {"min_duration_ms": 10}}
    )  # fmt: skip
    quiet, first, flagged = _run_to_new_code(tmp_path, recorder, watch)
    assert quiet.window is not None
    assert quiet.window.window_seconds >= 4.5, quiet.window
    assert quiet.window.change_signals.new_code == 0 and quiet.window.glimpse_seconds == 0
    assert quiet.stacks is not None and quiet.stacks.total_samples == 0  # the watch samples none
    _closed_soon_after(first, flagged)
    # that second's samples at 100 Hz (the watch takes none; 10: a loaded machine)
    assert _samples_in(first, "new_code_path") >= 10, first.stacks


@needs_native
@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
def test_new_code_met_while_learning_at_100_hz_brings_a_glimpse_at_200_hz_and_its_report(
    tmp_path, recorder
):
    """The catalog's ``learn-100hz`` (100 Hz, no burst; glimpses at 5 ms): new code
    starts a glimpse at twice the rate and the window closes about a second after it,
    where before the learning rate had no reflex and the window ran its 5 s. The
    glimpse's samples come at about twice the rate of the quiet window's."""
    learn = load_catalog().get("learn-100hz")
    assert learn is not None
    phase = learn.params.with_changes(profile_mode="cpu")
    quiet, first, flagged = _run_to_new_code(tmp_path, recorder, phase)
    assert quiet.window is not None and quiet.stacks is not None
    assert quiet.window.glimpse_seconds == 0, quiet.window
    _closed_soon_after(first, flagged)
    assert first.window is not None and first.stacks is not None
    # samples a second: the quiet window's at 100 Hz, the first's with the glimpse in it
    # (the requests scope samples only while a request is open: about 80 % of the time)
    quiet_rate = quiet.stacks.total_samples / quiet.window.window_seconds
    first_rate = first.stacks.total_samples / first.window.window_seconds
    assert first_rate >= 1.3 * quiet_rate, (first_rate, quiet_rate)
