"""A plain ``pip install otel-adaprof`` (no ``demo`` extra): ``adaprof demo`` and
``adaprof bench`` stop at once and say what to install."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

from otel_adaprof.cli.demo_extra import DEMO_MODULES, INSTALL_HINT

ROOT = Path(__file__).resolve().parents[2]

# Runs the real CLI in a fresh interpreter where the WSGI instrumentation cannot be
# imported, as after `pip install otel-adaprof` without the extra.
WITHOUT_WSGI = """
import sys
sys.modules["opentelemetry.instrumentation.wsgi"] = None  # import raises ModuleNotFoundError
from otel_adaprof.cli import main
sys.argv = ["adaprof", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    "args",
    [["demo", "--duration", "10", "--json"], ["bench", "--quick", "--json"]],
    ids=["demo", "bench"],
)
def test_demo_and_bench_stop_at_once_naming_what_to_install(tmp_path, args):
    out = tmp_path / "out"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_WSGI, *args, "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert INSTALL_HINT in result.stderr
    assert "missing: opentelemetry-instrumentation-wsgi." in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # nothing was started or written
    assert took < 30, f"took {took:.1f} s to refuse"


def test_the_demo_modules_are_the_demo_extra():
    """The check names exactly the distributions of the ``demo`` extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=~!\[ ]", req)[0] for req in project["optional-dependencies"]["demo"]}
    assert set(DEMO_MODULES.values()) == extra
