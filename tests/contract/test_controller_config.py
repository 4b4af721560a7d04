"""The controller's YAML configuration: defaults, the shipped example, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_adaprof.controller.config import TOKEN_ENV, ControllerConfig
from otel_adaprof.errors import ContractError

REPO = Path(__file__).resolve().parents[2]


def test_empty_file_gives_defaults(tmp_path: Path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    cfg = ControllerConfig.load(path)
    assert cfg == ControllerConfig()
    assert cfg.listen.host == "127.0.0.1" and cfg.listen.port == 8080


def test_shipped_example_is_valid_and_matches_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    cfg = ControllerConfig.load(REPO / "configs" / "controller.yaml")
    assert cfg == ControllerConfig(), "configs/controller.yaml should show the defaults"


def test_service_params_override_defaults():
    cfg = ControllerConfig.parse(
        {"default_params": {"stack_depth": 20}, "service_params": {"shop": {"stack_depth": 5}}}
    )
    assert cfg.params_for("shop").stack_depth == 5
    assert cfg.params_for("other").stack_depth == 20


def test_errors_name_file_and_field(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("listen:\n  port: 70000\ndefault_params:\n  trace_ratio: 3\ncolour: red\n")
    with pytest.raises(ContractError) as info:
        ControllerConfig.load(path)
    fields = [f for f, _ in info.value.problems]
    assert fields == [
        f"{path}: listen.port",
        f"{path}: default_params.trace_ratio",
        f"{path}: colour",
    ]
    assert "70000" in str(info.value) and "[0.0, 1.0]" in str(info.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path):
    with pytest.raises(ContractError, match="cannot read configuration"):
        ControllerConfig.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("listen: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        ControllerConfig.load(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ContractError, match="must be a mapping"):
        ControllerConfig.load(listy)


def test_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(TOKEN_ENV, "s3cret-token")
    assert ControllerConfig.load(None).token == "s3cret-token"
    path = tmp_path / "c.yaml"
    path.write_text("token: from-the-file\n")
    assert ControllerConfig.load(path).token == "from-the-file"
    path.write_text("token: short\n")
    with pytest.raises(ContractError, match="token: string should have at least 8"):
        ControllerConfig.load(path)
