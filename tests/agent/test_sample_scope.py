"""``sample_scope: requests``: the native profiler samples only while a request is open.

Each script runs in a fresh interpreter (the extension's state is the process's), with
the real extension, the real span processor and the real supervisor:

* the sampler thread takes no tick while no request is open, however busy the process,
  and samples while one is; a request closed twice counts once;
* it is put on a CPU only for the ticks that fall in a request and its looks outside
  them (the kernel's count of its turns), not at each request's start and end;
* its looks outside requests see CPU the scope does not, and then the supervisor
  samples the process instead;
* the marker processor opens a request at each local root span (a remote parent
  included) and not at a child.
"""

from __future__ import annotations

import pytest

from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from tests.agent.test_native_profiler import _run_script
from tests.support.native import needs_native

GATE = r"""
import json, time
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import native, _native_sampler as ns

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

ns.probe_interval(20_000)  # a look outside requests every 20 ms
sampler = native.NativeSampler(SampleStore(), 0.001, 32, scope="requests")
started, ended = native.request_hooks()
sampler.start()
out = {}
burn(0.6)  # the process busy, no request open
s0 = ns.stats()
out["outside"] = {k: s0[k] for k in ("ticks", "samples", "outside_probes", "outside_held")}
sampler.take()  # outside_busy() reads the counters of the last take
out["outside_busy"] = sampler.outside_busy()
started(); started(); burn(0.3); ended(); burn(0.2); ended(); ended()  # one too many
# a tick planned before the last close may still run after it (it reads: its time was
# in a request); 50 ms is 50 mean gaps
time.sleep(0.05)
s1 = ns.stats()
out["inside_samples"], out["open_after"] = s1["samples"] - s0["samples"], s1["requests_open"]
time.sleep(0.5)  # idle, none open
out["idle_ticks"] = ns.stats()["ticks"] - s1["ticks"]
sampler.configure(0.001, 32, False, "process")
time.sleep(0.5)  # idle, the process's scope: every tick wakes the thread
s2 = ns.stats()
out["process_idle_ticks"] = s2["ticks"] - s1["ticks"] - out["idle_ticks"]
sampler.stop()
print(json.dumps(out))
"""


@needs_native
def test_requests_scope_samples_only_while_a_request_is_open():
    """No tick at all while no request is open (the process scope ticks about once a
    millisecond, idle or not), samples while one is, and an extra close is not a
    negative count. (Fails without the gate: ticks and samples outside requests.) Only
    a tick planned before the last close can run after it (the scheduler ran the thread
    late: its time was in a request, so it reads), hence the 50 ms before the idle count
    starts."""
    out = _run_script(GATE)
    assert out["outside"]["ticks"] == 0 and out["outside"]["samples"] == 0, out
    assert out["inside_samples"] > 100, out  # 0.5 s at 1 kHz, mean ~500
    assert out["open_after"] == 0, out
    assert out["idle_ticks"] == 0 and out["process_idle_ticks"] > 100, out
    # the looks outside requests found the busy process: CPU the scope would not see
    assert out["outside"]["outside_probes"] >= 10, out
    assert out["outside"]["outside_held"] >= 0.8 * out["outside"]["outside_probes"], out
    assert out["outside_busy"] is True, out


WAKES = r"""
import json, time
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import native, _native_sampler as ns

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

def runs():  # the kernel's count of the sampler thread's turns on a CPU
    tid = ns.stats()["native_id"]
    return int(open(f"/proc/self/task/{tid}/schedstat").read().split()[2])

sampler = native.NativeSampler(SampleStore(), 0.01, 32, scope="requests")  # 100 Hz
started, ended = native.request_hooks()
sampler.start()
time.sleep(0.05)
s0, r0 = ns.stats(), runs()
for _ in range(60):  # requests of 2 ms, 20 ms apart: a tick in about one in five
    started(); burn(0.002); ended()
    time.sleep(0.018)
s1, r1 = ns.stats(), runs()
sampler.stop()
keys = ("wakes", "ticks", "samples", "outside_probes", "taken_back")
out = {k: s1[k] - s0[k] for k in keys}
out["runs"] = r1 - r0
print(json.dumps(out))
"""


@needs_native
def test_the_sampler_wakes_only_for_the_ticks_in_a_request():
    """Sixty requests of 2 ms, 20 ms apart, at 100 Hz: the sampler thread wakes for the
    ticks that fall in a request (about one request in five) and its looks outside
    them, not at each request's start nor for a tick planned after its close, which the
    request's close takes back. (Before session 52 it woke at each first request to plan
    from it, and again at the tick it planned, which a short request had most often
    outlived: with requests of 1 ms the kernel ran it 143 and 158 times, by its thread's
    schedstat, for 6 and 2 ticks; this loop 3 and 5 times, for 2 and 4.)"""
    out = _run_script(WAKES)
    assert out["taken_back"] >= 30, out  # most requests end before their tick
    # the kernel's count (a timer that fires as a close takes it back, or a preemption,
    # puts the thread on a CPU for nothing: rare), and the sampler's own
    assert out["runs"] <= out["ticks"] + out["outside_probes"] + 15, out
    assert out["wakes"] <= out["ticks"] + out["outside_probes"] + 12, out
    assert out["ticks"] >= 1, out


FALLBACK = r"""
import json, threading, time
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import _native_sampler as ns
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.params import Params

ns.probe_interval(20_000)
params = Params(sampling_interval_ms=5, sample_scope="requests", profile_mode="cpu")
profiler = Profiler(LiveParams(params), SampleStore(), choice="native")
profiler.start()
scopes, end = [], time.monotonic() + 8.0
while time.monotonic() < end:  # CPU outside any request
    for _ in range(20000):
        pass
    stats = ns.stats()
    if stats["running"]:
        scopes.append(stats["requests_only"])
    if scopes and scopes[-1] == 0:
        break
profiler.stop()
print(json.dumps({"backend": profiler.backend, "first": scopes[:1], "last": scopes[-1:],
                  "probes": ns.stats()["outside_probes"]}))
"""


@needs_native
def test_cpu_outside_requests_puts_the_sampler_back_on_the_process():
    """A process busy outside any request (a worker thread, a job): the sampler's looks
    outside requests find the GIL held, and the supervisor samples the process instead
    of the requests the params ask for. (Fails without the rule: the scope stays
    ``requests`` and the profile misses that CPU.)"""
    out = _run_script(FALLBACK)
    assert out["backend"] == "native", out
    assert out["first"] == [1] and out["last"] == [0], out
    assert out["probes"] >= 10, out


HOOKS = r"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.profiler import native, _native_sampler as ns
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor
from otel_adaprof.params import Params

markers = MarkerProcessor(LiveParams(Params()), MarkerBook())
markers.request_hooks = native.request_hooks()
provider = TracerProvider()
provider.add_span_processor(markers)
tracer = provider.get_tracer("t")
seen = []
def look():
    seen.append(ns.stats()["requests_open"])
with tracer.start_as_current_span("GET /a"):
    look()
    with tracer.start_as_current_span("SELECT"):
        look()
    look()
look()
remote = SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=TraceFlags(1))
caller = trace.set_span_in_context(NonRecordingSpan(remote))
with tracer.start_as_current_span("GET /b", context=caller):
    look()
look()
print(json.dumps({"seen": seen}))
"""


@needs_native
def test_a_request_is_a_local_root_span():
    """The span processor opens a request at a span with no parent or a remote one (a
    server span under a caller's trace), and not at its children."""
    assert _run_script(HOOKS) == {"seen": [1, 1, 1, 0, 1, 0]}


def test_sample_scope_is_checked():
    assert Params.parse({"sample_scope": "requests"}).sample_scope == "requests"
    assert Params().sample_scope == "process"
    with pytest.raises(ContractError, match="'threads' is not a sample scope"):
        Params.parse({"sample_scope": "threads"})
