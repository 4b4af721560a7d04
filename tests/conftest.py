"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.controller import ControllerProcess


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A real controller subprocess on 127.0.0.1 with a fresh SQLite database."""
    with ControllerProcess(tmp_path / "adaprof.db") as ctl:
        yield ctl
