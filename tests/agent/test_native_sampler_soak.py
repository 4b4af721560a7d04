"""The native sampler (the agent's C sampler, built by bench/native_sampler/build.py)
under thread churn: the process lives.

Its sampler thread reads other threads' frames with ``process_vm_readv`` while they
start, run and end, and each thread's CPU-clock timer signals it; a stale address must
be an error counted, not a fault, and after a stop no new timer may be made (its signal
has no sampler thread to wait for it). A child process runs the churn, so a crash is a
failed test, not a dead test runner. About 3,400 threads in 7.5 s, three runs:
(session 40, before the wall clock's every-thread reads were added as a fourth run) the
process lived, 2,274-2,346 samples, 29-38 stale reads counted.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.bench_scripts import BENCH

CHURN = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
import _native_sampler as ns, native_start

def request(n):  # a thread per request, a few ms of CPU in a few frames
    def leaf(k):
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            k += 1
        return k
    return leaf(n)

totals = {"threads": 0, "samples": 0, "errors": 0, "ticks": 0}
runs = (("thread", "holder"), ("wall", "holder"), ("wall", "all"), ("thread", "holder"))
for clock, threads in runs:  # stop and start again, on two clocks, and every thread read
    native_start.start(2000, clock, threads=threads)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        batch = [threading.Thread(target=request, args=(i,)) for i in range(8)]
        for t in batch:
            t.start()
        for t in batch:
            t.join()
        totals["threads"] += len(batch)
    ns.stop()
    got = ns.drain()
    stats = ns.stats()
    totals["samples"] += len(got)
    totals["errors"] += stats["errors"]
    totals["ticks"] += stats["ticks"]
    assert all(isinstance(s, tuple) and s for _ts, _tid, s in got)
# after the last stop no timer is left to signal anyone: a thread started now is not timed
late = threading.Thread(target=lambda: totals.__setitem__("late", ns.track_current()))
late.start(); late.join()
time.sleep(0.3)
print(json.dumps(totals))
"""


def test_thread_churn_under_the_native_sampler_leaves_the_process_alive(tmp_path):
    subprocess.run(
        [sys.executable, str(BENCH / "native_sampler" / "build.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", CHURN, str(tmp_path)], capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    totals = json.loads(done.stdout)
    assert totals["threads"] > 300, totals  # real churn: hundreds of threads came and went
    assert totals["samples"] > 100, totals  # and the sampler read them meanwhile
    assert totals["errors"] <= 0.2 * totals["ticks"], totals  # stale reads: few, counted
    assert totals["late"] is False, totals  # nothing timed once the sampler stopped
