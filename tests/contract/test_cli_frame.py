"""The ``adaprof`` entry point as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otel_adaprof import __version__

ADAPROF = Path(sys.executable).with_name("adaprof")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ADAPROF), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"adaprof, version {__version__}"
    assert __version__ != "0.0.0+unknown"


def test_help_lists_commands_and_every_command_has_help():
    result = run("--help")
    assert result.returncode == 0
    assert "adaptive profiling" in result.stdout
    from otel_adaprof.cli import COMMANDS

    for name in COMMANDS:
        assert name in result.stdout
        sub = run(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Usage: adaprof " + name in sub.stdout


def test_params_show_json_is_the_defaults():
    result = run("params", "show", "--json")
    assert result.returncode == 0
    from otel_adaprof.params import DEFAULT_PARAMS

    assert json.loads(result.stdout) == DEFAULT_PARAMS.to_json()


def test_params_check(tmp_path: Path):
    good = tmp_path / "good.yaml"
    good.write_text("sampling_interval_ms: 10\nspan_filters:\n  categories: [db]\n")
    result = run("params", "check", str(good))
    assert result.returncode == 0
    assert json.loads(result.stdout)["span_filters"]["categories"] == ["db"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("sampling_interval_ms: 5000\nstack_depth: 0\n")
    result = run("params", "check", str(bad))
    assert result.returncode == 2
    assert "sampling_interval_ms" in result.stderr and "5000" in result.stderr
    assert "stack_depth" in result.stderr


@pytest.mark.parametrize("content", ["listen:\n  port: -1\n", "nope: 1\n"])
def test_config_check_rejects(tmp_path: Path, content: str):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    result = run("config", "check", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr.replace("\n", "")


def test_config_check_accepts_shipped_example():
    repo = Path(__file__).resolve().parents[2]
    result = run("config", "check", str(repo / "configs" / "controller.yaml"))
    assert result.returncode == 0, result.stderr
    assert "valid controller configuration" in result.stdout


def test_unknown_command_is_a_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2
    assert "No such command" in result.stderr
