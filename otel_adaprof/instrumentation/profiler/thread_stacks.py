"""Reading other threads' Python stacks in-process, safely on every CPython version.

Slow-span capture (:mod:`.slow_spans`) and the in-process fallback sampler
(:mod:`.inprocess`) both read other threads' stacks from inside the service. This
module is the one place that does it, with the backend that is safe on the running
interpreter (:func:`safe_backend`):

* ``walk`` — ``sys._current_frames()`` and ``f_back``, in Python, with the cyclic
  collector held off for the read (``gc.disable()``, turned back on only if the read
  turned it off). Cheap (tens of µs for a few threads; only the threads asked for are
  walked), and used on every GIL build. On CPython 3.11 the walk *without* the hold is
  a use-after-free: making a frame object for another thread's frame allocates, the
  allocation may start a collection whose finalisers hand the GIL to that thread,
  which pops the frame (CPython issues 106883 and 116969; from 3.12 the collector runs
  only between bytecodes). In the soak every child walking unguarded on 3.11.7 crashed
  (SIGSEGV) or hung (9 of 9 in 117,000 reads, bench/output/thread_stacks_soak_s25.json);
  with the hold none did (see that file), nor on 3.10, 3.12 and 3.13 with or without it.
* ``faulthandler`` — ``faulthandler.dump_traceback(fd, all_threads=True)`` into a
  non-blocking pipe, then parsed: it walks every thread's interpreter frames in one C
  call under the GIL, touching no frame object (the same read py-spy does from
  outside). Safe without the hold, but about 0.08 ms per thread of the process, 20
  frames deep (7–10 times the walk, bench/output/thread_stacks_cost.json), with the GIL
  held meanwhile; it lists at most 100 threads and 100 frames per thread. Used on
  CPython 3.11 until session 25; kept for :func:`safe_backend` to pick again should a
  release prove the walk unsafe.
* ``off`` — free-threaded builds with the GIL disabled, where neither is serialised
  by a GIL: no stacks are read (one log line says so at the first read).

Both users cap their rate by a read's measured cost (:meth:`ThreadStacks.min_interval_s`).
``bench/thread_stacks_soak.py`` is the evidence (crashes per reads, per backend and
version) and the cost table; docs/agent.md states what runs where.

Frames are named as py-spy names them (``Class.method (file.py:12)``, the code's
qualified name and the file below its ``sys.path`` entry), so both backends' samples
merge with py-spy's in one histogram. faulthandler prints only ``co_name``; the
qualified name is found once per function in the loaded modules (:class:`QualNames`).

Any failure of a read disables the reader, logged once; it never raises into the app.

    >>> import threading
    >>> def parked(ready: threading.Event, done: threading.Event) -> None:
    ...     ready.set(); done.wait()
    >>> ready, done = threading.Event(), threading.Event()
    >>> worker = threading.Thread(target=parked, args=(ready, done)); worker.start()
    >>> _ = ready.wait(5)
    >>> reader = ThreadStacks("faulthandler")
    >>> stack = reader.read(depth=64, idents=[worker.ident])[worker.ident]
    >>> [frame.split(" ")[0] for frame in stack[-3:]]
    ['parked', 'Event.wait', 'Condition.wait']
    >>> ThreadStacks("walk").read(depth=64)[worker.ident] == stack
    True
    >>> done.set(); worker.join(); reader.close()
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import re
import sys
import sysconfig
import threading
import time
from collections.abc import Collection, Iterable
from types import CodeType, FrameType, FunctionType, ModuleType

from otel_adaprof.instrumentation.join.stacks import FrameNames, Stack, frame_text

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("otel_adaprof.agent")

BACKENDS = ("walk", "faulthandler", "off")
#: Weight of the newest read in the running mean of a read's cost.
COST_WEIGHT = 0.2
#: A read counts at most this many times the running mean (a read that named new
#: functions, or one preempted by the OS, moves it by a bounded step).
MAX_STEP = 4.0
#: Distinct faulthandler lines and qualified names remembered (then started again).
MAX_CACHED = 20_000
#: Size asked for the pipe faulthandler writes into (bytes): 100 threads of 100 frames
#: fit, at about 100 bytes a frame. A pipe costs less than half of an in-memory file
#: (memfd) per ``write`` (bench/output/thread_stacks_cost.json).
PIPE_BYTES = 1 << 20
#: A pipe's size where it cannot be set (Linux's default).
DEFAULT_PIPE_BYTES = 1 << 16

_off_said = threading.Event()  # the "off" backend is logged once per process
#: Why in-process stack reads stopped for the whole process (the first failed read).
FAILED: list[str] = []
_HEADER = re.compile(rb"^(?:Current thread|Thread) 0x([0-9a-fA-F]+)")
_FRAME = re.compile(r'^  File "(.*)", line (\d+|\?\?\?) in (.*)$')


def gil_disabled() -> bool:
    """Whether this is a free-threaded build running without the GIL."""
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    is_enabled = getattr(sys, "_is_gil_enabled", None)
    return not (is_enabled is not None and is_enabled())


def safe_backend(version: tuple[int, int] | None = None, implementation: str | None = None) -> str:
    """The backend found safe on this interpreter: the walk (the collector held off
    while it reads, which is what makes it safe on CPython 3.11,
    bench/thread_stacks_soak.py); a free-threaded build without the GIL gets none.

    >>> safe_backend((3, 11), "cpython"), safe_backend((3, 12), "cpython")
    ('walk', 'walk')
    >>> safe_backend((3, 10), "cpython"), safe_backend((3, 13), "cpython")
    ('walk', 'walk')
    """
    running = version is None and implementation is None
    if running and sys.implementation.name == "cpython" and gil_disabled():
        return "off"
    return "walk"  # every GIL build, 3.10 to 3.13 (and other implementations)


class QualNames:
    """A function's qualified name from its file, ``co_name`` and a line in it.

    Found by looking through the code objects reachable from the module loaded from
    that file (functions, classes, their methods and nested functions), once per file;
    the innermost function of that name holding the line wins. A function it cannot
    find (code from ``exec``, a module not loaded from a file) keeps its ``co_name``.

        >>> names = QualNames()
        >>> code = QualNames.__call__.__code__
        >>> names(code.co_filename, "__call__", code.co_firstlineno + 1)
        'QualNames.__call__'
        >>> names(code.co_filename, "nowhere", 1)
        'nowhere'
    """

    def __init__(self) -> None:
        #: file → co_name → [(first line, last line, qualified name)], innermost first.
        self._files: dict[str, dict[str, list[tuple[int, int, str]]]] = {}
        self._scanned_with: dict[str, int] = {}
        self._module_files: dict[str, list[ModuleType]] = {}
        self._modules_indexed = -1

    def __call__(self, path: str, name: str, line: int) -> str:
        for _ in range(2):
            names = self._files.get(path)
            if names is not None:
                for first, last, qualname in names.get(name, ()):
                    if first <= line <= last:
                        return qualname
            # Unknown file, or a function not in it when it was looked at: look again
            # only when modules were imported since (never more than once per import).
            if self._scanned_with.get(path) == len(sys.modules):
                break
            self._scan(path)
        return name

    def _scan(self, path: str) -> None:
        if len(self._files) > MAX_CACHED:
            self._files.clear()
            self._scanned_with.clear()
        self._scanned_with[path] = len(sys.modules)
        if self._modules_indexed != len(sys.modules):
            self._index_modules()
        names: dict[str, list[tuple[int, int, str]]] = {}
        for module in self._module_files.get(path, ()):
            for code in _codes_in(module, path):
                lines = [line for _s, _e, line in code.co_lines() if line is not None]
                qualname = getattr(code, "co_qualname", code.co_name)
                last = max(lines, default=code.co_firstlineno)
                names.setdefault(code.co_name, []).append((code.co_firstlineno, last, qualname))
        for spans in names.values():
            spans.sort(key=lambda span: -span[0])  # a nested function starts later
        self._files[path] = names

    def _index_modules(self) -> None:
        self._modules_indexed = len(sys.modules)
        files: dict[str, list[ModuleType]] = {}
        for module in list(sys.modules.values()):
            if type(module) is not ModuleType:
                continue
            file = vars(module).get("__file__")
            if not isinstance(file, str) or not file.endswith(".py"):
                continue
            files.setdefault(file, []).append(module)
            absolute = os.path.abspath(file)
            if absolute != file:
                files.setdefault(absolute, []).append(module)
        self._module_files = files


def _codes_in(module: ModuleType, path: str) -> list[CodeType]:
    """Code objects of ``path`` reachable from the module's namespace.

    Only plain types are looked into (``type(obj) is ...``): no attribute of an app's
    object is read, so no app code (a proxy's ``__getattr__``) runs.
    """
    out: list[CodeType] = []
    seen: set[int] = set()
    name = module.__name__
    todo: list[object] = list(vars(module).values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kind = type(obj)
        if kind is FunctionType:
            func = obj
            assert isinstance(func, FunctionType)
            todo.append(func.__code__)
            wrapped = func.__dict__.get("__wrapped__")
            if wrapped is not None:
                todo.append(wrapped)
        elif kind is CodeType:
            code = obj
            assert isinstance(code, CodeType)
            if code.co_filename == path:
                out.append(code)
            todo.extend(c for c in code.co_consts if type(c) is CodeType)
        elif kind in (staticmethod, classmethod):
            todo.append(obj.__func__)  # type: ignore[attr-defined]
        elif kind is property:
            todo.extend((obj.fget, obj.fset, obj.fdel))  # type: ignore[attr-defined]
        elif isinstance(kind, type) and issubclass(kind, type):
            attrs = vars(obj)
            if attrs.get("__module__") == name:
                todo.extend(attrs.values())
    return out


def _file_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


class ThreadStacks:
    """Reads other threads' stacks with one backend; cheap to call, never raises.

    One reader per reading thread (it holds a pipe for ``faulthandler``). A failed
    read turns every reader of the process off (:data:`FAILED`).
    """

    def __init__(self, backend: str | None = None, *, hold_gc: bool = True) -> None:
        chosen = backend or safe_backend()
        if chosen not in BACKENDS:
            raise ValueError(f"thread stacks backend: {chosen!r} is not one of {BACKENDS}")
        self.backend = chosen
        #: Whether the walk holds the cyclic collector off while it runs (see
        #: :meth:`_walk`); False only to reproduce CPython 3.11's crash in the soak.
        self.hold_gc = hold_gc
        #: Reads done, and the running mean of one read's CPU time (s) from the
        #: second read on; ``faulthandler`` holds the GIL for most of it.
        self.reads = 0
        self.cost_s = 0.0
        #: Why reading stopped (a failure, or no safe backend), or None.
        self.failed: str | None = None
        self._names = FrameNames()
        self._qualnames = QualNames()
        self._lines: dict[bytes, str] = {}
        self._pipe: tuple[int, int] | None = None  # (read end, write end), non-blocking
        self._pipe_size = 0
        self._pipe_pid = 0
        self._pipe_id = (0, 0)
        self._stretch_said = False
        self._lock = threading.Lock()
        if chosen == "off":
            self.failed = "free-threaded build without the GIL: no safe way to read stacks"
            if not _off_said.is_set():
                _off_said.set()
                log.warning("otel-adaprof: no in-process stack reads: %s", self.failed)

    @property
    def active(self) -> bool:
        """Whether reads return stacks (the backend is not off nor disabled)."""
        if self.failed is None and FAILED:
            self.failed = FAILED[0]
        return self.failed is None

    def min_interval_s(self, core_share: float) -> float:
        """Shortest interval between reads that keeps them under ``core_share`` of a core."""
        return self.cost_s / core_share if core_share > 0 else 0.0

    def interval_s(self, asked_s: float, core_share: float, user: str) -> float:
        """The interval in force: ``asked_s``, or longer to keep reads under
        ``core_share`` of a core (said once per process, at INFO, when it is over twice
        ``asked_s``)."""
        floor = self.min_interval_s(core_share)
        if floor > 2 * asked_s and not self._stretch_said:
            self._stretch_said = True
            log.info(
                "otel-adaprof: %s reads stacks every %.0f ms instead of %.0f ms: a read "
                "costs %.2f ms here (%s), capped at %g %% of a core",
                user,
                floor * 1e3,
                asked_s * 1e3,
                self.cost_s * 1e3,
                self.backend,
                core_share * 100,
            )
        return max(asked_s, floor)

    def read(self, depth: int, idents: Collection[int] | None = None) -> dict[int, Stack]:
        """``{thread ident: stack root-first, its last depth frames}`` of other threads.

        ``idents`` limits the threads returned (all others but the caller when None).
        Empty when reading failed or is off.
        """
        if not self.active or depth <= 0:
            return {}
        me = threading.get_ident()
        with self._lock:
            t0 = time.thread_time()
            try:
                if self.backend == "walk":
                    stacks = self._walk(depth, idents, me)
                else:
                    stacks = self._dump(depth, idents, me)
            except Exception as exc:  # never into the app: stop reading, say so once
                self.failed = f"{type(exc).__name__}: {exc}"
                FAILED.append(self.failed)
                log.warning(
                    "otel-adaprof: reading thread stacks (%s) failed, in-process stack "
                    "reads are off for this process: %s",
                    self.backend,
                    self.failed,
                )
                self.close()
                return {}
            spent = time.thread_time() - t0
        self.reads += 1
        if self.reads > 1:  # the first read fills the name caches: not a typical cost
            if self.reads == 2:
                self.cost_s = spent
            else:  # a one-off (new functions named) moves the mean by a bounded step
                spent = min(spent, MAX_STEP * self.cost_s)
                self.cost_s += COST_WEIGHT * (spent - self.cost_s)
        return stacks

    def close(self) -> None:
        """Close the pipe (a later read opens a new one)."""
        pipe, self._pipe = self._pipe, None
        for fd in pipe or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    # backends ---------------------------------------------------------------------

    def _walk(self, depth: int, idents: Collection[int] | None, me: int) -> dict[int, Stack]:
        # The collector is held off for the whole walk. On CPython 3.11 both
        # ``sys._current_frames()`` and ``f_back`` make frame objects for another
        # thread's interpreter frames from raw pointers into its frame stack; making one
        # allocates, an allocation may start a collection, and a collection runs
        # finalisers, Python code that can hand the GIL to that very thread, which then
        # pops the frame the pointer points at (a use-after-free: SIGSEGV, or the
        # collector deadlocking on the runtime's thread-list lock that
        # ``_current_frames`` holds; CPython issues 106883 and 116969, fixed in 3.12 by
        # collecting only between bytecodes). With the collector off, nothing inside
        # those C calls gives up the GIL; between our bytecodes we hold only frame
        # objects, which own their data once their frame is popped.
        # bench/thread_stacks_soak.py: the unguarded walk crashes or hangs its children
        # on 3.11, the guarded one does not. The collector is turned back on only if
        # this read turned it off.
        out: dict[int, Stack] = {}
        names = self._names
        held = self.hold_gc and gc.isenabled()
        if held:
            gc.disable()
        try:
            frames = sys._current_frames()
            frame: FrameType | None = None
            wanted: Iterable[int] = frames.keys() if idents is None else idents
            for tid in wanted:
                frame = frames.get(tid)
                if frame is None or tid == me:
                    continue
                stack: list[str] = []
                while frame is not None and len(stack) < depth:
                    stack.append(names(frame))
                    frame = frame.f_back
                stack.reverse()
                out[tid] = tuple(stack)
            # the frame objects are dropped at once: a frame of another thread is best
            # not kept while that thread moves on
            del frames, frame
        finally:
            if held:
                gc.enable()
        return out

    def _open_pipe(self) -> tuple[int, int]:
        if self._pipe is not None and self._pipe_pid == os.getpid():
            return self._pipe
        self.close()  # a forked child closes its copies and gets its own
        read_end, write_end = os.pipe()
        self._pipe, self._pipe_pid = (read_end, write_end), os.getpid()
        self._pipe_id = _file_id(write_end)
        # Never blocks: a full pipe loses the end of the text (it is cut below).
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
        self._pipe_size = DEFAULT_PIPE_BYTES
        if set_size is not None and fcntl is not None:
            with contextlib.suppress(OSError):  # the system's cap may be lower
                self._pipe_size = fcntl.fcntl(write_end, set_size, PIPE_BYTES)
        return self._pipe

    def _dump(self, depth: int, idents: Collection[int] | None, me: int) -> dict[int, Stack]:
        read_end, write_end = self._open_pipe()
        if _file_id(write_end) != self._pipe_id:  # closed, its number reused by the app
            raise OSError(f"the stacks pipe (fd {write_end}) was closed by someone else")
        faulthandler.dump_traceback(write_end, all_threads=True)  # one C call, GIL held
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(read_end, self._pipe_size):
                chunks.append(chunk)
        text = b"".join(chunks)
        if not _HEADER.match(text):
            raise OSError(f"faulthandler wrote no thread header: {text[:60]!r}")
        if len(text) >= self._pipe_size:  # full: the last thread may be cut, drop it
            text = text[: text.rfind(b"\n\n")]
        return self.parse(text, depth, idents, me)

    def parse(
        self, text: bytes, depth: int, idents: Collection[int] | None = None, me: int = 0
    ) -> dict[int, Stack]:
        """Stacks from faulthandler's all-threads text (``idents``: only these threads).

        >>> text = (b'Thread 0x00000000000000ab (most recent call first):\\n'
        ...         b'  File "/srv/app/shop.py", line 12 in burn\\n'
        ...         b'  File "/srv/app/shop.py", line 3 in <module>\\n'
        ...         b'\\n'
        ...         b'Current thread 0x00000000000000cd (most recent call first):\\n'
        ...         b'  File "/srv/app/agent.py", line 7 in read\\n')
        >>> ThreadStacks("faulthandler").parse(text, depth=8, me=0xCD)
        {171: ('<module> (app/shop.py:3)', 'burn (app/shop.py:12)')}
        """
        wanted = None if idents is None else set(idents)
        out: dict[int, Stack] = {}
        lines = self._lines
        if len(lines) > MAX_CACHED:
            lines.clear()
        tid = -1
        stack: list[str] = []
        for raw in text.split(b"\n"):
            if not raw.startswith(b"  "):  # a thread header, a blank line, or "..."
                if tid >= 0:
                    out[tid] = tuple(reversed(stack))
                header = _HEADER.match(raw)
                tid = int(header.group(1), 16) if header else -1
                if tid == me or (wanted is not None and tid not in wanted):
                    tid = -1
                stack = []
                continue
            if tid < 0 or len(stack) >= depth:
                continue
            frame = lines.get(raw)
            if frame is None:
                frame = self._frame(raw)
                if frame is None:  # "<no Python frame>", a cut ("  ...")
                    continue
                lines[raw] = frame
            stack.append(frame)
        if tid >= 0:
            out[tid] = tuple(reversed(stack))
        return out

    def _frame(self, raw: bytes) -> str | None:
        match = _FRAME.match(raw.decode("ascii", "backslashreplace"))
        if match is None:
            return None
        path, line_text, name = match.groups()
        line = int(line_text) if line_text.isdigit() else 0
        qualname = self._qualnames(path, name, line) if line else name
        return frame_text(qualname, path, line)


__all__ = ["BACKENDS", "FAILED", "QualNames", "ThreadStacks", "gil_disabled", "safe_backend"]
