"""The profiler supervisor: runs the chosen backend at the rate in force.

``ADAPROF_PROFILER=auto`` (the default) runs py-spy when it is installed and may read
the process, and falls back to the in-process sampler otherwise.
``ADAPROF_PROFILER=native`` runs the native profiler
(:mod:`~otel_adaprof.instrumentation.profiler.native`: a C thread in the process that
reads what py-spy reads at a fifth to a tenth of its CPU) where its extension is built, and
``auto``'s choice where it is not or fails to start:

* py-spy missing, or refused permission twice → in-process, for the life of the process;
* any other failure (py-spy killed, "failed to find python version" right after the
  service started) → the next run starts after a backoff (0.5 s doubling to 30 s,
  with jitter); after :data:`MAX_FAILURES` failures in a row → in-process.

A py-spy run (a *segment*) costs a start (attach, read the binary's symbols: ~15 ms
of CPU), so it is planned long enough for ``segment_samples`` samples at its rate,
within ``segment_s`` and ``segment_max_s`` (:meth:`Profiler.segment_length`). It is
cut sooner only when what py-spy runs with changes — the rate, the profile mode, or
profiling off — from a new config version or a local override (:class:`LiveParams`
wakes the supervisor); it is cut with SIGINT, so it stops within one sampling interval
and its samples are kept. A new config version with the same py-spy knobs, and a
window's close, do not cut it: every sample is tagged with the config version in
force when it was taken, and the samples of a version whose report has gone are
handed over late (:meth:`SampleStore.take_late`). ``cut_rule="window"`` is the former
rule: also cut at every new version and window's close (:meth:`Profiler.pause`).
``profile_mode: cpu`` runs py-spy with ``--gil`` (the GIL holder only),
``wall`` with ``--idle`` (every thread). Profiling off (``sampling_interval_ms = 0``)
stops sampling and lets the watermark follow the clock (:meth:`SampleStore.follow_clock`),
so no span waits for samples that will not come; the supervisor then sleeps until the
params change (:class:`LiveParams` wakes it), looking every :data:`IDLE_WAIT_S` only to
drop old samples.

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> p = Profiler(LiveParams(Params(sampling_interval_ms=0)), SampleStore(), choice="off")
    >>> p.pause(timeout=0.1), p.take_rates(version=0)
    (True, (0, 0.0, 0.0))
    >>> p.backend
    'none'
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams, ParamsInForce
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.observe.agent_cpu import AgentCpu
from otel_adaprof.instrumentation.profiler.chrometrace import (
    Keep,
    Sample,
    last_ts_us,
    load_events,
    parse_chrometrace,
)
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.profiler.inprocess import InProcessSampler
from otel_adaprof.instrumentation.profiler.native import MAX_DEPTH as NATIVE_MAX_DEPTH
from otel_adaprof.instrumentation.profiler.native import NativeSampler, unavailable
from otel_adaprof.instrumentation.profiler.pyspy import PySpyRun, RunResult, find_py_spy
from otel_adaprof.instrumentation.profiler.run_folder import RunFolder
from otel_adaprof.instrumentation.threads import ThreadLiveness
from otel_adaprof.params import Params
from otel_adaprof.protocol import ProfilerBackend

log = logging.getLogger("otel_adaprof.agent")

#: Failures in a row after which py-spy is given up for the in-process sampler.
MAX_FAILURES = 6
#: Permission refusals after which py-spy is given up at once.
MAX_PERMISSION_FAILURES = 2
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
#: Time between py-spy's last sample and the end of writing its file (ns, estimated;
#: the run's end is the file's modification time).
WRITE_LAG_NS = 2_000_000
#: How often the supervisor looks at the params while in-process sampling runs or a
#: window's cut holds (s).
IDLE_TICK_S = 0.2
#: The native sampler's samples are taken from its ring about every this many samples,
#: within [IDLE_TICK_S, NATIVE_TAKE_MAX_S] (s): every wake-up of the supervisor costs
#: about 0.2-0.3 ms of CPU (session 41: at 10 Hz, five takes a second cost more than
#: the reads), and a marker span waits up to that long for its samples. The samples
#: are those the sampler achieves (:class:`TakePace`), not the rate asked: sampling
#: only while a request is open, 100 Hz on the benchmark's service (10 requests a
#: second) gave 2-3 samples a take at five takes a second (bench/take_pace.py).
NATIVE_TAKE_SAMPLES = 20
NATIVE_TAKE_MAX_S = 1.0
#: Weight of the newest measure of the samples a second in :class:`TakePace`.
TAKE_PACE_ALPHA = 0.5
#: Shortest span of time a measure of the samples a second covers (s): a take at a
#: window's close, just after the loop's own, adds its samples to the next measure.
TAKE_PACE_MIN_S = 0.15
#: Longest sleep while profiling is off (s): a change of params wakes the supervisor at
#: once; this wake-up only drops samples older than the retention (the slow-span
#: capture's). It used to look every IDLE_TICK_S: 5 wake-ups/s, ~1 ms of CPU/s.
IDLE_WAIT_S = 5.0
#: Longest the supervisor looks away from a running py-spy (s): a run that fails at
#: start is seen this soon.
RUN_TICK_S = 0.25
#: Same, once a run has lasted a second (a change of params still wakes it at once).
LONG_RUN_TICK_S = 1.0
#: Longest pause between a window's cut and the poll's answer (s): after it, sampling
#: goes on with the params in force (``cut_rule="window"`` only).
MAX_PAUSE_S = 0.5
#: Time py-spy takes to attach after it was spawned (ns, typical on the benchmark
#: machine): a segment in flight counts in the rates from then.
ATTACH_NS = 100_000_000
#: How much sooner than the last runs' least overrun (the time py-spy ran past its
#: length: its attach) the supervisor starts looking every 10 ms for a run's end (s).
OVERRUN_MARGIN_S = 0.03
#: Runs whose overrun is remembered.
OVERRUNS_KEPT = 5
#: When a py-spy segment is cut: ``params`` (default) only when what py-spy runs with
#: changes (rate, profile mode, on/off); ``window`` also at every window's close and
#: every new config version (each report then holds all of its window's samples).
CUT_RULES = ("params", "window")


def native_take_s(rate_hz: float, achieved_hz: float | None = None) -> float:
    """How long the supervisor waits between two takes of the native sampler's samples:
    :data:`NATIVE_TAKE_SAMPLES` at ``achieved_hz`` (the samples a second it takes, when
    known) or at ``rate_hz`` (the rate asked), whichever is lower.

    >>> [native_take_s(hz) for hz in (1, 10, 50, 100, 1000)]
    [1.0, 1.0, 0.4, 0.2, 0.2]
    >>> native_take_s(100, achieved_hz=12.0), native_take_s(100, achieved_hz=40.0)
    (1.0, 0.5)
    """
    hz = rate_hz if achieved_hz is None else min(rate_hz, achieved_hz)
    wanted = NATIVE_TAKE_SAMPLES / max(1e-9, hz)
    return max(IDLE_TICK_S, min(NATIVE_TAKE_MAX_S, wanted))


class TakePace:
    """The samples a second the native sampler achieves, measured at its takes.

    Sampling only while a request is open, or in CPU mode on a service that mostly
    waits, the sampler takes far fewer samples than its rate: the takes are paced by
    what it achieves (:func:`native_take_s`). Unknown (``None``) until a measure covers
    :data:`TAKE_PACE_MIN_S`, and again after :meth:`reset` (the sampler set anew). Not
    in ``wall`` mode: there each tick reads every thread, and after an idle spell paced
    a second apart, a jump to hundreds of busy threads could fill the extension's ring
    (16,384 samples) before the measure caught up; the rate paces those takes.

        >>> pace = TakePace()
        >>> pace.took(3, now=0.1), pace.hz
        (None, None)
        >>> pace.took(3, now=0.5)  # 6 samples in 0.5 s
        12.0
        >>> pace.took(20, now=1.0)  # 40/s: the measure moves halfway
        26.0
    """

    def __init__(self, now: float = 0.0) -> None:
        self.hz: float | None = None
        self._since = now
        self._samples = 0
        self._lock = threading.Lock()

    def reset(self, now: float) -> None:
        """Forget the measure (the sampler was started or set to another rate)."""
        with self._lock:
            self.hz, self._since, self._samples = None, now, 0

    def took(self, samples: int, now: float) -> float | None:
        """``samples`` were taken at ``now`` (monotonic s); the samples a second."""
        with self._lock:
            self._samples += samples
            seconds = now - self._since
            if seconds < TAKE_PACE_MIN_S:
                return self.hz
            hz = self._samples / seconds
            self.hz = hz if self.hz is None else self.hz + TAKE_PACE_ALPHA * (hz - self.hz)
            self._since, self._samples = now, 0
            return self.hz


def pyspy_knobs(params: Params) -> tuple[int, str]:
    """What a py-spy run is started with: a change of these cuts the segment.

    >>> pyspy_knobs(Params(sampling_interval_ms=10, stack_depth=8))
    (100, 'cpu')
    """
    return params.rate_hz, params.profile_mode


@dataclass
class _Segment:
    """The py-spy run in flight: its knobs and the config versions it ran under."""

    run: PySpyRun
    rate_hz: int
    length_s: int
    #: ``(from wall ns, version)``, in order: a new version with the same py-spy knobs
    #: does not cut the run; its samples are tagged by time.
    versions: list[tuple[int, int]]
    #: Up to when (wall ns) its time has been counted in the rates (in flight).
    counted_ns: int = 0
    #: py-spy's "behind" warnings, and how late it said it was, counted so far.
    behind_seen: int = 0
    late_seen_s: float = 0.0

    def version_at(self, t_ns: int) -> int:
        """The config version in force at ``t_ns`` (the first one before the start)."""
        k = bisect.bisect_right([t for t, _ in self.versions], t_ns) - 1
        return self.versions[max(0, k)][1]

    def split(self, start_ns: int, end_ns: int) -> list[tuple[int, float]]:
        """``(version, seconds)`` of ``[start_ns, end_ns]`` under each version."""
        out = []
        bounds = [*self.versions[1:], (max(end_ns, start_ns), -1)]
        for (t0, version), (t1, _next) in zip(self.versions, bounds, strict=True):
            lo, hi = max(t0, start_ns), min(t1, end_ns)
            if hi > lo:
                out.append((version, (hi - lo) / 1e9))
        return out


#: A py-spy segment is planned for this many samples, within these bounds (seconds).
SEGMENT_SAMPLES = 200
SEGMENT_S = 2
SEGMENT_MAX_S = 10


def planned_segment_s(
    rate_hz: float,
    segment_samples: int = SEGMENT_SAMPLES,
    segment_s: int = SEGMENT_S,
    segment_max_s: int = SEGMENT_MAX_S,
) -> int:
    """Planned length (s) of a py-spy segment at ``rate_hz`` (the samples of a segment
    reach the agent when it ends): long enough for ``segment_samples`` samples, within
    [``segment_s``, ``segment_max_s``].

    >>> [planned_segment_s(hz) for hz in (1, 10, 20, 50, 100)]
    [10, 10, 10, 4, 2]
    """
    wanted = -(-segment_samples // max(1, int(rate_hz)))  # ceil
    return max(segment_s, min(max(segment_s, segment_max_s), wanted))


class Profiler:
    """Runs py-spy segments or the in-process sampler; feeds a :class:`SampleStore`."""

    def __init__(
        self,
        live: LiveParams,
        store: SampleStore,
        *,
        choice: str = "auto",
        py_spy_path: str | None = None,
        segment_s: int = SEGMENT_S,
        segment_max_s: int = SEGMENT_MAX_S,
        segment_samples: int = SEGMENT_SAMPLES,
        cut_rule: str = "params",
        idle: bool = True,
        pid: int | None = None,
        clock_beacon: bool = True,
        liveness: ThreadLiveness | None = None,
        cpu: AgentCpu | None = None,
    ) -> None:
        self.live = live
        self.store = store
        self.choice = choice
        self.segment_s = segment_s
        self.segment_max_s = max(segment_s, segment_max_s)
        self.segment_samples = segment_samples
        if cut_rule not in CUT_RULES:
            raise ValueError(f"cut_rule must be one of {CUT_RULES}, not {cut_rule!r}")
        self.cut_rule = cut_rule
        self.idle = idle
        self.pid = pid or os.getpid()
        self.py_spy = find_py_spy(py_spy_path) if choice in ("auto", "py-spy", "native") else None
        self.backend = self._initial_backend()
        #: py-spy runs ended (counted once their samples, if any, are in the store).
        self.runs = 0
        #: py-spy processes started (each attaches to the service once).
        self.starts = 0
        self.cuts = 0
        self.failures = 0
        self.restarts = 0
        self.parse_errors = 0
        self.pyspy_cpu_seconds = 0.0
        self.behind_events = 0
        #: Stack samples py-spy says it took, all runs (its ``Samples: N``).
        self.pyspy_samples = 0
        self.last_error = ""
        self._consecutive = 0
        self._denied = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run: PySpyRun | None = None
        self._segment: _Segment | None = None
        self._inproc: InProcessSampler | None = None
        self._native: NativeSampler | None = None
        #: CPU seconds of native samplers stopped and dropped (their threads ended).
        self._native_cpu_done = 0.0
        #: When (monotonic s) the native sampler's samples were last taken.
        self._native_taken_at = 0.0
        #: The native sampler's samples a second, which pace its takes.
        self.take_pace = TakePace()
        self._folder = RunFolder(self.pid)
        self._lock = threading.Lock()
        self.liveness = liveness or ThreadLiveness()
        self.cpu = cpu or AgentCpu()
        self.cpu.add_meter("pyspy", self.pyspy_cpu_total)
        self.cpu.add_meter("native", self.native_cpu_total)
        self.beacon = ClockBeacon(self.liveness, on_thread=self._beacon_thread)
        self.beacon.skip = self.store.ignored  # the agent's threads: their CPU needs no notes
        self.cpu.add_loan("beacon", self._beacon_hosted_cpu)  # its notes on another thread
        self.dead_thread_samples = 0
        self.use_beacon = clock_beacon
        self.calibrated_runs = 0
        # pause/resume around a window's close (the poller)
        self._pause_until = 0.0
        self._paused = threading.Event()
        # per config version: [behind events, requested ticks, achieved ticks, seconds]
        self._rates: dict[int, list[float]] = {}
        #: How long the last runs that ended by themselves ran past their length (s).
        self._overruns: deque[float] = deque(maxlen=OVERRUNS_KEPT)

    def _initial_backend(self) -> str:
        if self.choice == "off":
            return ProfilerBackend.NONE.value
        if self.choice == "in-process":
            return ProfilerBackend.IN_PROCESS.value
        if self.choice == "native":
            why = unavailable()
            if why is None:
                return ProfilerBackend.NATIVE.value
            log.warning("otel-adaprof: ADAPROF_PROFILER=native, but %s; using auto's choice", why)
        if self.py_spy is None:
            if self.choice == "py-spy":
                log.warning(
                    "otel-adaprof: ADAPROF_PROFILER=py-spy but no py-spy binary was found "
                    "(set ADAPROF_PY_SPY or pip install py-spy); using the in-process sampler"
                )
            else:
                log.info("otel-adaprof: py-spy not found; using the in-process sampler")
            return ProfilerBackend.IN_PROCESS.value
        return ProfilerBackend.PY_SPY.value

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the supervisor thread (a daemon)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._folder.reopen()
        self._thread = threading.Thread(target=self._loop, name="adaprof-profiler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop sampling and kill a running py-spy; bounded by ``timeout``."""
        self._stop.set()
        self.live.wake()
        with self._lock:
            run = self._run
        if run is not None:
            run.kill()
        self._stop_samplers()
        self.beacon.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._folder.close()

    def kill_children(self) -> None:
        """Kill a running py-spy and remove its files, stop the native sampler's thread (at
        interpreter exit; never blocks: that thread ends within a read).

        Does nothing in a forked child: the run belongs to the parent.
        """
        if os.getpid() != self.pid:
            return
        self._stop.set()
        with self._lock:
            run = self._run
        if run is not None:
            run.kill()
        self._folder.close()  # for good: the loop, still running, makes no new one
        native = self._native
        if native is not None:  # its thread must not read the interpreter as it ends
            with contextlib.suppress(Exception):
                native.stop()

    @property
    def thread_native_ids(self) -> list[int]:
        """Native ids of the agent's sampling threads (for CPU accounting)."""
        ids = []
        if self._thread is not None and self._thread.native_id is not None:
            ids.append(self._thread.native_id)
        return ids

    def pyspy_cpu_total(self) -> float:
        """CPU seconds of every py-spy run so far, the running one included."""
        with self._lock:
            run = self._run
            done = self.pyspy_cpu_seconds
            return done + (run.cpu_seconds_so_far() if run is not None else 0.0)

    def native_cpu_total(self) -> float:
        """CPU seconds of the native sampler's threads so far, the running one included.

        Monotonic across a stop: the change signals subtract it from the service's CPU,
        and a stopped sampler's seconds missing for one reading would look like the
        service's CPU jumping (:meth:`_stop_samplers` moves them under the lock).
        """
        with self._lock:
            sampler, done = self._native, self._native_cpu_done
            return done + (sampler.cpu_seconds() if sampler is not None else 0.0)

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by py-spy runs and the native sampler's threads (Python
        agent threads: :class:`AgentCpu`)."""
        return self.pyspy_cpu_total() + self.native_cpu_total()

    @property
    def active(self) -> bool:
        """Whether samples are being taken (so spans should wait for them)."""
        return self.backend != ProfilerBackend.NONE.value and self.live.params.profiling_enabled

    # windows ---------------------------------------------------------------------------

    def segment_length(self, rate_hz: int) -> int:
        """Planned length (s) of a segment at ``rate_hz``: long enough for
        ``segment_samples`` samples, within [``segment_s``, ``segment_max_s``]; with
        ``cut_rule="window"``, ``segment_s``.

        >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
        >>> p = Profiler(LiveParams(Params()), SampleStore(), choice="off")
        >>> [p.segment_length(hz) for hz in (1, 10, 50, 100, 1000)]
        [10, 10, 4, 2, 2]
        """
        if self.cut_rule == "window":
            return self.segment_s
        return planned_segment_s(rate_hz, self.segment_samples, self.segment_s, self.segment_max_s)

    def pending_since(self) -> float | None:
        """Unix time (s) since which samples are not in yet (a segment in flight)."""
        seg = self._segment
        return seg.run.started_ns / 1e9 if seg is not None else None

    def pause(self, timeout: float = 2.5) -> bool:
        """At a window's close: with ``cut_rule="window"``, cut the running segment, take its
        samples in and start none until :meth:`resume` (the controller has answered).

        Returns whether the window's samples are in (within ``timeout``). With
        ``cut_rule="params"`` (the default) the segment runs on: nothing is cut, and the
        samples still in flight come in a later report (:meth:`pending_since`). The
        native sampler's samples are taken at once: the window holds all of them.
        """
        if self.backend == ProfilerBackend.NATIVE.value:
            self._take_native()  # the window's samples so far, into its report
        if self.cut_rule != "window":
            return self._segment is None
        self._paused.clear()
        self._pause_until = time.monotonic() + MAX_PAUSE_S + timeout
        self.live.wake()
        if self._thread is None or not self._thread.is_alive():
            return True
        return self._paused.wait(timeout)

    def resume(self) -> None:
        """Sampling goes on (with the params now in force).

        Wakes the loop only where :meth:`pause` held it (``cut_rule="window"``): with
        ``cut_rule="params"`` nothing waits for it, and the wake-up at every poll was
        most of an idle supervisor's.
        """
        self._pause_until = 0.0
        if self.cut_rule == "window":
            self.live.wake()

    def take_rates(self, version: int) -> tuple[int, float, float]:
        """``(behind events, requested Hz, effective Hz)`` of ``version``'s segments since
        the last call (other versions' are dropped); rates averaged over segment time."""
        with self._lock:
            seg = self._segment
            if seg is not None:  # in flight: its time so far, at the rate asked
                self._count_in_flight(seg, time.time_ns())
            rates, self._rates = self._rates, {}
        behind, requested, achieved, seconds = rates.get(version, [0, 0.0, 0.0, 0.0])
        if seconds <= 0:
            return int(behind), 0.0, 0.0
        return int(behind), round(requested / seconds, 3), round(achieved / seconds, 3)

    # the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        self.store.ignored.add(threading.get_ident())
        self.cpu.enter("parse")
        try:
            while not self._stop.is_set():
                gen = self.live.generation
                current = self.live.current
                params = current.params
                if self._pause_until and time.monotonic() < self._pause_until:
                    self._hold_pause(gen)
                    continue
                if self.backend != ProfilerBackend.PY_SPY.value or not params.profiling_enabled:
                    self.beacon.stop()
                if not params.profiling_enabled or self.backend == ProfilerBackend.NONE.value:
                    self._stop_samplers()
                    self.store.follow_clock(True)  # no sample will come late
                    self._paused.set()
                    self.store.trim()
                    self.live.wait_change(gen, IDLE_WAIT_S, self._wanted)
                    continue
                self.store.follow_clock(False)  # samples come later than they are taken
                if self.backend == ProfilerBackend.PY_SPY.value:
                    self._stop_samplers()
                    if self.use_beacon:
                        interval_s = params.sampling_interval_ms / 1000
                        self.beacon.set_period(self.beacon.period_for(interval_s))
                        self.beacon.track_cpu = params.profile_mode == "cpu"
                        self._start_beacon()
                    self._one_pyspy_run(current, gen)
                elif self.backend == ProfilerBackend.NATIVE.value:
                    self._keep_native(current)
                    self._paused.set()
                    # in wall mode every thread is read at each tick: after an idle
                    # spell a second's samples of many threads could fill the ring
                    paced = self.take_pace.hz if params.profile_mode != "wall" else None
                    self.live.wait_change(gen, native_take_s(params.rate_hz, paced))
                    self._take_native()
                else:
                    self._keep_inprocess(current)
                    self._paused.set()
                    self.live.wait_change(gen, IDLE_TICK_S)
                self.store.trim()
        except Exception:  # never let the profiler take the service down
            log.exception("otel-adaprof: profiler supervisor stopped; spans go out without samples")
            self.backend = ProfilerBackend.NONE.value
        finally:
            self._stop_samplers()
            self.beacon.stop()
            self._paused.set()
            self.cpu.leave()

    def _wanted(self) -> bool:
        """Whether the loop has something to do other than a change of params: stop, or
        a window's cut (set before :meth:`LiveParams.wake`)."""
        return self._stop.is_set() or (
            bool(self._pause_until) and time.monotonic() < self._pause_until
        )

    def _hold_pause(self, gen: int) -> None:
        """Between a window's cut and the poll's answer: no segment, watermark moves."""
        self._paused.set()
        self.store.set_watermark(time.time_ns())
        left = self._pause_until - time.monotonic()
        if left > 0:
            self.live.wait_change(gen, min(left, IDLE_TICK_S))
        if self.live.generation != gen:  # the answer came: new params, go on
            self._pause_until = 0.0

    def _beacon_thread(self, started: bool) -> None:
        if started:
            self.cpu.enter("beacon")
        else:
            self.cpu.leave()

    def _beacon_hosted_cpu(self) -> dict[int, float]:
        return self.beacon.hosted_cpu

    def _start_beacon(self) -> None:
        # idempotent; switches between the beacon's thread and its host's wake-ups
        # (cpu mode) when the mode or the host changed
        was = self.beacon.ident
        self.beacon.start()
        if self.beacon.ident is not None and self.beacon.ident != was:
            self.store.ignored.add(self.beacon.ident)

    def _inproc_thread(self, started: bool) -> None:
        if started:
            self.cpu.enter("inprocess")
        else:
            self.cpu.leave()

    def _keep_inprocess(self, current: ParamsInForce) -> None:
        params = current.params
        interval_s, depth = params.sampling_interval_ms / 1000.0, params.stack_depth
        sampler = self._inproc
        if sampler is not None:
            sampler.interval_s, sampler.depth = interval_s, depth
            sampler.version = current.version
        else:
            self._inproc = InProcessSampler(
                self.store, interval_s, depth, current.version, on_thread=self._inproc_thread
            )
            self._inproc.start()

    def _stop_samplers(self) -> None:
        """Stop the in-process or native sampler, if one runs (the native one's last
        samples go to the store)."""
        sampler, self._inproc = self._inproc, None
        if sampler is not None:
            sampler.stop()
        with self._lock:
            native = self._native
        if native is not None:
            try:
                native.stop()
                self._take_native(native)
            except Exception:  # stopping must never fail the caller
                log.exception("otel-adaprof: the native sampler did not stop cleanly")
            with self._lock:  # its seconds move to the total as it goes: no gap
                self._native_cpu_done += native.cpu_seconds()
                self._native = None

    def _keep_native(self, current: ParamsInForce) -> None:
        """The native sampler runs with the params in force (started, or set anew)."""
        params = current.params
        interval_s, depth = params.sampling_interval_ms / 1000.0, params.stack_depth
        all_threads, scope = params.profile_mode == "wall", params.sample_scope
        sampler = self._native
        if scope == "requests" and sampler is not None and sampler.outside_busy():
            scope = "process"  # CPU outside requests: the scope would not see it
        if sampler is not None:
            if sampler.version != current.version:  # what it took so far: the old one's
                self._take_native()
                self.cpu.checkpoint(sampler.version)
                sampler.version = current.version
            if (sampler.interval_s, sampler.all_threads, sampler.scope) != (
                interval_s, all_threads, scope,
            ):  # fmt: skip
                self.take_pace.reset(time.monotonic())  # another rate of samples
            wanted = (interval_s, max(1, min(NATIVE_MAX_DEPTH, depth)), all_threads, scope)
            if (sampler.interval_s, sampler.depth, sampler.all_threads, sampler.scope) != wanted:
                sampler.configure(interval_s, depth, all_threads, scope)
            return
        try:
            sampler = NativeSampler(
                self.store, interval_s, depth, current.version,
                all_threads=all_threads, on_ticks=self._native_ticks, scope=scope,
            )  # fmt: skip
            sampler.start()
        except (RuntimeError, OSError, ValueError) as exc:
            self.last_error = f"native sampler: {exc}"
            self.backend = (
                ProfilerBackend.PY_SPY.value if self.py_spy else ProfilerBackend.IN_PROCESS.value
            )
            log.warning("otel-adaprof: %s; using %s instead", self.last_error, self.backend)
            return
        self.cpu.name_threads()
        self._native_taken_at = time.monotonic()
        self.take_pace.reset(self._native_taken_at)
        with self._lock:
            self._native = sampler

    def _take_native(self, sampler: NativeSampler | None = None) -> None:
        """The native sampler's samples so far into the store, its watermark moved."""
        sampler = sampler or self._native
        if sampler is None:
            return
        try:
            self.take_pace.took(sampler.take(), time.monotonic())
        except Exception:  # a bad take loses its samples, never the loop
            self.parse_errors += 1
            log.exception("otel-adaprof: native samples skipped")

    def _native_ticks(self, version: int, ticks: int, interval_s: float) -> None:
        """Asked vs achieved reads since the last take, for :meth:`take_rates`."""
        now = time.monotonic()
        seconds, self._native_taken_at = max(0.0, now - self._native_taken_at), now
        rate_hz = 1.0 / interval_s if interval_s > 0 else 0.0
        with self._lock:
            row = self._rates.setdefault(version, [0, 0.0, 0.0, 0.0])
            row[1] += rate_hz * seconds
            row[2] += ticks
            row[3] += seconds

    def _tmpdir(self) -> Path | None:
        return self._folder.path()

    def _one_pyspy_run(self, current: ParamsInForce, gen: int) -> None:
        assert self.py_spy is not None
        params = current.params
        rate_hz = params.rate_hz
        gil = params.profile_mode == "cpu"
        self.cpu.name_threads()  # agent threads started elsewhere show as adaprof-* in top -H
        folder = self._tmpdir()
        if folder is None:  # closed: the process is exiting
            self._stop.set()
            return
        out = folder / f"run-{self.runs}.json"
        length = self.segment_length(rate_hz)
        try:
            run = PySpyRun(self.py_spy, self.pid, rate_hz, length, out, self.idle, gil=gil)
        except OSError as exc:
            self._failed(f"cannot start {self.py_spy}: {exc}", permission=False)
            return
        seg = _Segment(run, rate_hz, length, [(run.started_ns, current.version)])
        seg.counted_ns = run.started_ns + ATTACH_NS  # no sample before py-spy attached
        with self._lock:
            self._run = run
            self._segment = seg
            self.starts += 1
        try:
            result = self._wait_run(seg, gen, pyspy_knobs(params))
            with self._lock:
                self._run = None
                self.pyspy_cpu_seconds += result.cpu_seconds
            if self._stop.is_set():
                return
            if result.returncode != 0 or not result.output:
                self._failed(result.error_line(), permission=result.permission_denied)
                return
            self._ingest(result, seg, gil)
        finally:
            with self._lock:
                self._run = None
                self._segment = None
                self.runs += 1  # counted once its samples are in the store

    def _wait_run(self, seg: _Segment, gen: int, knobs: tuple[int, str]) -> RunResult:
        """Until py-spy ends by itself, or is cut (py-spy's knobs changed, stop; with
        ``cut_rule="window"`` also a new version or a window's close)."""
        run = seg.run
        #: The version a run killed after a cut owes its tail to (once it is reaped).
        tail_version: int | None = None
        while True:
            if self._stop.is_set():
                run.kill()
                break
            now_gen = self.live.generation
            if now_gen != gen and self._keeps_running(seg, knobs):
                gen = now_gen
                continue
            if now_gen != gen or (self._pause_until and self.cut_rule == "window"):
                old_version = seg.versions[-1][1]
                new_version = self.live.current.version != old_version
                if new_version:  # what was spent up to now was spent under the old one
                    self.cpu.checkpoint(old_version)
                run.interrupt()  # py-spy stops at its next sample and writes its file
                self.cuts += 1
                done = run.wait(timeout=2.0 / max(1, seg.rate_hz) + 2.0)
                if done is None:  # its tail is the old version's too, once reaped below
                    run.kill()
                    tail_version = old_version if new_version else None
                    break
                if new_version:  # and so was the run's tail
                    self.cpu.move_meter("pyspy", old_version)
                return done
            done = run.wait(timeout=0)
            if done is not None:
                if done.returncode == 0:  # ended by itself: how long after its length
                    self._overruns.append((done.ended_ns - run.started_ns) / 1e9 - seg.length_s)
                # its CPU (known once reaped) is the version it ran under last, whatever
                # version is in force at the window's next checkpoint
                self.cpu.move_meter("pyspy", seg.versions[-1][1])
                return done
            if time.time_ns() - run.started_ns > (2 * seg.length_s + 2) * 1_000_000_000:
                run.interrupt()  # far behind (py-spy counts samples, not time): cut it
            # near the run's own end, look often: the next run starts without a gap; a
            # run that fails does so at start: after its first second, look less often.
            # py-spy's length counts from its attach, so its end is expected the least
            # recent overrun later (less a margin): the 10 ms looks start then, not at
            # the length (they were most of this thread's wake-ups)
            now = time.time()
            overrun = min(self._overruns, default=0.0) - OVERRUN_MARGIN_S
            left = run.started_ns / 1e9 + seg.length_s + max(0.0, overrun) - now
            tick = RUN_TICK_S if now - run.started_ns / 1e9 < 1.0 else LONG_RUN_TICK_S
            self.live.wait_change(gen, min(tick, max(0.01, left)))
        done = run.wait(timeout=5.0)
        if tail_version is not None:
            self.cpu.move_meter("pyspy", tail_version)
        if done is None:  # not reaped: count nothing, try again later
            return RunResult(-1, None, "py-spy did not exit", run.started_ns, time.time_ns(), 0.0)
        return done

    def _keeps_running(self, seg: _Segment, knobs: tuple[int, str]) -> bool:
        """A change of the params in force that leaves py-spy's knobs alone: the segment
        goes on, and a new config version is noted (its samples are tagged by time)."""
        if self.cut_rule == "window" or self.backend != ProfilerBackend.PY_SPY.value:
            return False
        current = self.live.current
        if not current.params.profiling_enabled or pyspy_knobs(current.params) != knobs:
            return False
        if current.version != seg.versions[-1][1]:
            self.cpu.checkpoint(seg.versions[-1][1])  # CPU until now: the old version's
            with self._lock:
                at = max(self.live.changed_ns, seg.versions[-1][0])
                seg.versions.append((at, current.version))
        return True

    def _ingest(self, result: RunResult, seg: _Segment, gil: bool) -> None:
        rate_hz = seg.rate_hz
        try:
            events = load_events(result.output or b"[]")
            # py-spy's clock starts after it attached: anchor it at the end of the run
            # (see last_ts_us), then to the millisecond with the clock beacon.
            ran_us = last_ts_us(events)
            anchor = result.ended_ns - ran_us * 1000 - WRITE_LAG_NS
            fine = self.beacon.calibrate(events, anchor, period_ns=1_000_000_000 // rate_hz)
            if fine is not None:
                anchor = fine
                self.calibrated_runs += 1
            per_thread = parse_chrometrace(
                events,
                started_at_ns=max(result.started_ns, anchor),
                rate_hz=rate_hz,
                gil=gil,
                total_samples=result.samples,
                ignored={t.ident for t in self.store.ignored.threads() if t.ident},
                keep=self._keep(gil),
                lived_until=self.liveness.lived_until if self.liveness.snapshots else None,
            )
        except (ContractError, ValueError, TypeError) as exc:
            self.parse_errors += 1
            log.warning("otel-adaprof: py-spy output skipped: %s", exc)
            per_thread, ran_us = {}, 0
        if self.liveness.snapshots:
            # py-spy goes on with an exited thread's last stack: keep what it lived.
            for tid, samples in per_thread.items():
                kept = self.liveness.keep(tid, samples)
                self.dead_thread_samples += len(samples) - len(kept)
                per_thread[tid] = kept
            self.liveness.forget_before(result.started_ns - 60_000_000_000)
        for tid, samples in per_thread.items():
            for version, chunk in _by_version(seg, samples):
                self.store.add_many(tid, chunk, version)
        self.store.set_watermark(result.ended_ns)
        self._count_rate(seg, ran_us / 1e6, result)
        self.pyspy_samples += result.samples or 0
        if self._consecutive:
            log.info("otel-adaprof: py-spy runs again after %d failed runs", self._consecutive)
        self._consecutive = 0

    def _keep(self, gil: bool) -> Keep | None:
        """Where a ``--gil`` run's samples may go: threads alive and on CPU then."""
        if not gil:
            return None
        alive = self.liveness.keep if self.liveness.snapshots else None
        ran = self.beacon.ran_on_cpu()
        if alive is None and ran is None:
            return None

        def keep(tid: int, ticks: list[Sample]) -> list[Sample]:
            kept = alive(tid, ticks) if alive is not None else ticks
            return [x for x in kept if ran(tid, x[0])] if ran is not None else kept

        return keep

    def _count_in_flight(self, seg: _Segment, now_ns: int) -> None:  # under self._lock
        """A running segment's time since last counted, and py-spy's "behind in
        sampling" warnings printed since (its output file is written as it runs)."""
        events, late_s = seg.run.behind_so_far()
        self._count(seg, seg.counted_ns, now_ns, events, late_s)

    def _count(
        self, seg: _Segment, from_ns: int, to_ns: int, events: int, late_s: float
    ) -> None:  # under self._lock
        """Asked vs achieved ticks of ``[from_ns, to_ns]``: achieved is short of asked by
        how much later py-spy said it was (its last "behind" is how late it is)."""
        new_events = max(0, events - seg.behind_seen)
        lost_s = max(0.0, late_s - seg.late_seen_s) if new_events else 0.0
        if new_events and late_s < seg.late_seen_s:  # it caught up, then fell behind again
            lost_s = late_s
        parts = seg.split(from_ns, to_ns) or [(seg.versions[-1][1], 0.0)]
        seconds = sum(part for _v, part in parts)
        lost_s = min(lost_s, seconds)
        for version, part in parts:
            row = self._rates.setdefault(version, [0, 0.0, 0.0, 0.0])
            row[1] += seg.rate_hz * part
            row[2] += seg.rate_hz * (part - lost_s * part / seconds if seconds else 0.0)
            row[3] += part
        row = self._rates.setdefault(parts[-1][0], [0, 0.0, 0.0, 0.0])
        row[0] += new_events
        self.behind_events += new_events
        seg.behind_seen = max(seg.behind_seen, events)
        if new_events:
            seg.late_seen_s = late_s
        seg.counted_ns = max(seg.counted_ns, to_ns)

    def _count_rate(self, seg: _Segment, seconds: float, result: RunResult) -> None:
        """The rest of a finished segment (what was not counted while it ran)."""
        if seconds <= 0:
            return
        with self._lock:
            end = result.ended_ns
            begin = max(seg.counted_ns, seg.run.started_ns + ATTACH_NS)
            # py-spy ran ``seconds`` since it attached: the part not yet counted
            rest = max(0.0, seconds - (begin - seg.run.started_ns - ATTACH_NS) / 1e9)
            self._count(seg, end - int(rest * 1e9), end, result.behind_events, result.behind_s)

    def _failed(self, reason: str, *, permission: bool) -> None:
        self.failures += 1
        self._consecutive += 1
        self._denied += 1 if permission else 0
        self.last_error = reason
        # Nothing will arrive for the time py-spy was not running.
        self.store.set_watermark(time.time_ns())
        if self._denied >= MAX_PERMISSION_FAILURES or self._consecutive >= MAX_FAILURES:
            why = "no permission to read the process" if permission else reason
            log.warning(
                "otel-adaprof: py-spy cannot profile this process (%s); falling back to the "
                "in-process sampler. In a container, add the SYS_PTRACE capability.",
                why,
            )
            self.backend = ProfilerBackend.IN_PROCESS.value
            return
        self.restarts += 1
        delay = BACKOFF_START_S * 2 ** (self._consecutive - 1) * random.uniform(0.5, 1.5)
        delay = min(BACKOFF_MAX_S, delay)
        if self._consecutive == 1:
            log.warning("otel-adaprof: py-spy run failed (%s); retrying in %.1f s", reason, delay)
        with contextlib.suppress(Exception):
            self._stop.wait(delay)


def _by_version(seg: _Segment, samples: list[Sample]) -> list[tuple[int, list[Sample]]]:
    """One thread's samples (in time order) cut where the segment's config version changed."""
    if len(seg.versions) == 1:
        return [(seg.versions[0][1], samples)]
    out: list[tuple[int, list[Sample]]] = []
    for sample in samples:
        version = seg.version_at(sample[0])
        if out and out[-1][0] == version:
            out[-1][1].append(sample)
        else:
            out.append((version, [sample]))
    return out
