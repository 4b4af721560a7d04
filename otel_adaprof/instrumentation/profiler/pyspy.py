r"""One py-spy run against this process: spawn, cut, wait (with its CPU time), read.

py-spy's rate is fixed per run, and its chrometrace file is written when the run
ends. A run lasts until the params change, a window closes or ``--duration`` (the
longest segment) is reached: :meth:`PySpyRun.interrupt` sends SIGINT, on which py-spy
stops at its next sample and still writes its file (py-spy 0.4.3, checked by
``tests/agent/test_pyspy_segments.py``). Its length is bounded by ``--duration``
and the supervisor kills it at exit. Where Yama's ``ptrace_scope`` is 1, the service
names the child as its tracer (``PR_SET_PTRACER``) so py-spy may read its memory.

py-spy prints its progress to stdout when that is not a terminal: both streams go
to one file, from which :class:`RunResult` reads the samples taken (``Samples: N``)
and the "behind in sampling" warnings (at most one a second, when more than a
second late).

    >>> find_py_spy("/nonexistent/py-spy") is None
    True
    >>> r = RunResult(0, b"[]", "py-spy> 1.01s behind in sampling, results ...\n"
    ...               "py-spy> Wrote chrome trace to 'x'. Samples: 96 Errors: 0", 0, 0, 0.0)
    >>> r.samples, r.behind_events, r.behind_s
    (96, 1, 1.01)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
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
_SAMPLES = re.compile(r"Samples: (\d+)")
_BEHIND = re.compile(r"([0-9.]+)(ms|s|µs|us|ns) behind in sampling")
_UNIT_S = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def count_behind(output: str) -> tuple[int, float]:
    """``(warnings, seconds late at the last one)`` of py-spy's "behind in sampling".

    >>> count_behind("py-spy> 1.01s behind in sampling; py-spy> 980.5ms behind in sampling")
    (2, 0.9805)
    """
    found = _BEHIND.findall(output)
    if not found:
        return 0, 0.0
    value, unit = found[-1]
    try:
        return len(found), round(float(value) * _UNIT_S.get(unit, 1.0), 6)
    except ValueError:
        return len(found), 0.0


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
    #: ``(warnings, seconds late at the last one)`` counted over py-spy's whole output
    #: (``stderr`` keeps only its head and tail); ``None``: count in ``stderr``.
    behind: tuple[int, float] | None = None

    @property
    def permission_denied(self) -> bool:
        """py-spy could not read the process (ptrace / capabilities)."""
        low = self.stderr.lower()
        return any(m in low for m in PERMISSION_MARKERS)

    @property
    def samples(self) -> int | None:
        """Stack samples py-spy recorded (its ``Samples: N`` line), if it said."""
        found = _SAMPLES.findall(self.stderr)
        return int(found[-1]) if found else None

    @property
    def behind_events(self) -> int:
        """How many "behind in sampling" warnings py-spy printed during the run."""
        return (self.behind or count_behind(self.stderr))[0]

    @property
    def behind_s(self) -> float:
        """How late py-spy said it was at its last warning (0.0: never more than 1 s)."""
        return (self.behind or count_behind(self.stderr))[1]

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
        gil: bool = False,
    ) -> None:
        self.out_path = out_path
        self.stderr_path = out_path.with_suffix(".err")
        self.gil = gil
        self._reaped: RunResult | None = None
        argv = [
            binary, "record", "--pid", str(pid), "--rate", str(rate_hz),
            "--duration", str(duration_s), "--format", "chrometrace", "--nonblocking",
            "--output", str(out_path), "--full-filenames",
        ]  # fmt: skip
        if gil:
            argv.append("--gil")  # only the GIL holder: --idle would add nothing
        elif idle:
            argv.append("--idle")
        with contextlib.suppress(FileNotFoundError):
            out_path.unlink()
        self.started_ns = time.time_ns()
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
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

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """Wait until py-spy exits (at most ``timeout`` s); its result, or ``None``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while self._reaped is None:
            if self._reap(block=deadline is None):
                break
            left = 0.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay, left))
            delay = min(0.05, delay * 2)
        return self._reaped

    def _reap(self, *, block: bool) -> bool:
        cpu = 0.0
        try:
            pid, status, usage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return False
            code = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime
            self.proc.returncode = code
        except ChildProcessError:  # reaped by someone else (the app's own os.wait)
            polled = self.proc.poll()
            code = polled if polled is not None else -1
        ended = time.time_ns()
        output = None
        with contextlib.suppress(OSError):
            # when py-spy finished writing (its exit is seen here up to a tick later)
            ended = min(ended, self.out_path.stat().st_mtime_ns)
            output = self.out_path.read_bytes()
        stderr, text = "", ""
        with contextlib.suppress(OSError):
            text = self.stderr_path.read_text(errors="replace")
            # the head says what went wrong at start; the tail holds the counts
            stderr = text if len(text) <= 8000 else text[:2000] + "\n...\n" + text[-6000:]
        for path in (self.out_path, self.stderr_path):
            with contextlib.suppress(OSError):
                path.unlink()
        behind = count_behind(text)
        self._reaped = RunResult(code, output, stderr, self.started_ns, ended, cpu, behind)
        return True

    def behind_so_far(self) -> tuple[int, float]:
        """``(warnings, seconds late at the last)`` py-spy has printed so far (its output
        file is written as it runs); ``(0, 0.0)`` if unreadable."""
        if self._reaped is not None:
            return self._reaped.behind or count_behind(self._reaped.stderr)
        try:
            return count_behind(self.stderr_path.read_text(errors="replace"))
        except OSError:
            return 0, 0.0

    def cpu_seconds_so_far(self) -> float:
        """py-spy's CPU seconds while it runs (``/proc/<pid>/stat``; 0.0 if unreadable)."""
        if self._reaped is not None:
            return self._reaped.cpu_seconds
        try:
            raw = Path(f"/proc/{self.proc.pid}/stat").read_bytes()
            fields = raw[raw.rindex(b")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / _CLK_TCK
        except (OSError, ValueError, IndexError):
            return 0.0

    def interrupt(self) -> None:
        """SIGINT: py-spy stops at its next sample and writes its file (idempotent)."""
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.proc.returncode is None and self._reaped is None:
                os.kill(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL py-spy (idempotent)."""
        with contextlib.suppress(ProcessLookupError, OSError):
            if self.proc.returncode is None:
                os.kill(self.proc.pid, signal.SIGKILL)
