"""Build ``_native_sampler`` for the running Python with the system C compiler.

Usage::

    python bench/native_sampler/build.py OUT_DIR      # prints the built module's path

The source is the agent's native profiler
(``otel_adaprof/instrumentation/profiler/_native_sampler.c``, which ``pip install``
builds into the package); built here as a top-level module, for the experiments of
``bench/other_samplers.py`` and ``bench/native_sampler_services.py`` (CPython 3.11 and
3.12).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

#: The agent's native profiler, built here as a top-level module for the bench scripts.
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "otel_adaprof" / "instrumentation" / "profiler" / "_native_sampler.c"
#: Copied beside the module: starts it and times new threads from their start.
STARTER = Path(__file__).resolve().with_name("native_start.py")


def build(out_dir: Path) -> Path:
    """Compile the module into ``out_dir`` (with ``native_start.py`` beside it); its
    path (``RuntimeError`` with the compiler's output if it fails)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ("_native_sampler" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    compiler = os.environ.get("CC", "cc")
    argv = [compiler, "-O2", "-shared", "-fPIC", "-Wall", "-I", sysconfig.get_paths()["include"]]
    argv += [str(SOURCE), "-o", str(target), "-lm", "-lpthread"]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr}")
    shutil.copy(STARTER, out_dir / STARTER.name)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(build(Path(sys.argv[1])))
