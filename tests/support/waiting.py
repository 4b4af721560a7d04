"""Waiting for something that happens in another process, bounded in time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str | None = None) -> T:
    """Call ``check`` every 0.3 s until it returns something truthy; return that.

    After ``timeout`` seconds: ``AssertionError`` naming ``what`` when given, otherwise
    the last (falsy) result, for the caller to assert on with its own message.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    if what is not None:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return check()
