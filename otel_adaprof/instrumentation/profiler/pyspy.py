"""One py-spy run against this process: spawn, wait (with its CPU time), read, clean up.

py-spy's rate is fixed per run, and its chrometrace file is written when the run
ends, so the profiler runs py-spy in short segments (``--duration``). Each run is a
child of the service that cannot outlive it: it dies with the thread that started it
(``PR_SET_PDEATHSIG``), its length is bounded by ``--duration``, and the supervisor
kills it at exit. Where Yama's ``ptrace_scope`` is 1, the service names the child as
its tracer (``PR_SET_PTRACER``) so py-spy may read its memory.

    >>> find_py_spy("/nonexistent/py-spy") is None
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PTRACER = 0x59616D61
#: Words in py-spy's error output that mean "no permission to read this process".
PERMISSION_MARKERS = ("permission denied", "operation not permitted", "ptrace", "eperm")


def find_py_spy(explicit: str | None = None) -> str | None:
    """The py-spy binary: ``explicit`` if given, else on ``PATH``, else beside Python."""
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("py-spy")
    if found:
        return found
    sibling = Path(sys.executable).with_name("py-spy")
    return str(sibling) if os.access(sibling, os.X_OK) else None


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _yama_scope() -> int:
    try:
        return int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text().strip())
    except (OSError, ValueError):
        return 0


@dataclass(frozen=True)
class RunResult:
    """How one py-spy run ended."""

    returncode: int
    output: bytes | None
    stderr: str
    started_ns: int
    ended_ns: int
    cpu_seconds: float

    @property
    def permission_denied(self) -> bool:
        """py-spy could not read the process (ptrace / capabilities)."""
        low = self.stderr.lower()
        return any(m in low for m in PERMISSION_MARKERS)

    def error_line(self) -> str:
        """The first line of py-spy's error output (for logs)."""
        for line in self.stderr.splitlines():
            if line.strip() and "py-spy>" not in line:
                return line.strip()[:300]
        return f"exit code {self.returncode}"


class PySpyRun:
    """One running py-spy segment."""

    def __init__(
        self,
        binary: str,
        pid: int,
        rate_hz: int,
        duration_s: int,
        out_path: Path,
        idle: bool,
    ) -> None:
        self.out_path = out_path
        self.stderr_path = out_path.with_suffix(".err")
        argv = [
            binary, "record", "--pid", str(pid), "--rate", str(rate_hz),
            "--duration", str(duration_s), "--format", "chrometrace", "--nonblocking",
            "--output", str(out_path), "--full-filenames",
        ]  # fmt: skip
        if idle:
            argv.append("--idle")
        with contextlib.suppress(FileNotFoundError):
            out_path.unlink()
        self.started_ns = time.time_ns()
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                close_fds=True,
            )
        if _yama_scope() == 1:
            libc = _libc()
            if libc is not None:
                libc.prctl(_PR_SET_PTRACER, self.proc.pid, 0, 0, 0)

    @property
    def pid(self) -> int:
        """py-spy's process id."""
        return self.proc.pid

    def wait(self) -> RunResult:
        """Block until py-spy exits; its result with the CPU seconds it used."""
        cpu = 0.0
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            self.proc.returncode = code
        except ChildProcessError:  # reaped by someone else (the app's own os.wait)
            polled = self.proc.poll()
            code = polled if polled is not None else -1
        ended = time.time_ns()
        output = None
        with contextlib.suppress(OSError):
            output = self.out_path.read_bytes()
        stderr = ""
        with contextlib.suppress(OSError):
            stderr = self.stderr_path.read_text(errors="replace")[-4000:]
        for path in (self.out_path, self.stderr_path):
            with contextlib.suppress(OSError):
                path.unlink()
        return RunResult(code, output, stderr, self.started_ns, ended, cpu)

    def kill(self) -> None:
        """SIGKILL py-spy (idempotent)."""
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.proc.returncode is None:
                os.kill(self.proc.pid, signal.SIGKILL)
