"""New code: a function of the service's its CPU samples never had, now there again and again.

A hot path on a rare endpoint adds little CPU per request on average (the benchmark
ledger's: +18 % on one request in ten), so the CUSUM of CPU per request takes seconds
to rise, and in the watch (no steady sampling) nothing else samples it. But the slow
requests that run it are slow *because* of it: the slow-span capture reads their stacks,
and those stacks have the new code on top. Replayed through this class, session 45's
six native benchmark runs (the feature off) had ``compress_report`` as new code
0.04-2.0 s after the hot path's onset in each (``bench/new_code_signal.py``,
``bench/output/new_code_signal.json``).

:class:`NewCode` watches the *innermost own function* (:func:`code_key`: ``name
(file)``, the line left out) of every CPU sample the agent keeps — the sampler's and the
slow-span capture's, not a waiting one (a thread not on a CPU, or in a known wait: a CPU
glimpse cannot explain it). That is the frame nearest the leaf that is not the standard
library's, OpenTelemetry's or this agent's (:func:`is_framework`): the service's own
code, or a third-party library it calls. A sample with no such frame has no key and is
never new code. Until :data:`WARMUP_SAMPLES` have been seen it only learns which
functions the process runs. After that, a function it does not know is *new code* once
it tops :data:`HITS` samples within :data:`HIT_WINDOW_S`; it is then known, and (with the
native profiler) the fast loop lets the burst reflex take a glimpse
(:meth:`~otel_adaprof.instrumentation.control.reflex.BurstReflex.react`).

The other own functions of a sample's stack, its callers, are learnt as known as the
stack is first seen (:meth:`NewCode.know`): a handler seen only while it called other
code of the service's is not new when it first calls a socket's.

Why not the leaf itself (as in session 46): a framework function seen for the first
time — a socket opened, a DNS lookup, an OpenTelemetry context detached — is common in a
service's life and says nothing of its own code. Keyed by the leaf, session 45's and
46's 25 native benchmark runs replayed had 2-10 such new code a run while the watch was
in force (143 in all), each a glimpse's cost; keyed by the innermost own function with
its callers known, one in all 25 runs, and the hot path was new code at the same time in
every run (``bench/new_code_signal.py --compare``, ``bench/output/new_code_keys.json``).
Two hits within the window, not one, keep out a single sample of a rarely-run function
of the service's own.

A function new code returned to is not new: what the agent knows is kept (up to
:data:`MAX_KNOWN` functions, the oldest forgotten first). New code that spends its CPU
in the standard library (a new function of the service's calling ``json.dumps``) is new
by its own frame. Not new code by this test, and left to the CPU-per-request signal:
known code calling a function it never called before, and a new function whose CPU is
spent in a known function of the service's (it is that function's caller, so known).

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
import sys
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache

#: CPU samples seen before a function may be new code: until then the functions seen
#: are learnt as the process's own (a learning window's 100 Hz, or a minute of the
#: watch's slow-span captures, is this many).
WARMUP_SAMPLES = 200
#: Samples of one unknown function that make it new code, within HIT_WINDOW_S.
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


#: Top-level modules whose frames are not the service's own code besides the standard
#: library's (``sys.stdlib_module_names``): OpenTelemetry (its SDK and instrumentations
#: run on the service's threads) and this package (the agent's span path does too).
FRAMEWORK_MODULES = frozenset({"opentelemetry", "otel_adaprof"})
#: Folders of those modules that hold applications: the demo's and the benchmark's
#: services are this package's, and their code is theirs.
APPLICATION_FOLDERS = ("otel_adaprof/demo/",)
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))


def is_framework(frame: str) -> bool:
    """Whether a frame (``function (file:line)``, the file below its ``sys.path``
    entry) is the standard library's, OpenTelemetry's or this agent's, or has no file.

    Judged by the file's top-level name, as the frame's text has no more: a module of
    the service's named as one of the standard library's (its own ``profile.py``) is
    taken for it, and its functions are never new code.

    >>> is_framework("create_connection (socket.py:851)")
    True
    >>> is_framework("BufferedSubFile.push (email/feedparser.py:102)")
    True
    >>> is_framework("detach (opentelemetry/context/__init__.py:160)")
    True
    >>> is_framework("compress_report (otel_adaprof/demo/workload.py:72)")
    False
    >>> is_framework("Flask.dispatch_request (flask/app.py:880)"), is_framework("<native>")
    (False, True)
    """
    start = frame.rfind(" (")
    if start < 0 or frame[start + 2 : start + 3] == "<":
        return True
    path = frame[start + 2 :]
    top = path.split("/", 1)[0].split(":", 1)[0]
    top = top.removesuffix(".py")
    if top in FRAMEWORK_MODULES:
        return not path.startswith(APPLICATION_FOLDERS)
    return top in _STDLIB


@lru_cache(maxsize=8192)
def _own_function(frame: str) -> str:
    return "" if is_framework(frame) else leaf_function(frame)


def own_functions(stack: Sequence[str]) -> tuple[str, ...]:
    """The functions of ``stack`` (root first) that are not :func:`is_framework`, as
    :func:`leaf_function`, innermost first, each once.

    >>> own_functions(("main (app.py:3)", "fetch (app.py:40)", "connect (socket.py:851)"))
    ('fetch (app.py)', 'main (app.py)')
    >>> own_functions(("serve_forever (socketserver.py:233)", "select (selectors.py:415)"))
    ()
    """
    out: dict[str, None] = {}
    for frame in reversed(stack):
        own = _own_function(frame)
        if own:
            out[own] = None
    return tuple(out)


def code_key(stack: Sequence[str]) -> str:
    """A sample's key: its innermost own function (:func:`own_functions`), ``""`` when
    it has none.

    >>> code_key(("main (app.py:3)", "fetch (app.py:40)", "create_connection (socket.py:851)"))
    'fetch (app.py)'
    """
    own = own_functions(stack)
    return own[0] if own else ""


class NewCode:
    """The own functions of the process's CPU samples, and those new to it (:meth:`observe`
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
        """One CPU sample whose key is ``function`` (:func:`code_key`), taken at
        ``t_ns`` (unix ns); whether it made ``function`` new code. Called for every CPU
        sample, by one caller at a time (the sample store, under its lock): a known
        function, nearly every call, takes no lock of this object."""
        self.samples += 1
        if not function or function in self._known:  # no own frame, or known
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

    def know(self, functions: Sequence[str]) -> None:
        """Learn ``functions`` as the process's own, without a sample of their own: the
        callers on a sample's stack (a handler seen only calling other code of the
        service's is known when it calls a socket's for the first time)."""
        known = self._known
        if all(f in known for f in functions):
            return
        with self._lock:
            for function in functions:
                if function not in known:
                    self._candidates.pop(function, None)
                    self._remember(function)

    def _remember(self, function: str) -> None:  # under self._lock
        self._known[function] = None
        if len(self._known) > MAX_KNOWN:
            del self._known[next(iter(self._known))]

    def take(self) -> list[str]:
        """The functions that became new code since the last take."""
        with self._lock:
            new, self._new = self._new, []
        return new
