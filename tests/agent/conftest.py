"""Fixtures of the agent tests: a real OTLP/HTTP receiver, a fast-polling controller and a
thread that keeps running Python code (something for py-spy to sample)."""

from __future__ import annotations

import threading
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


@pytest.fixture
def spinner() -> Iterator[None]:
    """A daemon thread running Python code all the time, stopped after the test."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(i for i in range(300))

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(2)
