"""A session timeline (``GET /v1/sessions/{id}/timeline``) as plain rows for plotting.

The controller answers a list of windows (or an object holding them under ``windows``,
``timeline`` or ``entries``); each window has the agent, the config version, the
params it ran under, the observed state and the reward. This module reads that
tolerantly — missing figures become ``None`` — so the report never fails on a window.

Usage::

    >>> from otel_adaprof.demo.timeline import parse_timeline
    >>> rows = parse_timeline({"windows": [{"agent": "a", "config_version": 2,
    ...     "params": {"sampling_interval_ms": 10}, "reward": 0.5,
    ...     "state": {"window_start": 100.0, "window_seconds": 5.0,
    ...               "profiler_cpu_seconds": 0.1}}]})
    >>> rows[0].rate_hz, rows[0].profiler_cpu_fraction, rows[0].reward
    (100.0, 0.02, 0.5)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_STATE_KEYS = ("state", "observed", "observed_state", "window")
_TERM_KEYS = ("reward_terms", "terms", "reward_breakdown")
#: Every span category (``otel_adaprof.params.Category``): no filter when all are in.
_ALL_CATEGORIES = {"db", "http", "internal", "messaging", "rpc"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


@dataclass(frozen=True)
class TimelineRow:
    """One window of a session, with the figures the report plots."""

    t: float
    agent: str
    config_version: int
    params: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    reward: float | None = None
    information: float | None = None
    action: str = ""

    @property
    def rate_hz(self) -> float | None:
        """py-spy rate of the params in force (0 = off; ``None``: no params known yet)."""
        interval = _num(self.params.get("sampling_interval_ms"))
        if interval is None:
            return None
        return 0.0 if not interval else round(1000.0 / interval, 3)

    @property
    def stack_depth(self) -> float | None:
        """Stack depth in force."""
        return _num(self.params.get("stack_depth"))

    @property
    def trace_ratio(self) -> float | None:
        """Trace ratio in force."""
        return _num(self.params.get("trace_ratio"))

    @property
    def profiler_cpu_fraction(self) -> float | None:
        """Profiler CPU seconds per wall second in this window."""
        cpu = _num(self.state.get("profiler_cpu_seconds"))
        secs = _num(self.state.get("window_seconds"))
        if cpu is None or not secs:
            return _num(self.state.get("profiler_cpu_fraction"))
        return round(cpu / secs, 6)

    def figure(self, key: str) -> float | None:
        """A numeric field of the observed state."""
        return _num(self.state.get(key))

    def params_label(self) -> str:
        """The params in force in a few words, for people.

        >>> TimelineRow(0.0, "a", 1, params={"sampling_interval_ms": 200, "stack_depth": 32,
        ...     "trace_ratio": 0.25, "span_filters": {"categories": ["db"]},
        ...     "marker_trigger": {"latency_percentile": 90.0}}).params_label()
        '5 Hz, depth 32, ratio 0.25, markers: db, slower than p90'
        """
        p = self.params
        if not p:
            return "–"
        rate = self.rate_hz
        parts = [f"{rate:g} Hz" if rate else "profiler off"]
        if self.stack_depth is not None:
            parts.append(f"depth {self.stack_depth:g}")
        if self.trace_ratio is not None:
            parts.append(f"ratio {self.trace_ratio:g}")
        raw_filters = p.get("span_filters")
        filters: Mapping[str, Any] = raw_filters if isinstance(raw_filters, Mapping) else {}
        cats = filters.get("categories")
        if isinstance(cats, (list, tuple)) and set(cats) != _ALL_CATEGORIES:
            parts.append("markers: " + "+".join(sorted(str(c) for c in cats)))
        if filters.get("errors_only"):
            parts.append("errors only")
        raw_trigger = p.get("marker_trigger")
        trigger: Mapping[str, Any] = raw_trigger if isinstance(raw_trigger, Mapping) else {}
        slow = _num(trigger.get("min_duration_ms"))
        if slow:
            parts.append(f"≥ {slow:g} ms")
        pct = _num(trigger.get("latency_percentile"))
        if pct is not None:
            parts.append(f"slower than p{pct:g}")
        return ", ".join(parts)

    def params_key(self) -> str:
        """A stable string of the knobs the report tracks, to spot changes."""
        p = self.params
        return (
            f"{p.get('sampling_interval_ms')}/{p.get('stack_depth')}/{p.get('trace_ratio')}/"
            f"{p.get('span_filters')}/{p.get('marker_trigger')}"
        )


def _windows(raw: Any) -> Sequence[Any]:
    if isinstance(raw, Mapping):
        for key in ("windows", "timeline", "entries", "items"):
            if isinstance(raw.get(key), list):
                return list(raw[key])
        return []
    return list(raw) if isinstance(raw, list) else []


def _agent_name(item: Mapping[str, Any]) -> str:
    agent = item.get("agent", item.get("agent_id", item.get("instance_id", "")))
    if isinstance(agent, Mapping):  # an AgentIdentity object
        agent = agent.get("instance_id", agent.get("service", ""))
    return str(agent)


def _row(item: Mapping[str, Any], index: int) -> TimelineRow:
    state: dict[str, Any] = {}
    for key in _STATE_KEYS:
        if isinstance(item.get(key), Mapping):
            state = dict(item[key])
            break
    reward_raw = item.get("reward")
    terms: Mapping[str, Any] = {}
    for key in _TERM_KEYS:
        if isinstance(item.get(key), Mapping):
            terms = item[key]
    if isinstance(reward_raw, Mapping):
        terms = reward_raw
        reward_raw = reward_raw.get("total", reward_raw.get("reward", reward_raw.get("value")))
    information = None
    for key in ("information", "information_gain", "info_gain", "kl"):
        information = _num(item.get(key)) if information is None else information
        information = _num(terms.get(key)) if information is None else information
    t = _num(state.get("window_start"))
    t = t if t is not None else _num(item.get("window_start", item.get("at", item.get("t"))))
    params = item.get("params")
    return TimelineRow(
        t=t if t is not None else float(index),
        agent=_agent_name(item),
        config_version=int(_num(item.get("config_version")) or 0),
        params=dict(params) if isinstance(params, Mapping) else {},
        state=state,
        reward=_num(reward_raw),
        information=information,
        action=str(item.get("action") or ""),
    )


def parse_timeline(raw: Any) -> list[TimelineRow]:
    """Rows in time order from the controller's timeline JSON (tolerant, never raises)."""
    rows = [_row(item, i) for i, item in enumerate(_windows(raw)) if isinstance(item, Mapping)]
    return sorted(rows, key=lambda r: r.t)


def profiler_cpu_over(rows: Sequence[TimelineRow]) -> float | None:
    """Profiler CPU per wall second over these windows: their CPU seconds over their
    seconds, so a short window (a burst's early report) weighs what it lasted, and a
    long one (a settled agent's) as much (windows without seconds: their mean fraction).

    >>> rows = [TimelineRow(0.0, "a", 1, state={"profiler_cpu_seconds": 0.03,
    ...                                         "window_seconds": 1.0}),
    ...         TimelineRow(1.0, "a", 2, state={"profiler_cpu_seconds": 0.01,
    ...                                         "window_seconds": 9.0})]
    >>> profiler_cpu_over(rows), profiler_cpu_over([])
    (0.004, None)
    """
    cpu = seconds = 0.0
    fractions: list[float] = []
    for row in rows:
        spent, secs = row.figure("profiler_cpu_seconds"), row.figure("window_seconds")
        if spent is not None and secs:
            cpu, seconds = cpu + spent, seconds + secs
        elif row.profiler_cpu_fraction is not None:
            fractions.append(row.profiler_cpu_fraction)
    if seconds > 0.0:
        return round(cpu / seconds, 6)
    return round(sum(fractions) / len(fractions), 6) if fractions else None


def samples_in_by(rows: Sequence[TimelineRow], t: float) -> bool:
    """Whether every agent of ``rows`` has reported all its samples taken before unix time
    ``t``: a window of it ended at or after ``t`` with none pending from before ``t``
    (``samples_pending_since``: a py-spy run in flight, its samples in a later report).

    >>> def w(start, pending):
    ...     state = {"window_start": start, "window_seconds": 2.0,
    ...              "samples_pending_since": pending}
    ...     return TimelineRow(start, "a", 1, state=state)
    >>> samples_in_by([w(98.0, 99.0)], 100.0)  # the run started at 99 s is in flight
    False
    >>> samples_in_by([w(98.0, 99.0), w(100.0, 99.5)], 100.0)
    False
    >>> samples_in_by([w(98.0, 99.0), w(100.0, 100.5)], 100.0)
    True
    >>> samples_in_by([w(98.5, None)], 100.0), samples_in_by([w(97.0, None)], 100.0)
    (True, False)
    >>> samples_in_by([], 100.0)
    False
    """
    done: set[str] = set()
    for row in rows:
        start, seconds = row.figure("window_start"), row.figure("window_seconds")
        if start is None or seconds is None or start + seconds < t:
            continue
        pending = row.figure("samples_pending_since")
        if pending is None or pending >= t:
            done.add(row.agent)
    return bool(rows) and done == {row.agent for row in rows}


def param_change_labels(rows: Sequence[TimelineRow]) -> list[tuple[float, str, str, str]]:
    """``(t, before, after, action)`` per params change, with :meth:`~TimelineRow.params_label`."""
    out: list[tuple[float, str, str, str]] = []
    for prev, row in itertools.pairwise(rows):
        if row.params and prev.params and row.params_key() != prev.params_key():
            out.append((row.t, prev.params_label(), row.params_label(), row.action))
    return out


def param_changes(rows: Sequence[TimelineRow]) -> list[tuple[float, str, str]]:
    """``(t, before, after)`` each time the params in force changed between windows."""
    out: list[tuple[float, str, str]] = []
    for prev, row in itertools.pairwise(rows):
        if row.params and prev.params and row.params_key() != prev.params_key():
            out.append((row.t, prev.params_key(), row.params_key()))
    return out
