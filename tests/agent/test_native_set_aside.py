"""The native sampler's check that a GIL holder the scheduler set aside is *waiting*,
not on a CPU: beside two processes spinning on the same two CPUs.

Its own module so that it runs in the serial ``timing`` pass (tests/conftest.py): its
spinners take both CPUs for about five seconds, and beside it the parallel pass's
timing-bound tests starved (session 50's CI: this test and a new-code glimpse test each
failed three times in a row, rerun side by side).
"""

from __future__ import annotations

import os

import pytest

from tests.agent.test_native_profiler import _run_script
from tests.support.native import needs_native

SET_ASIDE = r"""
import json, os, subprocess, sys, threading, time
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import native
from otel_adaprof.instrumentation.profiler import _native_sampler as _ns

cpus = sorted(os.sched_getaffinity(0))[:2]
os.sched_setaffinity(0, cpus)  # two CPUs, shared with the spinners below
spin = "import os; os.sched_setaffinity(0, %r)\nwhile True: pass" % (cpus,)
out = {}
for on_cpu, spinners in ((True, 2), (False, 2)):
    kids = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(spinners)]
    time.sleep(0.3)
    store, ran = SampleStore(), []
    def burn():
        w0, c0, x = time.monotonic(), time.thread_time(), 1
        while time.monotonic() - w0 < 2.0:
            for _ in range(200):
                x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        ran.append((time.thread_time() - c0) / (time.monotonic() - w0))
    sampler = native.NativeSampler(store, 0.002, 32, on_cpu=on_cpu)
    sampler.start()
    worker = threading.Thread(target=burn, name="burner")
    worker.start(); worker.join()
    sampler.stop(); sampler.take()
    for kid in kids:
        kid.kill(); kid.wait()
    mine = store.samples_between(worker.ident, 0, 2**63)
    hist = store.take_histogram(depth=32)
    out[f"{on_cpu}-{spinners}"] = {
        "ran": ran[0], "samples": len(mine),
        "waiting": sum(1 for _t, _s, waiting in mine if waiting),
        "off_cpu": sampler.off_cpu,
        # stood-still reads told apart by the scheduler's stamps (this thread took the
        # holder's CPU), and whether this kernel shows them
        "switched": _ns.stats()["switched"],
        "stamps": "se.exec_start" in open("/proc/thread-self/sched").read(),
        # every stack of the worker thread (burn, or its start and end: a sample there
        # is its CPU too)
        "in_profile": sum(c.count for c in hist.stacks if "_bootstrap" in c.stack),
    }
print(json.dumps(out))
"""


@needs_native
def test_a_gil_holder_set_aside_by_the_scheduler_is_waiting_not_cpu():
    """Beside two spinning processes on the same two CPUs the holder runs part of the
    time: the samples read while it did not are kept on its spans as waiting, out of the
    CPU histogram, and the share kept as CPU follows the share of time it ran."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("on one CPU the sampler's read always finds the holder set aside")
    out = _run_script(SET_ASIDE)
    busy = out["True-2"]
    assert busy["samples"] > 300 and busy["ran"] < 0.9, out  # the spinners took its CPU
    # the flagged samples are the waiting ones, and the profile holds the others only
    assert busy["waiting"] == busy["off_cpu"] > 0, out
    assert busy["in_profile"] == busy["samples"] - busy["waiting"], out
    # The share kept as CPU follows the share of time it ran (3 spinning threads on 2
    # CPUs: about 2/3). Not below it: a read that found the holder set aside by the
    # sampler's own wake-up counts as CPU (session 41's check kept 0.35 of a thread
    # that ran 0.68 of the time).
    kept = 1 - busy["waiting"] / busy["samples"]
    if busy["stamps"]:
        # Told apart by the scheduler's stamps: some reads found the holder put out by
        # the sampler's own wake-up, and a holder that waited does not count because
        # the sampler gave its CPU back (session 42's look again: up to 0.2 above).
        assert busy["switched"] > 0, out
        assert busy["ran"] - 0.12 < kept < busy["ran"] + 0.12, out
    else:
        assert busy["switched"] == 0, out
        assert busy["ran"] - 0.1 < kept < busy["ran"] + 0.25, out
    # without the check every read counts as CPU
    assert out["False-2"]["waiting"] == 0 and out["False-2"]["off_cpu"] == 0, out
    assert out["False-2"]["in_profile"] == out["False-2"]["samples"] > 300, out
