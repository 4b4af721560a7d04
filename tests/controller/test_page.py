"""The controller page at ``/``: rendered in headless Chromium during a real session
(a service under ``opentelemetry-instrument`` with the agent, and an OpAMP client),
its content checked against the API."""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from otel_adaprof.demo.span_sink import SpanSink
from otel_adaprof.exporters.collapsed import parse_collapsed
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.params import Params
from tests.controller.test_opamp import opamp_agent
from tests.support.chromium import chromium, needs_chromium, script_errors
from tests.support.controller import ControllerProcess
from tests.support.instrumented import InstrumentedService
from tests.support.waiting import wait_until

HOT = "burn_cpu_hotspot"


class PageDom(HTMLParser):
    """What the dumped DOM shows: rows, data attributes, flame frames."""

    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] = {}
        self.sessions: list[str] = []
        self.agents: dict[str, dict[str, str | None]] = {}
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.frames: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "tr" and a.get("data-session"):
            self.sessions.append(str(a["data-session"]))
        if tag == "tr" and a.get("data-agent"):
            self.agents[str(a["data-agent"])] = a
        if a.get("id"):
            self.by_id[str(a["id"])] = a
        if "frame" in (a.get("class") or "").split():
            self.frames.append(a)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


@pytest.fixture
def live_session(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A controller with an adaptive session, a loaded instrumented service and an
    OpAMP client of another service; yields ``(controller, session)``."""
    cfg = tmp_path / "controller.yaml"
    cfg.write_text(yaml.safe_dump({"agents": {"poll_interval_s": 1.0}}))
    sink = SpanSink(tmp_path / "spans.jsonl").start()
    ctl = ControllerProcess(tmp_path / "adaprof.db", "--config", str(cfg)).start()
    stop = threading.Event()
    try:
        session = ctl.request(
            "POST", "/v1/sessions",
            {"service": "agent-test", "mode": "adaptive", "duration_s": 600},
        )  # fmt: skip
        with InstrumentedService(tmp_path, sink.endpoint, controller_url=ctl.url) as svc, \
                opamp_agent(ctl.url, LiveParams(Params()), "shop-opamp-page"):  # fmt: skip

            def load() -> None:
                while not stop.is_set():
                    for path in ("/burn", "/query"):
                        svc.get(path)

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            timeline = f"/v1/sessions/{session['id']}/timeline"
            wait_until(
                lambda: (
                    sum(w["reward"] is not None for w in ctl.request("GET", timeline)["windows"])
                    >= 3
                ),
                30,
                "three credited windows",
            )
            try:
                yield ctl, session
            finally:
                stop.set()
                loader.join(15)
    finally:
        stop.set()
        ctl.stop()
        sink.stop()


@needs_chromium
def test_the_page_shows_what_the_api_says_during_a_session(tmp_path, live_session):
    ctl, session = live_session
    sid = session["id"]
    base = f"/v1/sessions/{sid}"

    def profile_total() -> int:
        return sum(
            parse_collapsed(_get(ctl.url + base + "/profile?format=collapsed").decode()).values()
        )

    windows_before = len(ctl.request("GET", base + "/timeline")["windows"])
    total_before = profile_total()
    url = f"{ctl.url}/?session={sid}&search={HOT}"
    result = chromium(tmp_path, "--virtual-time-budget=6000", "--dump-dom", url)
    windows_after = len(ctl.request("GET", base + "/timeline")["windows"])
    total_after = profile_total()
    assert result.returncode == 0, result.stderr[-2000:]
    assert not script_errors(result.stderr), script_errors(result.stderr)

    dom = PageDom()
    dom.feed(result.stdout)
    assert dom.body.get("data-page-ready") == "1", result.stdout[-3000:]
    assert "data-page-error" not in dom.body, dom.body
    # every session and agent of the API, and nothing else
    assert dom.sessions == [s["id"] for s in ctl.request("GET", "/v1/sessions")["sessions"]]
    agents = {a["instance_id"]: a for a in ctl.request("GET", "/v1/agents")["agents"]}
    assert set(dom.agents) == set(agents)
    opamp = dom.agents["shop-opamp-page"]
    assert opamp["data-protocol"] == "opamp" and opamp["data-status"] == "APPLIED"
    native = [i for i, a in agents.items() if a["service"] == "agent-test"]
    assert native and dom.agents[native[0]]["data-protocol"] == "native"
    # the session's timeline and profile as they were while the page loaded
    windows = int(dom.by_id["detail"]["data-windows"] or 0)
    assert windows_before <= windows <= windows_after and windows >= 3
    for chart in ("chart-params", "chart-reward", "chart-cpu", "chart-ratio"):
        assert int(dom.by_id[chart]["data-points"] or 0) > 0, chart
    flame = dom.by_id["flame"]
    assert total_before <= int(flame["data-total"] or 0) <= total_after
    assert any(HOT in (f.get("data-name") or "") for f in dom.frames)
    hits = [f for f in dom.frames if "hit" in (f.get("class") or "")]
    assert hits and all(HOT in (f.get("data-name") or "") for f in hits)
    assert 0 < int(flame["data-matched"] or 0) <= int(flame["data-total"] or 0)
    for text in (sid, "agent-test", "shop-opamp-page", "APPLIED"):
        assert text in result.stdout

    shot = tmp_path / "controller-page.png"
    result = chromium(tmp_path, "--virtual-time-budget=2500", "--window-size=1280,1250",
                      f"--screenshot={shot}", url)  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 20_000, result.stderr[-1000:]
    keep = os.environ.get("ADAPROF_PAGE_SCREENSHOT")
    if keep:  # docs/img/controller-page.png is made this way
        shutil.copyfile(shot, keep)


def test_the_page_and_its_files_are_served_with_a_strict_policy(controller):
    status, body = controller.raw("GET", "/")
    assert status == 200 and b'<script src="/page/app.js">' in body
    for name in ("app.js", "flame.js", "style.css"):
        assert controller.raw("GET", f"/page/{name}")[0] == 200
    for name in ("index.html", "nope.js", "..%2Fapp.py"):
        assert controller.raw("GET", f"/page/{name}")[0] == 404
    with urllib.request.urlopen(controller.url + "/", timeout=10) as resp:
        csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    # nothing is fetched from another origin
    for name in ("app.js", "flame.js"):
        assert b"http" not in controller.raw("GET", f"/page/{name}")[1].replace(
            b"http://www.w3.org/2000/svg", b""
        )


@needs_chromium
def test_the_page_reports_an_unreachable_controller(tmp_path, controller):
    """The readiness mark is honest: when the API cannot be read the page says so."""
    page = tmp_path / "index.html"
    page.write_bytes(controller.raw("GET", "/")[1])
    (tmp_path / "page").mkdir()
    for name in ("app.js", "flame.js", "style.css"):
        (tmp_path / "page" / name).write_bytes(controller.raw("GET", f"/page/{name}")[1])
    html = page.read_text().replace('"/page/', '"page/')
    page.write_text(html)
    started = time.monotonic()
    result = chromium(tmp_path, "--virtual-time-budget=3000", "--dump-dom", page.as_uri())
    dom = PageDom()
    dom.feed(result.stdout)
    assert "data-page-ready" not in dom.body, dom.body
    assert dom.body.get("data-page-error"), result.stdout[-2000:]
    assert time.monotonic() - started < 60
