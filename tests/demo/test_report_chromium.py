"""The report page renders in headless Chromium and its script runs without errors."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from otel_adaprof.demo.report import write_report

from .report_data import COLLAPSED, T0, timeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage"]  # fmt: skip


def chromium(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chrome-profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         *args],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_report_renders_and_its_script_runs(tmp_path):
    write_report(tmp_path / "r", timeline(), COLLAPSED, summary={"windows": 12},
                 marks=[(T0 + 9, "hot_path")])  # fmt: skip
    url = (tmp_path / "r/index.html").as_uri()
    result = chromium(tmp_path, "--dump-dom", url)
    assert result.returncode == 0, result.stderr[-2000:]
    # The inline script sets this as its last statement: it ran to the end.
    assert 'data-report-ready="1"' in result.stdout
    assert "price_items" in result.stdout
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert shot.exists() and shot.stat().st_size > 10_000, result.stderr[-1000:]


def test_a_script_error_would_be_caught(tmp_path):
    """The check above can fail: a page whose script throws is not marked ready."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><script>undefinedFn();"
        "document.body.setAttribute('data-report-ready','1')</script></body></html>"
    )
    result = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert 'data-report-ready="1"' not in result.stdout
    assert "Uncaught" in result.stderr
