"""Where a poll's time goes inside the controller, part by part.

A :class:`PollTiming` rides along one poll: the handler starts it, each step marks the
end of its part, and the group commit's writer thread stamps when it took the poll's
batch, when the batch's rows were written and when its ``COMMIT`` (the WAL append
and its fsync, ``synchronous=FULL``) returned. The parts add up to the handler's time:

- ``parse``: the body read and validated;
- ``read``: the database read a poll needs when memory cannot answer (rare: a new
  session, a restart), and a model loaded from its snapshot;
- ``credit``: the window's reward, and the bandit learning from it;
- ``decide``: the policy's decision (and the report folded into the profile);
- ``queue``: waiting for the writer thread (the batch before it being committed);
- ``write``: the batch's rows (every poll of a batch shares the batch's time);
- ``commit``: ``COMMIT``: the WAL append and its fsync (stores that do not say when
  their ``COMMIT`` starts count it in ``write``);
- ``resume``: from the commit's end until the event loop ran the poll again;
- ``answer``: the answer's JSON.

The controller adds every poll's parts to its ``/metrics``
(``adaprof_poll_part_seconds{part=...}``) and, when ``server_timing`` is on (config,
or ``ADAPROF_SERVER_TIMING=1``), sends them in a ``Server-Timing`` header, with the
handler's start on the machine's monotonic clock (``start;desc=``), so a client on the
same machine can tell the time its poll waited before the handler ran.

Usage::

    >>> t = PollTiming(start=10.0)
    >>> t.mark("parse", 10.001)
    >>> t.mark("decide", 10.003)
    >>> t.committed(picked=10.004, commit_started=10.0045, done=10.0085)
    >>> t.mark("resume", 10.009)
    >>> t.mark("answer", 10.0091)
    >>> [(part, round(s * 1000, 2)) for part, s in t.parts.items()]
    [('parse', 1.0), ('decide', 2.0), ('queue', 1.0), ('write', 0.5), ('commit', 4.0), \
('resume', 0.5), ('answer', 0.1)]
    >>> round(t.total * 1000, 2)
    9.1
    >>> parse_server_timing(t.header())["commit"]
    4.0
"""

from __future__ import annotations

import time

#: Every part, in the order a poll goes through them.
PARTS = ("parse", "read", "credit", "decide", "queue", "write", "commit", "resume", "answer")
#: Response header with the parts (W3C Server-Timing; durations in milliseconds).
HEADER = "Server-Timing"


class PollTiming:
    """The parts of one poll's time in the controller (seconds), marked as it goes."""

    __slots__ = ("_last", "parts", "start")

    def __init__(self, start: float | None = None) -> None:
        #: When the handler began (``time.monotonic()``: one clock for the whole machine).
        self.start = time.monotonic() if start is None else start
        self._last = self.start
        self.parts: dict[str, float] = {}

    def mark(self, part: str, now: float | None = None) -> None:
        """The time since the previous mark was spent in ``part`` (added to it)."""
        now = time.monotonic() if now is None else now
        self.parts[part] = self.parts.get(part, 0.0) + (now - self._last)
        self._last = now

    def committed(self, picked: float, commit_started: float | None, done: float) -> None:
        """The group commit's stamps (from its writer thread): batch taken, ``COMMIT``
        begun (None: not known), batch durable."""
        self.mark("queue", picked)
        if commit_started is not None:
            self.mark("write", commit_started)
            self.mark("commit", done)
        else:
            self.mark("write", done)

    @property
    def total(self) -> float:
        """Seconds from the start to the last mark."""
        return self._last - self.start

    def header(self) -> str:
        """The ``Server-Timing`` value: each part in ms, the handler's start (monotonic s)."""
        items = [f"{part};dur={seconds * 1000:.3f}" for part, seconds in self.parts.items()]
        items.append(f"total;dur={self.total * 1000:.3f}")
        items.append(f'start;desc="{self.start:.6f}"')
        return ", ".join(items)


def parse_server_timing(value: str) -> dict[str, float]:
    """A ``Server-Timing`` value as ``{name: ms}`` (``start``: the monotonic seconds
    in its ``desc``).

    >>> parse_server_timing('parse;dur=0.2, start;desc="12.5"')
    {'parse': 0.2, 'start': 12.5}
    """
    out: dict[str, float] = {}
    for item in value.split(","):
        name, *fields = (f.strip() for f in item.split(";"))
        for field in fields:
            key, _, number = field.partition("=")
            if key in ("dur", "desc"):
                try:
                    out[name] = float(number.strip('"'))
                except ValueError:
                    continue
    return out
