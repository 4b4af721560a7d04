"""``adaprof demo --shape ledger``: the whole loop on the other service shape.

A real, short demo (controller, the ledger-shaped service under the agent, py-spy, the
load): the summary names the shape, and the profile is judged against the ledger's
truth (its shares, not the shop's). A shape the demo does not have is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ADAPROF = Path(sys.executable).with_name("adaprof")
pytestmark = pytest.mark.slow


def test_demo_runs_the_ledger_shape_when_asked(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ADAPROF), "demo", "--shape", "ledger", "--duration", "10", "--json",
         "--out", str(tmp_path / "report"), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["shape"] == "ledger"
    assert (tmp_path / "report" / "index.html").exists()
    # the report's truth is the ledger's: compute_tax is a fifth of its steady CPU, a
    # tenth of the shop's (demo/shapes.py)
    truth = json.loads((tmp_path / "report" / "summary.json").read_text())["truth"]
    assert truth["compute_tax"] > 0.15, truth


def test_a_shape_the_demo_does_not_have_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ADAPROF), "demo", "--shape", "warehouse", "--duration", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "'warehouse' is not one of 'shop', 'ledger'" in done.stderr
