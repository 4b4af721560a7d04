"""Run a script of ``bench/`` as a command, or import it as a module, so a test asserts on
what the benchmark itself prints, or on the very probe it runs (one copy of each, in
``bench/``)::

    result = run_json("cost_model", "--quick")           # bench/cost_model.py --quick --json
    burst_reflex = load("burst_reflex")
    got = burst_reflex.run("step")
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """``bench/<name>.py`` as the module ``name`` (imported once per process)."""
    if name in sys.modules:
        return sys.modules[name]
    script = BENCH / f"{name}.py"
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, script)
        assert spec is not None and spec.loader is not None, script
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look themselves up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    finally:
        sys.path.remove(str(BENCH))


def run_json(name: str, *args: str, timeout: float = 120) -> Any:
    """``python bench/<name>.py ARGS --json`` in a child process: its printed JSON.

    Fails the test with the end of its stderr if the script exits with an error.
    """
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args, "--json"],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
