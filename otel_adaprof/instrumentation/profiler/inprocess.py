"""The in-process fallback: a daemon thread reading ``sys._current_frames()``.

Used where py-spy is missing or may not read the process (no ptrace permission, as
in many containers). It needs no privilege, but it is biased, and says so: the
sampler must hold the GIL to look, so it sees other threads only where they let the
GIL go (between bytecodes every ``sys.getswitchinterval()``, or in I/O), and on an
asyncio service it mostly finds the event loop waiting in ``select``. Its own CPU is
measured (thread CPU time) and reported as profiler overhead.

    >>> import time
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> store = SampleStore()
    >>> sampler = InProcessSampler(store, interval_s=0.005, depth=16)
    >>> sampler.start(); time.sleep(0.05); sampler.stop()
    >>> store.samples_added > 0
    True
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.stacks import FrameNames, Stack


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
        self._names = FrameNames()

    def start(self) -> None:
        """Start the sampling thread (a daemon)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="adaprof-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop sampling; every sample taken so far is in the store."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def sample_once(self, now_ns: int) -> None:
        """Take one sample of every other thread."""
        me = threading.get_ident()
        for tid, top in sys._current_frames().items():
            if tid == me:
                continue
            frames: list[str] = []
            frame: FrameType | None = top
            while frame is not None and len(frames) < self.depth:
                frames.append(self._names(frame))
                frame = frame.f_back
            frames.reverse()
            stack: Stack = tuple(frames)
            self.store.add_many(tid, [(now_ns, stack, now_ns)], self.version)
        self.store.set_watermark(now_ns)

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
                next_at += self.interval_s
                delay = next_at - time.monotonic()
                if delay < 0:  # fell behind (GIL contention): skip, don't burst
                    next_at = time.monotonic() + self.interval_s
                    delay = self.interval_s
                self._stop.wait(delay)
        except Exception:  # the sampler must never take the service down
            import logging

            logging.getLogger("otel_adaprof.agent").exception(
                "otel-adaprof: in-process sampler stopped"
            )
        finally:
            if self._on_thread is not None:
                self._on_thread(False)
