"""The in-process fallback: a daemon thread reading every thread's stack.

Used where py-spy is missing or may not read the process (no ptrace permission, as
in many containers). It needs no privilege, but it is biased, and says so: the
sampler must hold the GIL to look, so it sees other threads only where they let the
GIL go (between bytecodes every ``sys.getswitchinterval()``, or in I/O), and on an
asyncio service it mostly finds the event loop waiting in ``select``. Its own CPU is
measured (thread CPU time) and reported as profiler overhead. Stacks are read by
:mod:`~otel_adaprof.instrumentation.profiler.thread_stacks` (the backend safe on this
Python), and the rate is capped so the reads use at most :data:`CORE_SHARE` of a core.

    >>> import time
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> store = SampleStore()
    >>> sampler = InProcessSampler(store, interval_s=0.005, depth=16)
    >>> sampler.start(); time.sleep(0.05); sampler.stop()
    >>> store.samples_added > 0
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler.thread_stacks import ThreadStacks

#: Share of a core the sampler's stack reads may use: the interval is stretched to
#: the measured cost of a read over this share. The walk of every thread (0.15-0.23 ms
#: for 20 threads, bench/output/thread_stacks_cost.json) rarely reaches it; with the
#: ``faulthandler`` reader (about 0.08 ms per thread, the GIL held) 100 Hz of 20 threads
#: would take 15 % of a core.
CORE_SHARE = 0.05


class InProcessSampler:
    """Samples every thread's Python stack at a fixed interval until stopped."""

    def __init__(
        self,
        store: SampleStore,
        interval_s: float,
        depth: int,
        version: int = 0,
        on_thread: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        #: Config version the samples are taken under (the supervisor updates it).
        self.version = version
        self._on_thread = on_thread
        self.interval_s = interval_s
        self.depth = depth
        self.cpu_seconds = 0.0
        self.native_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The reader of other threads' stacks (the backend safe on this Python).
        self.stacks = ThreadStacks()

    def start(self) -> None:
        """Start the sampling thread (a daemon)."""
        self._stop.clear()
        thread = threading.Thread(target=self._run, name="adaprof-sampler", daemon=True)
        thread.start()
        self._thread = thread  # only a started thread: stop() may join it from now on

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling; every sample taken so far is in the store.

        Safe at any moment, also while :meth:`start` runs on another thread (a thread
        not started yet is not joined: it sees the stop when it runs).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and thread.ident:
            thread.join(timeout)

    def sample_once(self, now_ns: int) -> None:
        """Take one sample of every other thread."""
        for tid, stack in self.stacks.read(self.depth).items():
            self.store.add_many(tid, [(now_ns, stack, now_ns)], self.version)
        self.store.set_watermark(now_ns)

    @property
    def effective_interval_s(self) -> float:
        """The interval in force: ``interval_s``, or longer when reads cost more than
        :data:`CORE_SHARE` of a core at that rate."""
        return self.stacks.interval_s(self.interval_s, CORE_SHARE, "the in-process sampler")

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self.store.ignored.add(threading.get_ident())
        if self._on_thread is not None:
            self._on_thread(True)
        t_cpu = time.thread_time()
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self.sample_once(time.time_ns())
                now_cpu = time.thread_time()
                self.cpu_seconds += now_cpu - t_cpu
                t_cpu = now_cpu
                interval = self.effective_interval_s
                next_at += interval
                delay = next_at - time.monotonic()
                if delay < 0:  # fell behind (GIL contention): skip, don't burst
                    next_at = time.monotonic() + interval
                    delay = interval
                self._stop.wait(delay)
        except Exception:  # the sampler must never take the service down
            import logging

            logging.getLogger("otel_adaprof.agent").exception(
                "otel-adaprof: in-process sampler stopped"
            )
        finally:
            self.stacks.close()
            if self._on_thread is not None:
                self._on_thread(False)
