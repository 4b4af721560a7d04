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
from collections.abc import Mapping, Sequence
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
) -> dict[int, list[tuple[int, Stack, int]]]:
    """``{tid: [(unix time ns, stack root-first, since ns), ...]}`` from py-spy's events.

    ``since`` is the time of the change that began the sample's interval.

    A malformed event raises :class:`ContractError` naming its index and field.
    """
    per_thread: dict[int, list[tuple[int, str, str]]] = {}
    real_ids = thread_ids(events)
    for index, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise ContractError([(f"py-spy output[{index}]", "event is not an object")])
        ph = ev.get("ph")
        if ph not in ("B", "E"):
            continue  # metadata and other event kinds carry no stack
        tid, ts, name = ev.get("tid"), ev.get("ts"), ev.get("name")
        if not isinstance(tid, int) or not isinstance(ts, (int, float)) or ts < 0:
            raise ContractError([(f"py-spy output[{index}]", "needs an integer tid and ts >= 0")])
        frame = ""
        if ph == "B":
            args = ev.get("args") or {}
            frame = frame_text(
                str(name), str(args.get("filename", "?")), int(args.get("line", 0)), roots
            )
        per_thread.setdefault(real_ids.get(tid, tid), []).append((int(ts), str(ph), frame))

    period_us = 1e6 / max(1, rate_hz)
    out: dict[int, list[tuple[int, Stack, int]]] = {}
    for tid, items in per_thread.items():
        items.sort(key=lambda item: item[0])  # stable: B/E order within a ts is kept
        samples: list[tuple[int, Stack, int]] = []
        stack: list[str] = []
        i = 0
        while i < len(items):
            ts = items[i][0]
            while i < len(items) and items[i][0] == ts:
                _, ph, frame = items[i]
                if ph == "B":
                    stack.append(frame)
                elif stack:
                    stack.pop()
                i += 1
            if not stack:
                continue
            end = items[i][0] if i < len(items) else ts + period_us
            count = max(1, min(MAX_SAMPLES_PER_INTERVAL, round((end - ts) / period_us)))
            step = (end - ts) / count
            frozen = tuple(stack)
            since = started_at_ns + ts * 1000
            for k in range(count):
                samples.append((started_at_ns + int((ts + k * step) * 1000), frozen, since))
        if samples:
            out[tid] = samples
    return out
