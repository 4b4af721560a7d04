"""The native profiler: a C thread in the service reads Python stacks as py-spy does.

``_native_sampler`` (a C extension, built by ``pip install`` on CPython 3.11 and 3.12)
starts one native thread that holds no GIL and runs no Python. At exponential gaps of
wall time it reads the GIL holder's frames (``profile_mode: cpu``, py-spy ``--gil``'s
reading) or every thread's (``wall``, py-spy ``--idle``'s) with ``process_vm_readv`` on
its own process: a freed or unmapped address is an error counted, never a fault. No
process to start, no binary to attach, no symbols to read, no output file to parse: it
reads the same profile as py-spy at a third of its CPU (docs/benchmarks.md, "The native
profiler in the agent"). Samples wait in a ring buffer until the supervisor takes them
(every :data:`~otel_adaprof.instrumentation.profiler.supervisor.IDLE_TICK_S`), with the
time up to which all are in (the watermark).

Its thread is not a Python thread: its CPU is read from its own CPU-time clock
(:meth:`NativeSampler.cpu_seconds`) and counted as the agent's part ``native``.

    >>> import threading, time
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> store = SampleStore()
    >>> sampler = NativeSampler(store, interval_s=0.002, depth=32)
    >>> def burn():
    ...     end = time.thread_time() + 0.2
    ...     while time.thread_time() < end:
    ...         pass
    >>> if unavailable() is None:
    ...     sampler.start(); t = threading.Thread(target=burn); t.start(); t.join()
    ...     sampler.stop(); _ = sampler.take()
    ...     assert store.samples_added > 0 and sampler.cpu_seconds() > 0
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple

from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.stacks import Stack, frame_text
from otel_adaprof.instrumentation.observe.agent_cpu import thread_cpu_seconds

log = logging.getLogger("otel_adaprof.agent")

#: Deepest stack the extension keeps (its MAX_DEPTH).
MAX_DEPTH = 128
#: Python versions whose frame layout the extension reads.
SUPPORTED = ((3, 11), (3, 12))

_module: ModuleType | None = None
_import_error: str | None = None
#: One sampler per process: the extension's state is the process's.
_owner_lock = threading.Lock()
_owner: NativeSampler | None = None


def _after_fork_in_child() -> None:
    """A forked child has no sampler thread (the extension says so too): none is owned."""
    global _owner, _owner_lock, _READER
    _owner_lock = threading.Lock()  # another thread may have held it at the fork
    if _owner is not None:
        _owner.running = False
    _owner = None
    _READER = _Ring()
    WATCHER.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _load() -> ModuleType | None:
    global _module, _import_error
    if _module is None and _import_error is None:
        try:
            _module = importlib.import_module(f"{__package__}._native_sampler")
        except ImportError as exc:
            _import_error = str(exc)
    return _module


def unavailable() -> str | None:
    """Why the native profiler cannot run here, or ``None`` when it can.

    >>> unavailable() is None or isinstance(unavailable(), str)
    True
    """
    if sys.implementation.name != "cpython" or sys.version_info[:2] not in SUPPORTED:
        shown = f"{sys.implementation.name} {sys.version_info[0]}.{sys.version_info[1]}"
        return f"it reads CPython 3.11 and 3.12 frames only, and this is {shown}"
    if _load() is None:
        return (
            f"its C extension is not built ({_import_error}); reinstall otel-adaprof "
            "where a C compiler and the Python headers are found"
        )
    return None


#: ``sample_scope: requests`` gives way to ``process`` once at least this many of the
#: sampler's looks outside requests (one a second while none is open) were taken and
#: this share of them found the GIL held: CPU outside requests the scope would not see
#: (a worker thread, a scheduled job). It stays ``process`` while the sampler runs.
OUTSIDE_MIN_PROBES = 10
OUTSIDE_BUSY_SHARE = 0.25


def request_hooks() -> tuple[Callable[[], None], Callable[[], None]] | None:
    """``(started, ended)``: what the span processor calls as each request (a local root
    span) opens and closes, so that ``sample_scope: requests`` samples only while one is
    open; ``None`` where the native profiler cannot run. Each call is one C function
    (an atomic add; the first request to open arms the sampler thread's timer for its
    first tick, and the last to close takes back a tick planned after it).

    >>> hooks = request_hooks()
    >>> hooks is None or all(callable(hook) for hook in hooks)
    True
    """
    if unavailable() is not None:
        return None
    module = _load()
    assert module is not None
    return module.request_started, module.request_ended


class RingCounts(NamedTuple):
    """What one take of the extension's ring moved into the store."""

    cpu: int  # the sampler's samples, on CPU
    off_cpu: int  # the sampler's samples of a GIL holder set aside (waiting)
    slow: int  # the slow-span watcher's samples
    slow_waiting: int  # of them, of a thread not on a CPU


class _Ring:
    """The extension's ring of samples and its frame names, taken by one reader at a
    time: the sampler's (the supervisor) or the slow-span watcher's (a span's end). The
    names are the process's, so one list of them is kept for both."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.frames: list[str] = []

    def take(
        self, store: SampleStore, version: int, slow_version: int, *, watermark: bool
    ) -> RingCounts:
        """Move every sample in the ring into ``store``: the sampler's under ``version``
        (a GIL holder set aside as waiting: on its spans, out of the CPU histogram), the
        watcher's under ``slow_version``, on their spans only (taken because their span
        was slow, they are not a uniform sample of the CPU). ``watermark``: move the
        store's watermark to the time up to which every sample is in."""
        module = _load()
        assert module is not None
        with self.lock:
            generation, names, got, watermark_ns = module.take(self.generation, len(self.frames))
            if generation != self.generation:
                self.generation, self.frames = generation, []
            self.frames.extend(frame_text(qual, file, line) for qual, file, line in names)
            frames = self.frames
            # (ident, off CPU, slow) -> samples: a GIL holder read while the scheduler had
            # set it aside is wall time, not CPU: on its spans, out of the CPU profile
            per_thread: dict[tuple[int, bool, bool], list[tuple[int, Stack, int]]] = {}
            for t_ns, ident, ids, off_cpu, slow in got:
                stack = tuple(frames[i] for i in ids)
                per_thread.setdefault((ident, off_cpu, slow), []).append((t_ns, stack, t_ns))
        counts = [0, 0, 0, 0]
        for (ident, off_cpu, slow), samples in per_thread.items():
            if slow:
                store.add_many(ident, samples, slow_version, idle=off_cpu, in_profile=False)
                counts[2] += len(samples)
                counts[3] += len(samples) if off_cpu else 0
            else:
                store.add_many(ident, samples, version, idle=off_cpu)
                counts[1 if off_cpu else 0] += len(samples)
        if watermark:
            store.set_watermark(watermark_ns)
        return RingCounts(*counts)


_READER = _Ring()


class NativeSampler:
    """The extension's sampler thread, feeding a :class:`SampleStore`.

    ``interval_s`` is the mean gap between reads (exponential gaps: no aliasing with
    the service's own periods); ``all_threads`` reads every thread at each read (wall
    mode) instead of the GIL holder (cpu mode). :meth:`take` moves the samples taken so
    far into the store; the supervisor calls it every few hundred milliseconds.

    ``on_cpu`` (cpu mode): a GIL holder read while it was not running — set aside by the
    scheduler, its CPU clock still — is wall time, not CPU. Its sample goes to the store
    as waiting (on its spans, out of the window's CPU histogram), so the profile reads
    CPU shares on a busy machine too: wall-time reads over-weight whatever code runs
    when the machine is busiest (docs/benchmarks.md, "A CPU profile under contention").
    """

    def __init__(
        self,
        store: SampleStore,
        interval_s: float,
        depth: int,
        version: int = 0,
        *,
        all_threads: bool = False,
        on_cpu: bool = True,
        on_ticks: Callable[[int, int, float], None] | None = None,
        scope: str = "process",
    ) -> None:
        why = unavailable()
        if why is not None:
            raise RuntimeError(f"the native profiler cannot run: {why}")
        self.store = store
        #: Config version the samples are taken under (the supervisor updates it,
        #: taking the samples of the version before first).
        self.version = version
        self.interval_s = interval_s
        self.depth = max(1, min(MAX_DEPTH, depth))
        self.all_threads = all_threads
        self.on_cpu = on_cpu
        #: ``process`` or ``requests`` (``Params.sample_scope``): with ``requests`` the
        #: thread reads only while a request is open (:func:`request_hooks`).
        self.scope = scope
        self._on_ticks = on_ticks
        self._cpu_before = 0.0  # CPU seconds of the sampler threads already stopped
        self._cpu_seen = 0.0  # the highest :meth:`cpu_seconds` returned
        self._cpu_lock = threading.Lock()
        self._native_id: int | None = None
        self._ticks_seen = 0
        #: The extension's counters at the last take (:meth:`outside_busy` reads them).
        self._stats: dict[str, int] = {}
        self.running = False
        self._take_lock = threading.Lock()  # the supervisor's and the poller's takes
        #: Reads that failed (a frame changed while read), and samples lost to a full ring.
        self.errors = 0
        self.dropped = 0
        #: GIL holders' samples read while the holder was not running (kept as waiting).
        self.off_cpu = 0

    @property
    def _ns(self) -> ModuleType:
        module = _load()
        assert module is not None  # unavailable() said so in __init__
        return module

    def start(self) -> None:
        """Start the sampler thread (one per process: another one running is an error)."""
        global _owner
        with _owner_lock:
            if _owner is not None and _owner is not self:
                raise RuntimeError("a native sampler already runs in this process")
            self._ns.start(
                self._interval_us(),
                self.depth,
                "wall",
                "all" if self.all_threads else "holder",
                self.on_cpu,
                self.scope,
            )
            _owner = self
        self.running = True
        self._ticks_seen = 0
        self._stats = {}  # the counters start again
        self._native_id = None

    def configure(
        self, interval_s: float, depth: int, all_threads: bool, scope: str = "process"
    ) -> None:
        """New settings, in force at the next read (a new interval plans from now)."""
        self.interval_s, self.all_threads, self.scope = interval_s, all_threads, scope
        self.depth = max(1, min(MAX_DEPTH, depth))
        if self.running:
            self._ns.configure(
                self._interval_us(), self.depth, "all" if all_threads else "holder", scope
            )

    def stop(self) -> None:
        """Stop the sampler thread (within a millisecond); its samples stay to :meth:`take`."""
        global _owner
        if not self.running:
            return
        self._ns.stop()
        stats = self._ns.stats()
        self._cpu_before += stats["cpu_ns"] / 1e9
        self._native_id = None
        self.running = False
        with _owner_lock:
            if _owner is self:
                _owner = None

    def outside_busy(self) -> bool:
        """Whether the looks outside requests found the GIL held often enough that
        ``sample_scope: requests`` would miss CPU the process spends (see
        :data:`OUTSIDE_BUSY_SHARE`), as of the last :meth:`take`; ``False`` while too
        few looks were taken."""
        if not self.running:
            return False
        stats = self._stats  # the last take's: the supervisor takes every 0.2-1 s
        probes = int(stats.get("outside_probes", 0))
        held = int(stats.get("outside_held", 0))
        return probes >= OUTSIDE_MIN_PROBES and held >= OUTSIDE_BUSY_SHARE * probes

    def _interval_us(self) -> int:
        return max(100, int(self.interval_s * 1e6))

    @property
    def native_id(self) -> int | None:
        """The sampler thread's native id while it runs."""
        if self.running and self._native_id is None:
            self._native_id = int(self._ns.stats()["native_id"]) or None
        return self._native_id

    def cpu_seconds(self) -> float:
        """CPU seconds of every sampler thread this object started (monotonic).

        Read from another thread while :meth:`stop` runs, the thread's clock can be gone
        before its seconds are in :attr:`_cpu_before` (and the extension's last count of
        them is a little short of the clock's): the highest value returned so far is
        returned until the sum passes it.
        """
        native = self.native_id
        live = thread_cpu_seconds(native) if native is not None else None
        with self._cpu_lock:
            self._cpu_seen = max(self._cpu_seen, self._cpu_before + (live or 0.0))
            return self._cpu_seen

    def take(self) -> int:
        """Move the samples taken so far into the store, under :attr:`version`, and move
        the store's watermark; the number of samples moved. Thread-safe."""
        with self._take_lock:
            return self._take()

    def _take(self) -> int:
        # the slow-span watcher's samples in the ring too (its spans are held for this
        # watermark while the sampler runs), under the version in force
        counts = _READER.take(self.store, self.version, self.version, watermark=True)
        self.off_cpu += counts.off_cpu
        WATCHER.count(counts)
        stats = self._stats = self._ns.stats()
        self.errors, self.dropped = int(stats["errors"]), int(stats["dropped"])
        if self._on_ticks is not None:
            ticks = int(stats["ticks"])
            self._on_ticks(self.version, max(0, ticks - self._ticks_seen), self.interval_s)
            self._ticks_seen = ticks
        return sum(counts)


#: Least time between two rounds of the watcher's reads (s): at most 100 a second, each
#: reading every thread whose span is due (one read a thread, about 80 µs of the
#: watcher's CPU each on the benchmark machine, the first reads of new code included:
#: bench/output/native_watch_s43.json), so the reads stay under about 1 % of a core
#: whatever the number of slow spans.
WATCH_MIN_GAP_S = 0.01


class SlowSpanWatcher:
    """Slow-span capture without the GIL: the extension's watcher thread.

    The span path registers each span as it starts, with when it turns slow
    (:meth:`watch`), and takes it out as it ends (:meth:`ended`); the watcher thread
    sleeps until the earliest registered span turns slow, reads that span's thread's
    frames as the sampler reads the GIL holder's, and reads it again every
    ``repeat_s`` while the span is open. Its samples are on their spans only (out of
    the CPU profile), *waiting* when the thread was not on a CPU while read. While the
    sampler runs, its takes bring them in (spans are held for its watermark); while it
    does not, the span join takes them in before it sends a span on
    (:meth:`take_ended`, with :attr:`deferred`: one take a pass, on the join's thread),
    else a span that was read takes them in as it ends. One per process (the
    extension's state is the process's): :data:`WATCHER`.

    Compared with the in-process capture (a Python thread woken at each span's turn,
    taking the GIL to read): no wake-up of a Python thread, no GIL, a read of tens of µs
    (docs/benchmarks.md, "The capture in the native sampler").
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = False
        self.store: SampleStore | None = None
        self.version: Callable[[], int] = lambda: 0
        #: Samples the watcher took (brought into a store), and of them waiting ones.
        self.samples = 0
        self.waiting_samples = 0
        self._cpu_before = 0.0
        #: CPU seconds of the takes made on the spans' threads as they end.
        self._cpu_taking = 0.0
        self._cpu_seen = 0.0
        self._settings: tuple[int, int] | None = None
        #: Whether a span join takes the samples of the spans that ended
        #: (:meth:`take_ended`, before it sends a span on), rather than each span's
        #: thread as the span ends: one take a join pass (about a second while no
        #: sampler runs) instead of one per slow span, and none on the service's
        #: threads (docs/agent.md). The agent sets it as it puts its span joins in.
        self.deferred = False
        self._ended_unread = False
        #: Takes made on the spans' threads as they ended (without :attr:`deferred`).
        self.span_thread_takes = 0

    def after_fork(self) -> None:
        """In a forked child: no watcher thread (the extension's state is reset too)."""
        self._lock = threading.Lock()
        self.running = False
        self._settings = None

    def start(
        self, store: SampleStore, version: Callable[[], int], repeat_s: float, depth: int
    ) -> None:
        """Start the watcher thread (running: new settings, in force at once)."""
        module = _load()
        if module is None:
            raise RuntimeError(f"the native watcher cannot run: {unavailable()}")
        settings = (max(1, int(repeat_s * 1e6)), max(1, min(MAX_DEPTH, depth)))
        with self._lock:
            self.store, self.version = store, version
            if self.running and settings == self._settings:
                return
            module.watch_start(
                repeat_us=settings[0], depth=settings[1], on_cpu=True,
                min_gap_us=int(WATCH_MIN_GAP_S * 1e6),
            )  # fmt: skip
            self._settings = settings
            self.running = True

    def stop(self) -> None:
        """Stop the watcher thread; every span registered is forgotten, the samples
        taken so far are brought in."""
        module = _load()
        with self._lock:
            if not self.running or module is None:
                return
            module.watch_stop()
            self._cpu_before += int(module.watch_stats()["cpu_ns"]) / 1e9
            self.running = False
            self._settings = None
        self._take()

    def watch(self, span_id: int, due_ns: int, ident: int = 0, native_id: int = 0) -> bool:
        """Read the thread of span ``span_id`` once the span is open at ``due_ns`` (unix
        ns): the calling thread's (the span path, as the span starts), or the thread
        ``ident`` (native id ``native_id``). Whether it is watched."""
        module = _module
        if module is None or not self.running:
            return False
        return bool(module.watch(span_id, due_ns, ident, native_id))

    def ended(self, span_id: int) -> None:
        """Called by the span path as a span ends: forget it, and bring its samples in
        now when no sampler's take will (the span join looks at the span next)."""
        module = _module
        if module is None or not self.running:
            return
        if module.unwatch(span_id) > 0 and (_owner is None or not _owner.running):
            if self.deferred:  # the span join takes them before it sends the span on
                self._ended_unread = True
                return
            t0 = time.thread_time()  # the agent's work on the span's thread: its CPU
            self._take()
            with self._lock:
                self._cpu_taking += time.thread_time() - t0
                self.span_thread_takes += 1

    def take_ended(self) -> None:
        """Bring in the samples of the spans read that ended since the last take (the
        span join calls it before sending each span on; a flag's look when there are
        none). The take's CPU is the calling thread's."""
        if not self._ended_unread:
            return
        self._ended_unread = False  # before the take: a span ending meanwhile sets it again
        self._take()

    def _take(self) -> None:
        store = self.store
        if store is None:
            return
        version = self.version()
        self.count(_READER.take(store, version, version, watermark=False))

    def count(self, counts: RingCounts) -> None:
        """Count the watcher's samples of a take (the sampler's takes bring them too)."""
        if counts.slow:
            self.samples += counts.slow
            self.waiting_samples += counts.slow_waiting

    def stats(self) -> dict[str, int]:
        """The extension's figures: ``open`` spans registered, ``spans`` read at least
        once, ``reads``, ``full`` (spans not registered: the table was full), ..."""
        module = _load()
        return dict(module.watch_stats()) if module is not None else {}

    def cpu_seconds(self) -> float:
        """CPU seconds of every watcher thread of this process so far, and of the takes
        of its samples on the spans' threads (monotonic)."""
        module = _module
        live = 0.0
        if module is not None and self.running:
            native = int(module.watch_stats()["native_id"])
            live = (thread_cpu_seconds(native) or 0.0) if native else 0.0
        with self._lock:
            spent = self._cpu_before + self._cpu_taking + live
            self._cpu_seen = max(self._cpu_seen, spent)
            return self._cpu_seen


#: The process's slow-span watcher.
WATCHER = SlowSpanWatcher()
