"""Where a poll's time goes: the Server-Timing header, /metrics and the frozen heap of
the real controller (a subprocess on 127.0.0.1, SQLite file)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_adaprof.controller.poll_timing import PARTS, parse_server_timing
from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

#: Parts every poll of an open adaptive session goes through (``read``: only when
#: memory cannot answer, e.g. the first poll after a session opened).
ALWAYS = ("parse", "credit", "decide", "queue", "write", "commit", "resume", "answer")


@pytest.fixture
def timed_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ControllerProcess]:
    monkeypatch.setenv("ADAPROF_SERVER_TIMING", "1")
    with ControllerProcess(tmp_path / "adaprof.db") as ctl:
        yield ctl


def _poll(ctl: ControllerProcess, body: dict[str, object]) -> tuple[dict[str, object], str | None]:
    req = urllib.request.Request(
        ctl.url + "/v1/agents/poll",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read()), resp.headers.get("Server-Timing")


def _metrics(ctl: ControllerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = ctl.raw("GET", "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_server_timing_gives_every_part_and_they_add_up(timed_controller: ControllerProcess):
    ctl = timed_controller
    ctl.request("POST", "/v1/sessions", {"service": "shop", "mode": "adaptive", "duration_s": 600})
    first, _ = _poll(ctl, poll_body("a-1"))
    before = time.monotonic()
    answer, header = _poll(ctl, poll_body("a-1", int(first["config_version"])))  # type: ignore[call-overload]
    after = time.monotonic()
    assert answer["session_id"]
    assert header is not None
    timing = parse_server_timing(header)
    parts = {k: v for k, v in timing.items() if k in PARTS}
    assert set(ALWAYS) <= set(parts), header
    assert all(ms >= 0 for ms in parts.values()), header
    # the commit was made durable (a WAL append and its fsync take time) and timed apart
    assert parts["commit"] > 0 and parts["write"] > 0, header
    # the parts are the handler's time, cut in pieces (each rounded to 1 µs)
    assert abs(sum(parts.values()) - timing["total"]) <= 0.001 * (len(parts) + 1), header
    # the handler's start on the machine's monotonic clock, inside the client's request
    assert before <= timing["start"] <= after
    assert timing["total"] <= (after - before) * 1000

    m = _metrics(ctl)
    for part in ALWAYS:
        assert m[("adaprof_poll_part_seconds_count", (("part", part),))] == 2, part
    transactions = m[("adaprof_db_commit_seconds_count", (("stage", "commit"),))]
    assert 1 <= transactions <= 2
    assert m[("adaprof_db_commit_seconds_count", (("stage", "transaction"),))] == transactions
    assert m[("adaprof_db_commit_polls_sum", ())] == 2


def test_no_server_timing_header_unless_asked(controller: ControllerProcess):
    answer, header = _poll(controller, poll_body("a-1"))
    assert answer["config_version"] == 1
    assert header is None
    # the parts are counted in /metrics all the same
    m = _metrics(controller)
    assert m[("adaprof_poll_part_seconds_count", (("part", "commit"),))] == 1


def test_startup_heap_is_frozen_and_gc_pauses_are_counted(controller: ControllerProcess):
    for version in range(40):  # enough allocations for young collections
        _poll(controller, poll_body(f"a-{version}", version))
    m = _metrics(controller)
    # the modules, classes and schemas loaded at start: tens of thousands of objects
    assert m[("adaprof_gc_frozen_objects", ())] > 10_000
    assert m[("adaprof_gc_pause_seconds_count", (("generation", "0"),))] > 0
