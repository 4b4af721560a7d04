"""The temporary folder py-spy's runs write into, and the clean-up of folders left behind.

Each process profiled with py-spy has one folder, ``<tmp>/adaprof-<pid>-<random>``,
holding the current run's ``run-N.json`` and ``run-N.err``. Once closed (at exit, or
when the profiler stops) it is removed and never made again, whatever the profiler
thread is doing. A process killed outright (SIGKILL) cannot clean up: the next agent
to start on the machine removes the folders of processes that no longer exist.

    >>> import os, tempfile
    >>> folder = RunFolder(os.getpid(), root=tempfile.mkdtemp())
    >>> path = folder.path()
    >>> path.name.startswith(f"adaprof-{os.getpid()}-"), path.is_dir()
    (True, True)
    >>> folder.close()
    >>> path.exists(), folder.path()
    (False, None)
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

_NAME = re.compile(r"^adaprof-(\d+)-")


def prefix(pid: int) -> str:
    """Name prefix of a process's folder."""
    return f"adaprof-{pid}-"


class RunFolder:
    """One process's run folder: made on first use, removed for good by :meth:`close`."""

    def __init__(self, pid: int, root: str | None = None) -> None:
        self.pid = pid
        self.root = root
        self._path: str | None = None
        self._closed = False
        self._lock = threading.Lock()

    def path(self) -> Path | None:
        """The folder (made if missing), or ``None`` once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._path is None or not os.path.isdir(self._path):
                self._path = tempfile.mkdtemp(prefix=prefix(self.pid), dir=self.root)
            return Path(self._path)

    def close(self) -> None:
        """Remove the folder; :meth:`path` makes no new one until :meth:`reopen`."""
        with self._lock:
            self._closed = True
            path, self._path = self._path, None
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    def reopen(self) -> None:
        """Allow a folder again (the profiler starts again)."""
        with self._lock:
            self._closed = False

    def after_fork(self, pid: int) -> None:
        """In a forked child: the parent's folder is the parent's."""
        self._lock = threading.Lock()
        self.pid, self._path, self._closed = pid, None, False


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: it exists
        return True
    return True


def remove_orphans(root: str | None = None) -> list[str]:
    """Remove the run folders of processes that no longer exist; the names removed.

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(root, "adaprof-999999999-x")); os.mkdir(os.path.join(root, "other"))
    >>> remove_orphans(root), sorted(os.listdir(root))
    (['adaprof-999999999-x'], ['other'])
    """
    base = root or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        match = _NAME.match(name)
        if match is None or _exists(int(match.group(1))):
            continue
        path = os.path.join(base, name)
        try:
            mine = os.lstat(path).st_uid == os.getuid()
        except OSError:
            continue
        if mine and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed
