"""Fixtures of the agent tests: a real OTLP/HTTP receiver and a fast-polling controller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from otel_adaprof.demo.span_sink import SpanSink
from tests.support.controller import ControllerProcess


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SpanSink]:
    """A real OTLP/HTTP trace receiver on 127.0.0.1 writing ``spans.jsonl``."""
    s = SpanSink(tmp_path / "spans.jsonl").start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def fast_controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """The real controller, answering ``poll_interval_s = 1``."""
    cfg = tmp_path / "controller.yaml"
    cfg.write_text(yaml.safe_dump({"agents": {"poll_interval_s": 1.0}}))
    with ControllerProcess(tmp_path / "adaprof.db", "--config", str(cfg)) as ctl:
        yield ctl
