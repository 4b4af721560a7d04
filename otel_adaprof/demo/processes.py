"""Child processes the demo and the benchmark start, and their guaranteed cleanup.

Every child runs in its own process group (so py-spy children of the service go with
it) and is stopped — SIGTERM to the group, SIGKILL after a grace period — when
:meth:`Children.stop_all` runs: on normal exit, at interpreter exit (``atexit``), on
SIGTERM/SIGHUP (turned into ``SystemExit``) and on Ctrl-C (``KeyboardInterrupt``).

Usage::

    >>> import sys
    >>> from otel_adaprof.demo.processes import Children
    >>> with Children() as kids:
    ...     p = kids.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    ...     p.poll() is None
    True
    >>> p.poll() is not None
    True
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

#: Seconds a child gets to exit after SIGTERM before SIGKILL.
GRACE_S = 8.0


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class Children:
    """A registry of started subprocesses, each in its own process group."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[Any]] = []
        self._lock = threading.Lock()
        self._old_handlers: dict[int, Any] = {}

    def __enter__(self) -> Children:
        atexit.register(self.stop_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self._old_handlers[sig] = signal.signal(sig, _raise_exit)
            # A process started in the background of a script (or under nohup) inherits
            # SIGINT as ignored, and Python keeps it so: Ctrl-C must still stop the demo.
            self._old_handlers[signal.SIGINT] = signal.signal(
                signal.SIGINT, signal.default_int_handler
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        atexit.unregister(self.stop_all)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        stdout_pipe: bool = False,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in a new process group; stderr (and stdout) go to ``log``."""
        sink: IO[Any] | int = subprocess.DEVNULL
        if log is not None:
            sink = log.open("ab")
            self._logs.append(sink)
        proc = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else sink,
            stderr=sink,
            start_new_session=True,
            cwd=cwd,
        )
        with self._lock:
            self.procs[name] = proc
        return proc

    def stop(self, name: str, grace_s: float = GRACE_S) -> int | None:
        """SIGTERM the child's group, wait up to ``grace_s``, then SIGKILL; its exit code."""
        with self._lock:
            proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5.0)
        # Whatever the leader left behind in its group (py-spy) goes too.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child, most recently started first."""
        for name in reversed(list(self.procs)):
            self.stop(name)
        for f in self._logs:
            f.close()
        self._logs.clear()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_for_line(
    proc: subprocess.Popen[bytes], prefix: str, timeout_s: float, log: Path | None = None
) -> str:
    """Read ``proc``'s stdout until a line starting with ``prefix``; copy lines to ``log``.

    The rest of stdout keeps being drained (and copied) in a daemon thread so that the
    child never blocks on a full pipe.
    """
    if proc.stdout is None:
        raise ValueError("the process was not started with stdout_pipe=True")
    found: list[str] = []
    ready = threading.Event()
    stream = proc.stdout

    def drain() -> None:
        out = log.open("ab") if log is not None else None
        try:
            for raw in iter(stream.readline, b""):
                if out is not None:
                    out.write(raw)
                    out.flush()
                line = raw.decode(errors="replace").strip()
                if not ready.is_set() and line.startswith(prefix):
                    found.append(line)
                    ready.set()
        except ValueError:  # stdout closed by stop()
            pass
        finally:
            if out is not None:
                out.close()
            ready.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no line starting with {prefix!r} within {timeout_s} s")
    if not found:
        raise RuntimeError(f"process exited (code {proc.poll()}) before printing {prefix!r}")
    return found[0]


def descendants_alive(pids: Sequence[int]) -> list[int]:
    """Those of ``pids`` that still exist (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[-1].split()[0] != "Z":
            alive.append(pid)
    return alive
