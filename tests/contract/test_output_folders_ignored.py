"""The folders the CLI writes by default are ignored by git, so running a command in the
checkout leaves no untracked files behind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest

from otel_adaprof.cli import bench_cmd, demo_cmd

ROOT = Path(__file__).resolve().parents[2]


def _default_out(command: click.Command) -> Path:
    for param in command.params:
        if param.name == "out":
            assert isinstance(param.default, Path)
            return param.default
    raise AssertionError(f"{command.name} has no --out option")


@pytest.mark.parametrize("command", [bench_cmd.bench, demo_cmd.demo], ids=["bench", "demo"])
def test_default_output_folder_is_git_ignored(command: click.Command) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = _default_out(command)
    assert not out.is_absolute()
    probe = f"{out.as_posix()}/figures.json"
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", probe], check=False
    )
    assert result.returncode == 0, f"{probe} is not ignored by .gitignore"
