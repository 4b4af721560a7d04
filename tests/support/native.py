"""The native profiler's extension for its tests: skipped where it is not built (another
Python, no C compiler at install time), unless ``ADAPROF_REQUIRE_NATIVE=1`` (CI sets it),
which turns the skip into a failure.

Usage::

    from tests.support.native import needs_native

    @needs_native
    def test_native(tmp_path): ...
"""

from __future__ import annotations

import os

import pytest

from otel_adaprof.instrumentation.profiler.native import unavailable

WHY = unavailable()
REQUIRED = os.environ.get("ADAPROF_REQUIRE_NATIVE") == "1"


def needs_native(test):  # type: ignore[no-untyped-def]
    """Skip ``test`` without the extension (fail instead under ``ADAPROF_REQUIRE_NATIVE=1``)."""
    if WHY is not None and REQUIRED:

        def missing(*args, **kwargs):  # type: ignore[no-untyped-def]
            pytest.fail(f"ADAPROF_REQUIRE_NATIVE=1 but the native profiler cannot run: {WHY}")

        missing.__name__ = test.__name__
        return missing
    return pytest.mark.skipif(WHY is not None, reason=f"native profiler: {WHY}")(test)


def skip_without_native() -> None:
    """Inside a test: skip (or fail) without the extension."""
    if WHY is not None:
        if REQUIRED:
            pytest.fail(f"ADAPROF_REQUIRE_NATIVE=1 but the native profiler cannot run: {WHY}")
        pytest.skip(f"native profiler: {WHY}")
