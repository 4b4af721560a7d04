"""The native sampler thread asks the scheduler for a short slice, so that its ticks
come on time on a busy machine (docs/benchmarks.md, "Late ticks under contention, and a
holder that waited").

The kernel's own account of the thread (``/proc/self/task/TID/sched``'s ``se.slice``,
Linux 6.12 and later) is the independent reading: the extension's ``slice_ns`` must
say what the kernel keeps, and ``slice_us=0`` must leave the kernel's default.
"""

from __future__ import annotations

from tests.agent.test_native_profiler import _run_script
from tests.support.native import needs_native

SLICE = r"""
import json, time
from otel_adaprof.instrumentation.profiler import _native_sampler as ns

def kernel_slice(tid):
    for line in open(f"/proc/self/task/{tid}/sched"):
        if line.startswith("se.slice"):
            return int(line.split(":")[1])
    return None  # a kernel with no slice of a thread's own

out = {}
for asked in (None, 0, 250):
    kwargs = {} if asked is None else {"slice_us": asked}
    ns.start(10_000, 32, "wall", "holder", True, **kwargs)
    time.sleep(0.2)
    stats = ns.stats()
    out[str(asked)] = {"kept": stats["slice_ns"], "kernel": kernel_slice(stats["native_id"]),
                       "ticks": stats["ticks"], "late_ticks": stats["late_ticks"],
                       "late_ns": stats["late_ns"]}
    ns.stop()
print(json.dumps(out))
"""


@needs_native
def test_the_sampler_thread_runs_with_the_slice_it_asks_for():
    out = _run_script(SLICE)
    default, none, other = out["None"], out["0"], out["250"]
    if default["kernel"] is None:  # before Linux 6.12: nothing to ask, nothing claimed
        assert default["kept"] == none["kept"] == other["kept"] == 0, out
        return
    assert default["kept"] == default["kernel"] == 100_000, out
    assert other["kept"] == other["kernel"] == 250_000, out
    assert none["kept"] == 0, out
    assert none["kernel"] != 100_000, out  # the kernel's default slice, not ours
    for run in out.values():  # the delay counters count the wall ticks
        assert run["ticks"] > 5 and 0 <= run["late_ticks"] <= run["ticks"], out
