"""New code: a function the process's CPU samples never had on top, now there again and again.

A hot path on a rare endpoint adds little CPU per request on average (the benchmark
ledger's: +18 % on one request in ten), so the CUSUM of CPU per request takes seconds
to rise, and in the watch (no steady sampling) nothing else samples it. But the slow
requests that run it are slow *because* of it: the slow-span capture reads their stacks,
and those stacks have the new code on top. Replayed through this class, session 45's
six native benchmark runs (the feature off) had ``compress_report`` as new code
0.04-2.0 s after the hot path's onset in each (``bench/new_code_signal.py``,
``bench/output/new_code_signal.json``).

:class:`NewCode` watches the *leaf function* (``name (file)``, the line left out) of
every CPU sample the agent keeps — the sampler's and the slow-span capture's, not a
waiting one (a thread not on a CPU, or in a known wait: a CPU glimpse cannot explain
it). Until :data:`WARMUP_SAMPLES` have been seen it only learns which functions the
process runs. After that, a leaf function it does not know is *new code* once it tops
:data:`HITS` samples within :data:`HIT_WINDOW_S` (one sample of a rarely-run framework
function is common — a socket opened, a metric recorded — two close together far
rarer: the same replay counts 4-9 other functions a run while the watch was in force,
waiting samples included); it is then known, and (with the native profiler) the fast
loop lets the burst reflex take a glimpse
(:meth:`~otel_adaprof.instrumentation.control.reflex.BurstReflex.react`).

A function new code returned to is not new: what the agent knows is kept (up to
:data:`MAX_KNOWN` functions, the oldest forgotten first). Code whose CPU is spent in a
function the process already runs (a new caller of ``json.dumps``) is not new code by
this test; the CPU-per-request signal still sees it.

    >>> seen = NewCode(warmup=3)
    >>> [seen.observe("handle (app.py)", t * 10**9) for t in range(3)]  # the warm-up
    [False, False, False]
    >>> seen.observe("compress (app.py)", 4 * 10**9)  # once: not yet
    False
    >>> seen.observe("compress (app.py)", 5 * 10**9)  # twice within 5 s: new code
    True
    >>> seen.take(), seen.take(), seen.events
    (['compress (app.py)'], [], 1)
    >>> seen.observe("compress (app.py)", 6 * 10**9)  # known from now on
    False
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

#: CPU samples seen before a function may be new code: until then the functions seen
#: are learnt as the process's own (a learning window's 100 Hz, or a minute of the
#: watch's slow-span captures, is this many).
WARMUP_SAMPLES = 200
#: Samples of one unknown leaf function that make it new code, within HIT_WINDOW_S.
HITS = 2
#: Seconds within which those samples must fall (sample time, not the clock's).
HIT_WINDOW_S = 5.0
#: Functions kept as known (the oldest forgotten first).
MAX_KNOWN = 4096
#: Unknown functions followed at once (the oldest forgotten first).
MAX_CANDIDATES = 256

_LINE = re.compile(r":\d+\)$")


def leaf_function(frame: str) -> str:
    """A frame's function, its line left out: ``name (file)``.

    >>> leaf_function("compress_report (otel_adaprof/demo/workload.py:72)")
    'compress_report (otel_adaprof/demo/workload.py)'
    >>> leaf_function("<native>")
    '<native>'
    """
    return _LINE.sub(")", frame)


class NewCode:
    """Leaf functions of the process's CPU samples, and those new to it (:meth:`observe`
    from one thread at a time, :meth:`take` from any).

    ``on_new`` is called (on the thread that added the sample, under no lock of this
    object; it must not block) when a function becomes new code: the agent wakes its
    fast loop with it.
    """

    def __init__(
        self,
        warmup: int = WARMUP_SAMPLES,
        hits: int = HITS,
        hit_window_s: float = HIT_WINDOW_S,
        on_new: Callable[[], None] | None = None,
    ) -> None:
        self.warmup = warmup
        self.hits = max(1, hits)
        self.hit_window_ns = int(hit_window_s * 1e9)
        self.on_new = on_new
        #: CPU samples seen, and functions that became new code (monotonic counters).
        self.samples = 0
        self.events = 0
        self._known: dict[str, None] = {}
        self._candidates: dict[str, list[int]] = {}
        self._new: list[str] = []
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        """Whether new code was seen that :meth:`take` has not handed over yet."""
        return bool(self._new)

    def observe(self, function: str, t_ns: int) -> bool:
        """One CPU sample whose leaf is ``function`` (:func:`leaf_function`), taken at
        ``t_ns`` (unix ns); whether it made ``function`` new code. Called for every CPU
        sample, by one caller at a time (the sample store, under its lock): a known
        function, nearly every call, takes no lock of this object."""
        self.samples += 1
        if function in self._known:
            return False
        with self._lock:
            if self.samples <= self.warmup:
                self._remember(function)
                return False
            recent = self._candidates.pop(function, [])
            times = [t for t in recent if t_ns - t <= self.hit_window_ns]
            times.append(t_ns)
            if len(times) < self.hits:
                self._candidates[function] = times
                if len(self._candidates) > MAX_CANDIDATES:
                    del self._candidates[next(iter(self._candidates))]
                return False
            self._remember(function)
            self._new.append(function)
            self.events += 1
        if self.on_new is not None:
            self.on_new()
        return True

    def _remember(self, function: str) -> None:  # under self._lock
        self._known[function] = None
        if len(self._known) > MAX_KNOWN:
            del self._known[next(iter(self._known))]

    def take(self) -> list[str]:
        """The functions that became new code since the last take."""
        with self._lock:
            new, self._new = self._new, []
        return new
