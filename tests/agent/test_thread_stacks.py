"""Reading other threads' stacks in-process: right functions, right threads, py-spy's names.

A real child process parks threads in known places (a method, a nested function, a
busy loop); py-spy reads it from outside, then the child reads itself with the
``faulthandler`` backend (the fallback, used on CPython 3.11 before the walk held the
collector off) and the backend safe on this Python (the walk). Each thread's stack
must name its own functions, exactly as py-spy names them, so in-process samples and
py-spy's merge in one histogram.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler import thread_stacks
from otel_adaprof.instrumentation.profiler.inprocess import CORE_SHARE, InProcessSampler
from otel_adaprof.instrumentation.profiler.pyspy import find_py_spy
from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks, safe_backend

    stop = threading.Event()

    class Shop:
        def checkout(self, ready):
            ready.set()
            stop.wait()

    def outer(ready):
        def inner_probe():
            ready.set()
            stop.wait()
        inner_probe()

    def burn_probe(ready):
        ready.set()
        while not stop.is_set():
            sum(range(100))

    targets = {"method": lambda r: Shop().checkout(r), "nested": outer, "busy": burn_probe}
    idents = {}
    for key, target in targets.items():
        ready = threading.Event()
        t = threading.Thread(target=target, args=(ready,), daemon=True, name=f"probe-{key}")
        t.start(); ready.wait(5); idents[key] = t.ident
    print(json.dumps({"idents": idents}), flush=True)
    sys.stdin.readline()  # py-spy reads us meanwhile
    out = {}
    for backend in ("faulthandler", safe_backend()):
        got = ThreadStacks(backend).read(depth=64)
        out[backend] = {key: list(got.get(tid, ())) for key, tid in idents.items()}
    print(json.dumps(out), flush=True)
    stop.set()
    """
)


def _py_spy_dump(pid: int) -> dict[str, list[str]]:
    """``{thread name: frames root first}`` from ``py-spy dump``."""
    py_spy = find_py_spy(None)
    assert py_spy is not None
    text = subprocess.run(
        [py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30,
        check=True,
    ).stdout  # fmt: skip
    out: dict[str, list[str]] = {}
    frames: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("Thread "):  # Thread 2072 (idle): "probe-method"
            frames = out.setdefault(line.rsplit(": ", 1)[-1].strip('"'), [])
        elif line.startswith("    ") and frames is not None:
            frames.insert(0, line.strip())
    return out


def test_stacks_name_each_threads_functions_as_py_spy_does(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(probe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdin is not None
        assert json.loads(child.stdout.readline())["idents"]
        spy = _py_spy_dump(child.pid) if find_py_spy(None) else None
        child.stdin.write("go\n")
        child.stdin.flush()
        got = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
    for backend, stacks in got.items():
        method, nested, busy = stacks["method"], stacks["nested"], stacks["busy"]
        # Each thread its own function, named as py-spy names it (qualified names).
        assert any(f.startswith("Shop.checkout (") for f in method), (backend, method)
        assert any(f.startswith("outer.<locals>.inner_probe (") for f in nested), nested
        assert any(f.startswith("burn_probe (") for f in busy), (backend, busy)
        assert not any("burn_probe" in f or "inner_probe" in f for f in method), method
        assert not any("checkout" in f for f in nested + busy), (nested, busy)
        # Root first, the leaf of a parked thread where it waits.
        assert method[0].startswith("Thread._bootstrap (") and "wait" in method[-1], method
        assert all(" (" in f and f.endswith(")") and not f.split(" (")[1].startswith("/")
                   for f in method + nested + busy)  # fmt: skip
    if spy is not None:  # the parked threads, frame for frame as py-spy read them
        for backend in got:
            for key in ("method", "nested"):
                assert got[backend][key] == spy[f"probe-{key}"], (backend, key, spy)


def test_a_failed_read_turns_stack_reads_off_with_one_log_line(caplog):
    reader, other = ThreadStacks("faulthandler"), ThreadStacks("walk")
    assert reader.read(depth=8) is not None and reader.active
    assert reader._pipe is not None
    try:
        os.close(reader._pipe[1])  # its pipe closed under it (as a daemonizing app may do)
        with caplog.at_level(logging.WARNING, logger="otel_adaprof.agent"):
            assert reader.read(depth=8) == {}
            assert reader.read(depth=8) == {}
            assert other.read(depth=8) == {}  # every reader of the process: off
        assert not reader.active and "OSError" in (reader.failed or "")
        assert not other.active
        assert len([r for r in caplog.records if "reading thread stacks" in r.message]) == 1
    finally:
        thread_stacks.FAILED.clear()  # this test process reads stacks again


def _park(n: int, stop: threading.Event) -> None:
    if n:
        _park(n - 1, stop)
    else:
        stop.wait()


@pytest.mark.flaky(reruns=2)  # CPU time on a shared 2-core machine; the bound unchanged
def test_in_process_sampler_caps_its_rate_by_the_cost_of_a_read():
    stop = threading.Event()
    threads = [threading.Thread(target=_park, args=(20, stop), daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    sampler = InProcessSampler(SampleStore(), interval_s=0.001, depth=64)
    try:
        sampler.start()
        t0 = time.monotonic()
        time.sleep(1.5)
        sampler.stop()
        elapsed = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert sampler.stacks.reads >= 3 and sampler.stacks.active
    # Asked for 1000 reads/s of 41 threads; it spends about CORE_SHARE of a core.
    assert sampler.cpu_seconds / elapsed <= 3 * CORE_SHARE, (
        sampler.cpu_seconds / elapsed,
        sampler.stacks.reads,
        sampler.effective_interval_s,
    )
    # 41 threads read each time (~0.2 ms with the walk): 1 ms asked is stretched
    assert sampler.effective_interval_s > 0.001


def test_in_process_sampler_stops_while_another_thread_starts_it():
    """stop() racing start(): stop may come in while start runs on another thread (the
    supervisor's loop starts the sampler, the agent's shutdown stops it). Many rounds of
    both at once: stop never raises (it joined a thread not started yet: RuntimeError),
    and no sampling thread is left running."""
    for _ in range(200):
        sampler = InProcessSampler(SampleStore(), interval_s=0.05, depth=8)
        starter = threading.Thread(target=sampler.start)
        starter.start()
        sampler.stop(timeout=1.0)  # raised "cannot join thread before it is started"
        starter.join()
        sampler.stop(timeout=1.0)
        assert sampler._thread is None or not sampler._thread.is_alive()


def _parked_thread() -> tuple[threading.Thread, threading.Event]:
    ready, stop = threading.Event(), threading.Event()

    def parked() -> None:
        ready.set()
        stop.wait()

    thread = threading.Thread(target=parked, daemon=True)
    thread.start()
    assert ready.wait(5)
    return thread, stop


def test_the_walk_holds_the_collector_off_while_it_reads_and_gives_it_back():
    """On CPython 3.11 a collection inside the walk is what crashes the service (see
    thread_stacks._walk): the collector is off for every frame the walk names, and on
    again after, unless the app had turned it off itself."""
    thread, stop = _parked_thread()
    reader = ThreadStacks("walk")
    seen: list[bool] = []
    names = reader._names

    def naming(frame):  # called once per frame the walk reads
        seen.append(gc.isenabled())
        return names(frame)

    reader._names = naming  # type: ignore[assignment]
    was = gc.isenabled()
    try:
        gc.enable()
        got = reader.read(depth=64, idents=[thread.ident])
        assert got[thread.ident] and seen and not any(seen), seen
        assert gc.isenabled()  # given back
        gc.disable()  # the app's choice stands
        seen.clear()
        assert reader.read(depth=64, idents=[thread.ident])[thread.ident]
        assert seen and not gc.isenabled()
        # the unguarded walk (the soak's reproduction of 3.11's crash) leaves it alone
        gc.enable()
        seen.clear()
        reader.hold_gc = False
        assert reader.read(depth=64, idents=[thread.ident])[thread.ident]
        assert seen and all(seen)
    finally:
        (gc.enable if was else gc.disable)()
        stop.set()
        thread.join(5)


def test_the_collector_comes_back_on_when_a_read_fails(caplog):
    thread, stop = _parked_thread()
    reader = ThreadStacks("walk")

    def broken(frame):
        raise RuntimeError("naming failed")

    reader._names = broken  # type: ignore[assignment]
    was = gc.isenabled()
    try:
        gc.enable()
        with caplog.at_level(logging.WARNING, logger="otel_adaprof.agent"):
            assert reader.read(depth=8, idents=[thread.ident]) == {}
        assert gc.isenabled() and not reader.active
        assert "RuntimeError: naming failed" in (reader.failed or "")
    finally:
        thread_stacks.FAILED.clear()  # this test process reads stacks again
        (gc.enable if was else gc.disable)()
        stop.set()
        thread.join(5)
