"""The benchmark's figures, as pure functions over what a run recorded.

Usage::

    >>> from otel_adaprof.demo.bench_figures import profile_diff, detection_time
    >>> profile_diff({"a": 5.0, "b": 2.0}, {"a": 3.0})
    {'a': 2.0, 'b': 2.0}
    >>> snaps = [(10.0, {"x;parse_catalog": 10.0}),
    ...          (12.0, {"x;parse_catalog": 12.0, "x;compress_report": 0.4}),
    ...          (14.0, {"x;parse_catalog": 14.0, "x;compress_report": 4.0})]
    >>> detection_time(snaps, onset=10.0, true_share=0.4)
    4.0
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from otel_adaprof.demo.ground_truth import function_of, function_shares, l1_error
from otel_adaprof.demo.loadgen import REQUEST_ID_ATTRIBUTE, RequestRecord
from otel_adaprof.demo.workload import HOT_PATH

Profile = Mapping[str, float]
#: One reported window: (start, end) in unix seconds, and its samples by stack.
Window = tuple[float, float, dict[str, float]]


def reported_windows(db_path: Path | str, service: str) -> list[Window]:
    """Every window a service's agent reported to the controller, with its samples (the
    late ones of the window before included, as the controller stored them), read from
    the controller's SQLite file after the run (``reports``: ``window``, ``stacks``)."""
    out: list[Window] = []
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT window, stacks FROM reports WHERE service = ? ORDER BY id", (service,)
        ).fetchall()
    for window_json, stacks_json in rows:
        if not window_json:
            continue
        window = json.loads(window_json)
        start = float(window["window_start"])
        stacks = json.loads(stacks_json) if stacks_json else {}  # {stack: count}
        out.append((start, start + float(window["window_seconds"]), stacks))
    return out


def arrival_snapshots(db_path: Path | str, service: str) -> list[tuple[float, dict[str, float]]]:
    """The service's cumulative profile at each report's arrival: ``(unix time the
    controller recorded the report, samples of every report up to it by workload
    function)``, in time order, read from the controller's SQLite file after the run
    (``reports``: ``received_at``, ``stacks``, the late samples of earlier windows
    included as stored). Stacks in no workload function are left out: the shares
    (:func:`~otel_adaprof.demo.ground_truth.function_shares`) do not count them.

    The profile a user reads changes exactly then: :func:`detection_time` over these
    snapshots says when the hot path showed, to the report, where the bench's own
    look at the profile every window (``window_s``, 3 s) rounds it up to its next look
    (session 37: static-100's detection at 1× read 3.5 or 6.6 s by that grid, 2.2–6.4 s
    by the reports' arrivals).
    """
    out: list[tuple[float, dict[str, float]]] = []
    total: dict[str, float] = {}
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT received_at, stacks FROM reports WHERE service = ? ORDER BY received_at, id",
            (service,),
        ).fetchall()
    for received_at, stacks_json in rows:
        for stack, count in (json.loads(stacks_json) if stacks_json else {}).items():
            name = function_of(stack)
            if name is not None:
                total[name] = total.get(name, 0.0) + float(count)
        out.append((float(received_at), dict(total)))
    return out


def phase_switches(spans_file: Path | str) -> list[float]:
    """Unix times (s) of a bench service's hot-path switches, in order: its exported
    ``/control/hot-path`` request spans (one JSON span a line, as the run's span sink
    writes them). The first sets the first phase; each next one starts the next phase.

    >>> import tempfile
    >>> spans = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    >>> _ = spans.write('{"name": "POST /control/hot-path", "startTimeUnixNano": "3000000000"}\\n'
    ...                 '{"name": "GET /catalog", "startTimeUnixNano": "2000000000"}\\n'
    ...                 '{"name": "POST /control/hot-path", "startTimeUnixNano": "1000000000"}\\n')
    >>> spans.close()
    >>> phase_switches(spans.name)
    [1.0, 3.0]
    >>> import os; os.unlink(spans.name)
    """
    switches: list[float] = []
    with open(spans_file, encoding="utf-8") as lines:
        for line in lines:
            if "/control/hot-path" in line:
                switches.append(int(json.loads(line)["startTimeUnixNano"]) / 1e9)
    return sorted(switches)


def windows_within(
    windows: Sequence[Window], start: float, end: float, lead_s: float
) -> list[Window]:
    """The windows whose samples were all taken within ``[start, end)``.

    A window's report may carry samples taken up to ``lead_s`` before it opened (the
    py-spy run that spanned the previous window's close reports late), so a window counts
    when ``[its start − lead_s, its end]`` lies in the phase. Windows across a phase's
    edges count in neither phase: their samples are a mix of both, and a burst right
    after a change would otherwise land in the phase before it.

    >>> windows_within([(0.0, 3.0, {}), (3.0, 6.0, {})], 0.0, 6.0, lead_s=2.0)
    [(3.0, 6.0, {})]
    """
    return [w for w in windows if w[0] - lead_s >= start and w[1] <= end]


def windows_profile(windows: Sequence[Window]) -> dict[str, float]:
    """The samples of ``windows`` added up by stack (a phase's: :func:`windows_within`).

    >>> ws = [(0.0, 3.0, {"a": 1.0}), (3.0, 6.0, {"a": 2.0}), (6.0, 9.0, {"b": 5.0})]
    >>> windows_profile(windows_within(ws, 0.0, 7.0, lead_s=0.0))
    {'a': 3.0}
    >>> windows_profile(windows_within(ws, 0.0, 9.0, lead_s=2.0))  # the first: earlier samples
    {'a': 2.0, 'b': 5.0}
    """
    out: dict[str, float] = {}
    for _, _, stacks in windows:
        for stack, count in stacks.items():
            out[stack] = out.get(stack, 0.0) + float(count)
    return out


def read_phase(profile: Profile, truth: Mapping[str, float]) -> tuple[float, float | None]:
    """A phase's profile against its truth: ``(workload samples, L1)``. Workload samples
    are those in the named functions, what the share estimate rests on (the rest are
    framework, I/O and the agent's own threads); L1 is ``None`` without any.

    >>> read_phase({"x;parse_catalog": 3.0, "x;idle": 5.0}, {"parse_catalog": 1.0})
    (3.0, 0.0)
    >>> read_phase({"x;idle": 5.0}, {"parse_catalog": 1.0})
    (0, None)
    """
    workload = sum(n for stack, n in profile.items() if function_of(stack) is not None)
    if not workload:
        return workload, None
    return workload, round(l1_error(truth, function_shares(profile)), 4)


def profile_diff(after: Profile, before: Profile) -> dict[str, float]:
    """Samples gained between two cumulative profiles (negative counts dropped)."""
    out: dict[str, float] = {}
    for stack, count in after.items():
        delta = count - before.get(stack, 0.0)
        if delta > 0:
            out[stack] = delta
    return out


def wilson_lower(hits: float, n: float, z: float) -> float:
    """The lower end of the Wilson score interval of a share ``hits / n`` (``z``
    standard errors; one-sided 95 % at 1.645); 0.0 with no sample.

    >>> round(wilson_lower(1, 3, 1.645), 3), round(wilson_lower(30, 100, 1.645), 3)
    (0.078, 0.231)
    >>> wilson_lower(5, 10, 0.0), wilson_lower(0, 0, 1.645)
    (0.5, 0.0)
    """
    if n <= 0:
        return 0.0
    p, z2 = hits / n, z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z2 / n))


def detection_time(
    snapshots: Sequence[tuple[float, Profile]], onset: float, true_share: float, z: float = 0.0
) -> float | None:
    """Seconds from ``onset`` until the hot path holds ≥ half its true share of the
    samples gained since onset; ``None`` if it never does.

    ``snapshots`` are ``(unix time, cumulative profile)`` in time order. With ``z`` > 0
    the share must be that many standard errors above half its truth (the lower end of
    its Wilson interval, :func:`wilson_lower`): one hot sample in three is a share of
    0.33 but says little; the benchmark's verdict reads ``z`` = 0.

    >>> snaps = [(10.0, {}), (10.3, {"x;parse_catalog": 2.0, "x;compress_report": 1.0}),
    ...          (13.0, {"x;parse_catalog": 40.0, "x;compress_report": 20.0})]
    >>> detection_time(snaps, 10.0, 0.4), detection_time(snaps, 10.0, 0.4, z=1.645)
    (0.3, 3.0)
    """
    base: Profile = {}
    for t, snap in snapshots:
        if t <= onset:
            base = snap
            continue
        gained = profile_diff(snap, base)
        share = function_shares(gained)[HOT_PATH]
        if z > 0.0:
            n = sum(c for stack, c in gained.items() if function_of(stack) is not None)
            share = wilson_lower(share * n, n, z)
        if share >= true_share / 2.0:
            return round(t - onset, 3)
    return None


def _attr_value(attr: Mapping[str, Any]) -> Any:
    value = attr.get("value", {})
    for key in ("intValue", "doubleValue", "stringValue", "boolValue"):
        if key in value:
            return value[key]
    return None


def carries_samples(span: Mapping[str, Any]) -> bool:
    """Whether a span (OTLP JSON) carries stack samples under the ``adaprof.`` namespace."""
    for attr in span.get("attributes", []):
        key = str(attr.get("key", ""))
        if key.startswith("adaprof.") and "sample" in key:
            value = _attr_value(attr)
            try:
                if value is not None and float(value) > 0:
                    return True
            except (TypeError, ValueError):
                if value:
                    return True
    return any(str(ev.get("name", "")).startswith("adaprof.") for ev in span.get("events", []))


def marker_coverage(spans: Sequence[Mapping[str, Any]], start: float, end: float) -> float | None:
    """Share of the slowest tenth of the phase's server spans carrying a stack sample."""
    durations: list[tuple[float, Mapping[str, Any]]] = []
    for span in spans:
        if span.get("kind") != "SPAN_KIND_SERVER":
            continue
        t0 = int(span.get("startTimeUnixNano", 0)) / 1e9
        if not start <= t0 < end:
            continue
        dur = (int(span.get("endTimeUnixNano", 0)) - int(span.get("startTimeUnixNano", 0))) / 1e6
        durations.append((dur, span))
    if not durations:
        return None
    durations.sort(key=lambda d: d[0])
    slow = [s for _d, s in durations[-max(1, len(durations) // 10) :]]
    return round(sum(1 for s in slow if carries_samples(s)) / len(slow), 4)


def wall_shares(
    spans: Sequence[Mapping[str, Any]], start: float, end: float, names: Collection[str]
) -> dict[str, float]:
    """The *wall-time* shares of the functions ``names`` over the spans that start in
    ``[start, end)``: each workload function runs in a span of its own name, so its
    spans' durations are its wall time, waiting for a CPU or the GIL included (empty
    with no such span).

    >>> spans = [{"name": "price_items", "startTimeUnixNano": "1000000000",
    ...           "endTimeUnixNano": "1030000000"},
    ...          {"name": "parse_catalog", "startTimeUnixNano": "1100000000",
    ...           "endTimeUnixNano": "1110000000"}]
    >>> wall_shares(spans, 0.0, 2.0, {"price_items", "parse_catalog"})
    {'price_items': 0.75, 'parse_catalog': 0.25}
    """
    wall: dict[str, float] = {}
    for span in spans:
        name = str(span.get("name", ""))
        if name not in names:
            continue
        t0 = int(span.get("startTimeUnixNano", 0))
        if start <= t0 / 1e9 < end:
            wall[name] = wall.get(name, 0.0) + int(span.get("endTimeUnixNano", 0)) - t0
    total = sum(wall.values())
    return {f: ns / total for f, ns in wall.items()} if total > 0 else {}


def wall_skew(
    spans: Sequence[Mapping[str, Any]], start: float, end: float, truth: Mapping[str, float]
) -> float | None:
    """L1 between the workload functions' wall-time shares in ``[start, end)``
    (:func:`wall_shares`) and the CPU ``truth``: how far a reading of wall time (py-spy
    ``--gil``, a waiting GIL holder charged to its code) is off with any number of
    samples; ``None`` with no such span.

    >>> spans = [{"name": "price_items", "startTimeUnixNano": "1000000000",
    ...           "endTimeUnixNano": "1030000000"},
    ...          {"name": "parse_catalog", "startTimeUnixNano": "1100000000",
    ...           "endTimeUnixNano": "1110000000"}]
    >>> wall_skew(spans, 0.0, 2.0, {"price_items": 0.5, "parse_catalog": 0.5})
    0.5
    """
    wall = wall_shares(spans, start, end, truth.keys())
    return round(l1_error(truth, wall), 4) if wall else None


def _request_id(span: Mapping[str, Any]) -> str | None:
    for attr in span.get("attributes", []):
        if attr.get("key") != REQUEST_ID_ATTRIBUTE:
            continue
        value = attr.get("value", {})
        if "stringValue" in value:
            return str(value["stringValue"])
        items = value.get("arrayValue", {}).get("values", [])
        if items and "stringValue" in items[0]:
            return str(items[0]["stringValue"])
    return None


def sampled_requests(spans: Sequence[Mapping[str, Any]]) -> set[str]:
    """Request ids (server spans' :data:`REQUEST_ID_ATTRIBUTE`) whose trace carries at
    least one stack sample on any of its spans."""
    sampled_traces = {str(s.get("traceId", "")) for s in spans if carries_samples(s)}
    out: set[str] = set()
    for span in spans:
        rid = _request_id(span)
        if rid is not None and str(span.get("traceId", "")) in sampled_traces:
            out.add(rid)
    return out


def request_coverage(
    requests: Sequence[RequestRecord], sampled: set[str], phase: str
) -> float | None:
    """Share of the slowest tenth (by client latency) of *every request sent* in
    ``phase`` whose trace carries a stack sample; a request whose trace was dropped,
    or that failed, counts as uncovered. ``None`` if the phase sent nothing.

    >>> reqs = [RequestRecord(str(i), "p", 0.0, float(i), True) for i in range(20)]
    >>> request_coverage(reqs, {"19", "3"}, "p")
    0.5
    """
    sent = [r for r in requests if r.phase == phase]
    if not sent:
        return None
    sent.sort(key=lambda r: r.latency_ms)
    slow = sent[-max(1, len(sent) // 10) :]
    return round(sum(1 for r in slow if r.ok and r.request_id in sampled) / len(slow), 4)


def efficiency(samples: float, needed: float) -> float | None:
    """Statistical minimum samples over samples spent (1.0 = as good as it gets)."""
    if samples <= 0:
        return None
    return round(needed / samples, 4)
