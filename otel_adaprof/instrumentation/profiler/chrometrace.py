"""py-spy's ``chrometrace`` output, turned back into timed samples per thread.

py-spy writes one ``B`` (begin) and ``E`` (end) event per frame whenever a thread's
stack changes, with ``tid`` (= ``threading.get_ident()``) and ``ts`` in microseconds
since py-spy started. It samples at random times (exponential gaps, one period on
average) and, with ``--idle``, reads every thread at each: the samples at which some
thread's stack changed are seen, the others are spread over the gaps between them
(:func:`sample_ticks`). Between two changes of a thread its stack was the same at
every sample, seen or not.

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
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.join.stacks import Stack, frame_text, is_waiting

#: One sample: ``(unix time ns, stack root-first, since ns)``.
Sample = tuple[int, Stack, int]
#: Of one thread's samples, those where it may have been the GIL holder.
Keep = Callable[[int, list[Sample]], list[Sample]]
#: Thread liveness: until when (unix ns) the thread with this id alive at this time
#: lived (``None``: none is known to have).
LivedUntil = Callable[[int, int], int | None]

#: Most samples reconstructed from one interval (guards against a bogus ``ts``).
MAX_SAMPLES_PER_INTERVAL = 100_000
#: Events of one py-spy sample (every thread read once) are stamped this close (µs).
TICK_GAP_US = 300


def _is_mapping(ev: object) -> bool:
    """``isinstance(ev, Mapping)``, quick for the dicts ``json`` gives (an ABC check
    costs more than the rest of an event's handling)."""
    return type(ev) is dict or isinstance(ev, Mapping)


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
        if _is_mapping(ev) and ev.get("ph") == "M" and ev.get("name") == "thread_name":
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
        if _is_mapping(ev):
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
    keep: Keep | None = None,
    lived_until: LivedUntil | None = None,
) -> dict[int, list[tuple[int, Stack, int]]]:
    """``{tid: [(unix time ns, stack root-first, since ns), ...]}`` from py-spy's events.

    ``since`` is the time of the change that began the sample's interval. With
    ``lived_until`` (thread liveness): a new thread whose first stack is the same as its
    exited forerunner's last one shows no change; if py-spy saw no change either for the
    rest of its life, the samples *seen* (at which some thread changed) while it lived
    read it with that stack: ``since`` is then the first of them, and the stack counts
    as its own. Threads in
    ``ignored`` (the agent's own) are never turned into samples, and each distinct
    frame is formatted once.

    ``gil=True`` reads a ``--gil`` run (see :func:`_gil_track`); ``total_samples`` is
    py-spy's own count of the samples it took (its ``Samples: N`` line); ``keep``
    (thread liveness: of one thread's samples, those it lived) narrows where the
    samples between two changes of a ``--gil`` run may go.

    A malformed event raises :class:`ContractError` naming its index and field.
    """
    real_ids = thread_ids(events)
    frames: dict[tuple[Any, Any, Any], str] = {}
    per_thread: dict[int, list[tuple[int, bool, str]]] = {}
    for index, ev in enumerate(events):
        if not _is_mapping(ev):
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
        return _gil_track(changes, started_at_ns, period_us, total_samples, ignored, keep)
    ticks, tick_of = sample_ticks(changes, period_us)
    seen = set(tick_of.values()) if lived_until is not None else set()
    out: dict[int, list[tuple[int, Stack, int]]] = {}
    for tid, points in changes.items():
        if tid in ignored:
            continue
        samples: list[tuple[int, Stack, int]] = []
        for i, (ts, stack) in enumerate(points):
            if not stack:
                continue
            # this stack at every sample from its change to the next one (that one's
            # own sample excluded); at least the change's own sample
            first = tick_of.get(ts, len(ticks)) + 1
            last = tick_of.get(points[i + 1][0], len(ticks)) if i + 1 < len(points) else first
            last = min(max(first, last), first + MAX_SAMPLES_PER_INTERVAL - 1)
            since = started_at_ns + ts * 1000
            samples.append((since, stack, since))
            next_ns = started_at_ns + points[i + 1][0] * 1000 if i + 1 < len(points) else 0
            known = -1  # the last sign of life of the thread last found alive
            for k in range(first, last):
                t_ns = started_at_ns + int(ticks[k] * 1000)
                if k in seen and lived_until is not None and t_ns > known:
                    until = lived_until(tid, t_ns)
                    if until is not None:
                        known = until
                        if until < next_ns:  # py-spy read it, and saw no change till it ended
                            since = t_ns
                samples.append((t_ns, stack, since))
        if samples:
            out[tid] = samples
    return out


def sample_ticks(
    changes: Mapping[int, list[tuple[int, Stack]]], period_us: float
) -> tuple[list[float], dict[int, int]]:
    """When (µs) py-spy took its samples (seen, and not seen, spread); and for each
    ``ts`` of a change, the index of its sample (the file's last ``ts``: past the end).

    py-spy samples at random times (exponential gaps, mean one period: no aliasing
    with periodic work) and reads every thread at each sample (``--idle``); it writes
    a thread's events only when its stack changed. A sample is *seen* when some
    thread's stack changed then (the clock beacon's thread changes every few periods);
    the events of one sample are stamped within :data:`TICK_GAP_US`. The others are
    not seen: the run's length over the period, less those seen, spread over the gaps
    between seen samples in proportion to their length. The last ``ts`` (py-spy
    closing every stack as it writes the file) is no sample. Between two changes of
    one thread, its stack was the same at every one of these samples, seen or not.

    >>> stack = ("main (a.py:1)",)
    >>> ticks, index = sample_ticks({1: [(0, stack), (15_000, ()), (50_000, ())],
    ...                              2: [(15_050, stack), (50_000, ())]}, period_us=10_000)
    >>> [round(t) for t in ticks], index
    ([0, 7500, 15000, 26700, 38350], {0: 0, 15000: 2, 15050: 2})
    """
    times = sorted({ts for points in changes.values() for ts, _stack in points})
    if len(times) < 2:
        return [float(t) for t in times], {t: k for k, t in enumerate(times)}
    end = times[-1]
    seen: list[tuple[int, int]] = []  # (first, last) ts of each seen sample
    members: list[list[int]] = []
    for ts in times[:-1]:
        if seen and ts - seen[-1][1] <= TICK_GAP_US:
            seen[-1] = (seen[-1][0], ts)
            members[-1].append(ts)
        else:
            seen.append((ts, ts))
            members.append([ts])
    length = end - seen[0][0]
    unseen = min(MAX_SAMPLES_PER_INTERVAL, max(0.0, length / period_us - len(seen)))
    ticks: list[float] = []
    index: dict[int, int] = {}
    carry = 0.5
    for k, (first, last) in enumerate(seen):
        index.update(dict.fromkeys(members[k], len(ticks)))
        ticks.append(float(first))
        gap_to = seen[k + 1][0] if k + 1 < len(seen) else end
        carry += unseen * (gap_to - first) / length
        n = int(carry)
        carry -= n
        step = (gap_to - last) / (n + 1)
        ticks.extend(last + step * (j + 1) for j in range(n))
    return ticks, index


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
    keep: Keep | None = None,
) -> dict[int, list[tuple[int, Stack, int]]]:
    """Samples of a ``--gil`` run: one thread (the GIL holder) or none at each tick.

    py-spy writes a thread's events only when *its* stack changes, and with ``--gil``
    it samples a thread only while it holds the GIL, so a stack that was not seen
    again does not mean it went on. What is known: a change at tick ``t`` means that
    thread held the GIL at ``t`` (one sample each), and py-spy's ``Samples: N`` is the
    number of samples in all. The ticks between two changes are *candidates* of the
    thread that changed last (the GIL is mostly handed over with a change of stack),
    unless its stack was a wait (it was letting the GIL go) or ``keep`` (thread
    liveness) says the thread was gone by then. The ``N - changes`` remaining samples
    are spread evenly over the candidates, so the total is py-spy's (less what has no
    candidate). Without ``N``
    every candidate counts (an over-count when the service idles).
    """
    points = sorted((ts, tid, stack) for tid, pts in changes.items() for ts, stack in pts if stack)
    if not points:
        return {}
    end_ts = max(pts[-1][0] for pts in changes.values())
    candidates: list[list[tuple[int, Stack, int]]] = []
    for i, (ts, tid, stack) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else max(end_ts, ts)
        gap = min(MAX_SAMPLES_PER_INTERVAL, max(0, round((nxt - ts) / period_us) - 1))
        since = started_at_ns + ts * 1000
        if gap == 0 or is_waiting(stack):
            candidates.append([])
            continue
        # ``since`` = the tick: a thread id reused by a new thread with the same stack
        # shows no change in a --gil run, so the stack's start says nothing of whose it is
        ticks = [
            (t, stack, t)
            for t in (started_at_ns + int((ts + k * period_us) * 1000) for k in range(1, gap + 1))
        ]
        candidates.append(keep(tid, ticks) if keep is not None else ticks)
    available = sum(len(c) for c in candidates)
    fill = 1.0
    if total_samples is not None:
        left = total_samples - len(points)
        fill = min(1.0, max(0.0, left / available)) if available else 0.0
    out: dict[int, list[tuple[int, Stack, int]]] = {}
    carry = 0.0
    for (ts, tid, stack), ticks in zip(points, candidates, strict=True):
        carry += fill * len(ticks)
        count = min(len(ticks), int(carry))
        carry -= count
        if tid in ignored:
            continue
        since = started_at_ns + ts * 1000
        bucket = out.setdefault(tid, [])
        bucket.append((since, stack, since))
        if count:
            step = len(ticks) / count
            bucket.extend(ticks[int((k + 0.5) * step)] for k in range(count))
    return out
