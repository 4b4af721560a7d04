"""The open-span index of slow-span capture, and the alarm a starting span may set.

While slow-span capture is on, the marker processor puts every span that starts in an
:class:`OpenSpanIndex` (span id → thread ident, native id, start unix ns, name) and takes
it out when it ends; the agent's fast loop reads it to find the spans that outlived
their trigger. The loop does not poll: it sleeps until its next planned tick (the
alarm, :attr:`OpenSpanIndex.alarm_ns`), and a span that starts meanwhile and would be
looked at too late moves the alarm earlier (:meth:`OpenSpanIndex.starting`). The loop
keeps, per operation, when after its start a span turns slow (:attr:`OpenSpanIndex.look_ns`,
its trigger), and the slack allowed (:attr:`OpenSpanIndex.slack_ns`, half an interval):
a span is looked at when it turns slow or up to half an interval later (the spans
due within that of each other share a tick). A span that ends before it is looked at,
when the alarm was set for it, sets the alarm back to the next open span or the loop's
own tick (:meth:`OpenSpanIndex.ending`): a span that ends in time costs no tick. A span
of an operation not in ``look_ns`` sets the alarm to now (the loop then learns its
operation).

On Linux the alarm is a ``timerfd`` that the starting span re-arms without waking the
loop (one system call in the span's thread, for the spans that move it); elsewhere the
starting span wakes the loop, which plans again.

    >>> index = OpenSpanIndex()
    >>> index.slack_ns, index.look_ns["GET /a"] = 10_000_000, 40_000_000  # p90 40 ms
    >>> index.plan(10**9 + 100_000_000)               # the loop sleeps until +100 ms
    >>> index.starting(10**9, "GET /a")               # look at +40 ms: the alarm moves
    True
    >>> index.alarm_ns - 10**9, index.moved
    (40000000, 1)
    >>> index.starting(10**9 + 5_000_000, "GET /a")   # +45 ms: the +40 ms tick will do
    False
    >>> index.starting(10**9 + 20_000_000, "GET /new")  # not known yet: look now
    True
    >>> index.wait(1.0), index.alarm_ns                # (that time has passed)
    (True, 1020000000)

    The loop plans its own next tick (+200 ms) and the open spans' (the one that
    started at +5 ms, looked at +45 ms); when that span ends, the alarm goes back to
    the loop's own tick:

    >>> index.begin(); index.pop(2, None)
    >>> index[3] = (1, 1, 10**9 + 5_000_000, "GET /a")
    >>> index.plan(10**9 + 200_000_000, 10**9 + 45_000_000); index.alarm_ns - 10**9
    45000000
    >>> _ = index.pop(3); index.ending(10**9 + 5_000_000, "GET /a"), index.alarm_ns - 10**9
    (True, 200000000)
    >>> index.close()
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import sys
import threading

#: Open span: (thread ident, native thread id, start unix ns, span name).
OpenSpan = tuple[int, int, int, str]

#: An alarm that is not set (and ``look_ns`` of an operation whose trigger cannot fire yet).
NEVER_NS = 1 << 62

_CLOCK_REALTIME = 0
_TFD_CLOEXEC = 0o2000000
_TFD_NONBLOCK = 0o4000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _TimerFd:
    """A one-shot ``timerfd`` on the wall clock, armed at an absolute time (Linux).

    Its calls keep the GIL (``ctypes.PyDLL``): each is one short system call.
    """

    def __init__(self) -> None:
        libc = ctypes.PyDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        fd = int(libc.timerfd_create(_CLOCK_REALTIME, _TFD_CLOEXEC | _TFD_NONBLOCK))
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self.fd = fd
        self._spec = _Itimerspec()

    def arm(self, at_ns: int) -> None:
        """Expire at ``at_ns`` (unix ns; at once if that has passed). Never raises (it
        runs in the application's threads): a failure costs the loop's ticks their
        precision, not a request."""
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(max(1, at_ns), 1_000_000_000)  # 0 disarms
        self._settime(self.fd, _TFD_TIMER_ABSTIME, ctypes.addressof(self._spec), None)

    def wait(self, timeout: float) -> bool:
        """Until it expires or ``timeout`` seconds passed; whether it expired."""
        try:
            ready, _w, _x = select.select([self.fd], [], [], max(0.0, timeout))
            if ready:
                os.read(self.fd, 8)
        except BlockingIOError:  # read by nobody else; expired and re-armed meanwhile
            return True
        except (OSError, ValueError):  # closed (the capture was switched off)
            return True
        return bool(ready)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:  # an index dropped without close() (a forked child's)
        with contextlib.suppress(Exception):
            self.close()


class _Bell:
    """Where there is no ``timerfd``: the starting span wakes the loop (a bare lock:
    an ``Event``'s timed wait costs more per wake-up, in Python)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def arm(self, at_ns: int) -> None:
        with contextlib.suppress(RuntimeError):  # already rung
            self._lock.release()

    def wait(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=max(0.0, timeout))

    def close(self) -> None:
        pass


def _alarm() -> _TimerFd | _Bell:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            return _TimerFd()
    return _Bell()


class OpenSpanIndex(dict[int, OpenSpan]):
    """The open spans (a dict, written by the span path) and the fast loop's alarm."""

    def __init__(self) -> None:
        super().__init__()
        #: Operation → ns after a span's start when it turns slow (its trigger;
        #: :data:`NEVER_NS`: its trigger cannot fire yet).
        self.look_ns: dict[str, int] = {}
        #: How much later than its ``look_ns`` a span may be looked at (ns).
        self.slack_ns = 0
        #: Operations of starting spans not in ``look_ns`` (the loop adds them).
        self.unknown: set[str] = set()
        #: When the loop wakes next (unix ns; :data:`NEVER_NS`: while it plans).
        self.alarm_ns = NEVER_NS
        #: The loop's own next tick, whatever the open spans (its signals, the repeat
        #: captures of slow spans).
        self.base_ns = NEVER_NS
        #: Spans the loop saw turn slow (their next look is the loop's own plan).
        self.seen: set[int] | frozenset[int] = frozenset()
        #: Alarms moved earlier by starting spans, and later by ending ones.
        self.moved = 0
        self.moved_later = 0
        #: Moves asked by spans (made or not): the loop's measure of the span path's cost.
        self.asked = 0
        #: Set by the loop while spans ask for more moves than the loop's polling would
        #: cost (:data:`~otel_adaprof.instrumentation.profiler.slow_spans.MAX_MOVES_PER_S`):
        #: no span moves the alarm, the loop ticks every interval instead.
        self.polling = False
        self._lock = threading.Lock()
        self._alarm = _alarm()
        #: Whether a starting span re-arms the loop's timer without waking it (Linux).
        self.timer = isinstance(self._alarm, _TimerFd)

    def starting(self, start_ns: int, name: str) -> bool:
        """Called by the span path for a span just put in the index: move the alarm
        earlier when the loop would look at the span too late. Whether it moved."""
        look = self.look_ns.get(name)
        if look is None:  # the loop learns its operation at the tick it asks for now
            self.unknown.add(name)
            at = start_ns
        else:
            at = start_ns + look
        if at + self.slack_ns >= self.alarm_ns:
            return False
        self.asked += 1
        if self.polling:
            return False
        with self._lock:
            if at + self.slack_ns >= self.alarm_ns:
                return False
            self.alarm_ns = at
            self.moved += 1
            self._alarm.arm(at)
        return True

    def ending(self, start_ns: int, name: str) -> bool:
        """Called by the span path for a span just taken out of the index: when the
        alarm was set for it, set it for the next span to look at (or the loop's own
        tick) instead, so that a span that ended in time costs no tick. Whether it moved."""
        look = self.look_ns.get(name)
        if look is None or start_ns + look != self.alarm_ns:
            return False
        self.asked += 1
        if self.polling:
            return False
        with self._lock:
            if start_ns + look != self.alarm_ns:
                return False
            at, looks, seen = self.base_ns, self.look_ns, self.seen
            for span_id, (_ident, _native, start, other) in list(self.items()):
                if span_id not in seen:  # (a slow one's next look is in base_ns)
                    at = min(at, start + looks.get(other, 0))
            self.alarm_ns = at
            self.moved_later += 1
            if at < NEVER_NS and self.timer:  # (a bell cannot ring later: the loop
                self._alarm.arm(at)  # wakes at the earlier time, and plans again)
        return True

    def begin(self) -> None:
        """The loop plans again: until :meth:`plan`, every starting span that could turn
        slow sets the alarm (the loop looks at it at that time, or sooner)."""
        with self._lock:
            self.alarm_ns = self.base_ns = NEVER_NS

    def plan(self, at_ns: int, spans_at_ns: int = NEVER_NS) -> None:
        """The loop's next tick: its own at ``at_ns``, the open spans' at ``spans_at_ns``
        (unless a starting span asked for an earlier one)."""
        with self._lock:
            self.base_ns = min(self.base_ns, at_ns)
            at_ns = min(at_ns, spans_at_ns)
            if at_ns < self.alarm_ns:
                self.alarm_ns = at_ns
                if self.timer:  # (a bell rings for the starting spans only)
                    self._alarm.arm(at_ns)

    def wake_now(self) -> None:
        """Wake the loop at once (it is stopping, or has work: it plans again)."""
        with self._lock:
            self.alarm_ns = 0
            self._alarm.arm(1)

    def timeout_s(self, now_ns: int) -> float:
        """How long the loop may wait for the alarm: until its own tick (the timer
        rings for the spans), or without a timer until the alarm."""
        until = self.base_ns if self.timer else self.alarm_ns
        return max(0.0, min(until - now_ns, NEVER_NS) / 1e9)

    def wait(self, timeout: float) -> bool:
        """Sleep (the loop) until the alarm or ``timeout`` seconds (:meth:`timeout_s`);
        whether the alarm rang."""
        return self._alarm.wait(timeout)

    def close(self) -> None:
        """Release the timer (called when the loop no longer waits on it)."""
        with self._lock:
            self.alarm_ns = 0  # starting spans no longer arm it
        self._alarm.close()


__all__ = ["NEVER_NS", "OpenSpan", "OpenSpanIndex"]
