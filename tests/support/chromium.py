"""Headless Chromium for page tests: skipped when it is not installed, unless
``ADAPROF_REQUIRE_CHROMIUM=1`` (CI sets it), which turns the skip into a failure.

Usage::

    from tests.support.chromium import chromium, needs_chromium

    @needs_chromium
    def test_page(tmp_path):
        result = chromium(tmp_path, "--dump-dom", url)
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("ADAPROF_REQUIRE_CHROMIUM") == "1"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--hide-scrollbars"]  # fmt: skip


def needs_chromium(test):  # type: ignore[no-untyped-def]
    """Skip ``test`` without Chromium (fail instead under ``ADAPROF_REQUIRE_CHROMIUM=1``)."""
    if CHROMIUM is None and REQUIRED:

        def missing(*args, **kwargs):  # type: ignore[no-untyped-def]
            pytest.fail("ADAPROF_REQUIRE_CHROMIUM=1 but chromium is not installed")

        missing.__name__ = test.__name__
        return missing
    return pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
    )(test)


def chromium(tmp_path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run headless Chromium with its own profile folder; never raises on its exit code."""
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chrome-profile'}",
         "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def script_errors(stderr: str) -> list[str]:
    """Console lines of uncaught errors and refused loads (CSP) in Chromium's log."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "Error" in line or "Refused" in line)
    ]
