"""Counting the instructions of one block of a Python child under valgrind's callgrind.

The instruction-count benches (``poll_path_callgrind.py``, ``span_path_callgrind.py``)
run a copy of themselves under ``valgrind --tool=callgrind --instr-atstart=no``; the
child sets up and warms up uncounted, counts only the block inside :func:`counted`, and
the parent reads the total of that block (:func:`instructions`)::

    # in the child
    with counted():
        work()
    # in the parent
    total = instructions([sys.executable, script, "--child"], cwd=root, env=env)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


@contextmanager
def counted() -> Iterator[None]:
    """In a child run by :func:`instructions`: count the block, and only it (a dump)."""
    pid = str(os.getpid())
    _control("--instr=on", pid)
    _control("--zero", pid)
    yield
    _control("--dump", pid)


def instructions(
    child: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    keep_as: Path | None = None,
) -> int:
    """Instructions of the :func:`counted` block of ``child`` (a command) under
    callgrind; ``keep_as`` keeps that block's dump (read it with ``callgrind_annotate``)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/callgrind.%p", *child],
            check=True, capture_output=True, cwd=cwd, env=dict(env),
        )  # fmt: skip
        dump = next(Path(tmp).glob("callgrind.*.1"))  # the --dump (the exit's is .N)
        totals = [ln for ln in dump.read_text().splitlines() if ln.startswith("summary:")]
        if keep_as is not None:
            keep_as.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dump, keep_as)
        return int(totals[0].split()[1])
