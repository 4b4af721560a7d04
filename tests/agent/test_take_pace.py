"""The native sampler's takes are paced by the samples it achieves, not by its rate.

Sampling only while a request is open, the native profiler at 100 Hz on a service that
is in a request a tenth of the time takes about ten samples a second: taking them five
times a second (the rate's pace) woke the supervisor for two or three samples each time
(bench/take_pace.py). Each script runs in a fresh interpreter with the real extension
and the real supervisor; the takes are counted at the real sampler's ``take``.
"""

from __future__ import annotations

import pytest

from tests.agent.test_native_profiler import _run_script
from tests.support.native import needs_native

PACE = r"""
import json, time
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import native
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.params import Params

busy_share = BUSY_SHARE  # of each 100 ms, in a request and on the CPU
takes = []
original = native.NativeSampler.take
def counted(self):
    takes.append(time.monotonic())
    return original(self)
native.NativeSampler.take = counted

def burn(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

store = SampleStore()
params = Params(sampling_interval_ms=10, sample_scope="requests", profile_mode=MODE)
profiler = Profiler(LiveParams(params), store, choice="native")
started, ended = native.request_hooks()
profiler.start()
t0 = time.monotonic()
while time.monotonic() < t0 + 5.0:
    started(); burn(0.1 * busy_share); ended()
    time.sleep(0.1 * (1 - busy_share))
profiler.stop()
late = [t for t in takes if t0 + 2.0 <= t < t0 + 5.0]  # after the pace is measured
print(json.dumps({"backend": profiler.backend, "takes_per_s": len(late) / 3.0,
                  "pace_hz": profiler.take_pace.hz, "samples": store.samples_added}))
"""


def _pace(busy_share: float, mode: str) -> dict:
    """The PACE script's figures, in a request ``busy_share`` of the time in ``mode``."""
    script = PACE.replace("BUSY_SHARE", repr(busy_share)).replace("MODE", repr(mode))
    return _run_script(script)


@needs_native
@pytest.mark.parametrize(
    ("busy_share", "most", "least"),
    [(0.1, 1.7, 0.5), (0.9, None, 2.5)],
    ids=["in-a-request-a-tenth-of-the-time", "in-a-request-nine-tenths"],
)
def test_takes_follow_the_samples_the_sampler_achieves(busy_share, most, least):
    """In a request a tenth of the time, 100 Hz gives about ten samples a second: the
    supervisor takes about once a second, not five times (fails with the takes paced
    by the rate: about 5 a second). Nine tenths of the time, about 90 a second: it
    still takes about every 0.2 s (at least 2.5 times a second, on a loaded machine
    too), so marker spans wait no longer for their samples."""
    out = _pace(busy_share, "cpu")
    assert out["backend"] == "native", out
    assert out["samples"] > 0 and out["pace_hz"] is not None, out
    if most is not None:
        assert out["pace_hz"] < 30, out
        assert out["takes_per_s"] <= most, out
    assert out["takes_per_s"] >= least, out


@needs_native
def test_wall_mode_takes_at_the_rate_s_pace():
    """In ``wall`` mode each tick reads every thread: after an idle spell a second's
    samples of many threads could fill the extension's ring before the measure caught
    up, so the rate paces the takes there (about 5 a second at 100 Hz), however few
    samples the sampler achieves."""
    out = _pace(0.1, "wall")
    assert out["backend"] == "native" and out["samples"] > 0, out
    assert out["takes_per_s"] >= 3.5, out
