"""Import a script of ``bench/`` as a module, so a test asserts on the very probe a
benchmark runs (one copy of each probe, in ``bench/``)::

    burst_reflex = load("burst_reflex")
    got = burst_reflex.run("step")
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
