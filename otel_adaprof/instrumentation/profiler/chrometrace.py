"""py-spy's ``chrometrace`` output, turned back into timed samples per thread.

py-spy writes one ``B`` (begin) and ``E`` (end) event per frame whenever a thread's
stack changes, with ``tid`` (= ``threading.get_ident()``) and ``ts`` in microseconds
since py-spy started. Between two changes the stack was the same at every sample, so
an interval of ``d`` µs at ``rate`` Hz held ``round(d × rate / 1e6)`` samples; they are
placed evenly in it. With ``--idle`` every sample of every thread is recorded, so the
intervals have no gaps.

    >>> def at(path, line):
    ...     return {"filename": path, "line": line}
    >>> events = [
    ...     {"ph": "B", "tid": 5, "ts": 0, "name": "main", "args": at("/a.py", 1)},
    ...     {"ph": "B", "tid": 5, "ts": 0, "name": "burn", "args": at("/b.py", 2)},
    ...     {"ph": "E", "tid": 5, "ts": 30000, "name": "burn", "args": {}},
    ...     {"ph": "E", "tid": 5, "ts": 30000, "name": "main", "args": {}},
    ... ]
    >>> samples = parse_chrometrace(events, started_at_ns=10**9, rate_hz=100, roots=())
    >>> [(t - 10**9) // 10**6 for t, _stack, _since in samples[5]]
    [0, 10, 20]
    >>> samples[5][0][1]
    ('main (a.py:1)', 'burn (b.py:2)')
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.join.stacks import Stack, frame_text

#: Most samples reconstructed from one interval (guards against a bogus ``ts``).
MAX_SAMPLES_PER_INTERVAL = 100_000


def load_events(raw: bytes | str) -> list[dict[str, Any]]:
    """Decode the file; :class:`ContractError` when it is not a JSON list of events."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError([("py-spy output", f"not valid JSON: {exc}")]) from None
    if isinstance(data, Mapping):  # the object form of the trace format
        data = data.get("traceEvents")
    if not isinstance(data, list):
        raise ContractError([("py-spy output", "expected a JSON list of trace events")])
    return data


def thread_ids(events: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """``{tid in the file: threading.get_ident()}``.

    py-spy 0.4.3 writes the real thread id as ``tid``; later versions remap ``tid`` to
    a small number and name the real id in a ``thread_name`` metadata event
    (``"args": {"name": "140138846464896: MainThread"}``).
    """
    out: dict[int, int] = {}
    for ev in events:
        if isinstance(ev, Mapping) and ev.get("ph") == "M" and ev.get("name") == "thread_name":
            name = str((ev.get("args") or {}).get("name", ""))
            head = name.split(":", 1)[0].strip()
            if head.isdigit() and isinstance(ev.get("tid"), int):
                out[int(ev["tid"])] = int(head)
    return out


def last_ts_us(events: Sequence[Mapping[str, Any]]) -> int:
    """The latest ``ts`` in the file: py-spy's clock when it wrote the file.

    py-spy's clock starts when it has attached, an unknown few tens of milliseconds
    after it was spawned; it writes the file just before it exits. The wall time of
    ``ts = 0`` is therefore best estimated from the end: exit time − this value.

    >>> last_ts_us([{"ph": "B", "ts": 5}, {"ph": "E", "ts": 90}, {"ph": "M", "ts": 0}])
    90
    """
    latest = 0
    for ev in events:
        if isinstance(ev, Mapping):
            ts = ev.get("ts")
            if isinstance(ts, (int, float)) and ts > latest:
                latest = int(ts)
    return latest


def parse_chrometrace(
    events: Sequence[Mapping[str, Any]],
    *,
    started_at_ns: int,
    rate_hz: int,
    roots: tuple[str, ...] | None = None,
    gil: bool = False,
    total_samples: int | None = None,
    ignored: Collection[int] = (),
) -> dict[int, list[tuple[int, Stack, int]]]:
    """``{tid: [(unix time ns, stack root-first, since ns), ...]}`` from py-spy's events.

    ``since`` is the time of the change that began the sample's interval. Threads in
    ``ignored`` (the agent's own) are never turned into samples, and each distinct
    frame is formatted once.

    ``gil=True`` reads a ``--gil`` run (see :func:`_gil_track`); ``total_samples`` is
    py-spy's own count of the samples it took (its ``Samples: N`` line).

    A malformed event raises :class:`ContractError` naming its index and field.
    """
    real_ids = thread_ids(events)
    frames: dict[tuple[Any, Any, Any], str] = {}
    per_thread: dict[int, list[tuple[int, bool, str]]] = {}
    for index, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise ContractError([(f"py-spy output[{index}]", "event is not an object")])
        ph = ev.get("ph")
        if ph != "B" and ph != "E":
            continue  # metadata and other event kinds carry no stack
        tid, ts = ev.get("tid"), ev.get("ts")
        if not isinstance(tid, int) or not isinstance(ts, (int, float)) or ts < 0:
            raise ContractError([(f"py-spy output[{index}]", "needs an integer tid and ts >= 0")])
        tid = real_ids.get(tid, tid)
        if ph == "E":
            per_thread.setdefault(tid, []).append((int(ts), False, ""))
            continue
        if tid in ignored and not gil:
            per_thread.setdefault(tid, []).append((int(ts), True, ""))
            continue
        args = ev.get("args") or {}
        key = (ev.get("name"), args.get("filename"), args.get("line"))
        frame = frames.get(key)
        if frame is None:
            line = key[2]
            frame = frames[key] = frame_text(
                str(key[0]), str(key[1] or "?"), int(line) if isinstance(line, int) else 0, roots
            )
        per_thread.setdefault(tid, []).append((int(ts), True, frame))

    period_us = 1e6 / max(1, rate_hz)
    changes = {tid: _changes(items) for tid, items in per_thread.items()}
    if gil:
        return _gil_track(changes, started_at_ns, period_us, total_samples, ignored)
    out: dict[int, list[tuple[int, Stack, int]]] = {}
    for tid, points in changes.items():
        if tid in ignored:
            continue
        samples: list[tuple[int, Stack, int]] = []
        for i, (ts, stack) in enumerate(points):
            if not stack:
                continue
            end = points[i + 1][0] if i + 1 < len(points) else ts + period_us
            count = max(1, min(MAX_SAMPLES_PER_INTERVAL, round((end - ts) / period_us)))
            step = (end - ts) / count
            since = started_at_ns + ts * 1000
            for k in range(count):
                samples.append((started_at_ns + int((ts + k * step) * 1000), stack, since))
        if samples:
            out[tid] = samples
    return out


def _changes(items: list[tuple[int, bool, str]]) -> list[tuple[int, Stack]]:
    """One thread's events as ``[(ts µs, stack after the change), ...]`` in time order."""
    items.sort(key=lambda item: item[0])  # stable: B/E order within a ts is kept
    points: list[tuple[int, Stack]] = []
    stack: list[str] = []
    i, n = 0, len(items)
    while i < n:
        ts = items[i][0]
        while i < n and items[i][0] == ts:
            _, begin, frame = items[i]
            if begin:
                stack.append(frame)
            elif stack:
                stack.pop()
            i += 1
        points.append((ts, tuple(stack)))
    return points


def _gil_track(
    changes: dict[int, list[tuple[int, Stack]]],
    started_at_ns: int,
    period_us: float,
    total_samples: int | None,
    ignored: Collection[int],
) -> dict[int, list[tuple[int, Stack, int]]]:
    """Samples of a ``--gil`` run: one thread (the GIL holder) or none at each tick.

    py-spy writes a thread's events only when *its* stack changes, and with ``--gil``
    it samples a thread only while it holds the GIL, so a stack that was not seen
    again does not mean it went on. What is known: a change at tick ``t`` means that
    thread held the GIL at ``t`` (one sample each), and py-spy's ``Samples: N`` is the
    number of samples in all. The ticks between two changes went to the thread that
    changed last (the GIL is mostly handed over with a change of stack), in the
    share ``(N - changes) / ticks between changes``, spread evenly, so the total is
    py-spy's. Without ``N`` every tick between changes is counted (the wall-mode
    reading, an over-count when the service idles).
    """
    points = sorted((ts, tid, stack) for tid, pts in changes.items() for ts, stack in pts if stack)
    if not points:
        return {}
    end_ts = max(pts[-1][0] for pts in changes.values())
    gaps: list[int] = []
    for i, (ts, _tid, _stack) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else max(end_ts, ts)
        gaps.append(max(0, round((nxt - ts) / period_us) - 1))
    interior = sum(gaps)
    fill = 1.0
    if total_samples is not None:
        fill = min(1.0, max(0.0, (total_samples - len(points)) / interior)) if interior else 0.0
    out: dict[int, list[tuple[int, Stack, int]]] = {}
    carry = 0.0
    for (ts, tid, stack), gap in zip(points, gaps, strict=True):
        carry += fill * gap
        count = min(MAX_SAMPLES_PER_INTERVAL, int(carry))
        carry -= count
        if tid in ignored:
            continue
        since = started_at_ns + ts * 1000
        bucket = out.setdefault(tid, [])
        bucket.append((since, stack, since))
        if count:
            step = gap * period_us / count
            for k in range(1, count + 1):
                t = ts + period_us / 2 + (k - 0.5) * step
                bucket.append((started_at_ns + int(t * 1000), stack, since))
    return out
