"""The profiler supervisor: runs the chosen backend at the rate in force.

``ADAPROF_PROFILER=auto`` (the default) runs py-spy when it is installed and may read
the process, and falls back to the in-process sampler otherwise:

* py-spy missing, or refused permission twice → in-process, for the life of the process;
* any other failure (py-spy killed, "failed to find python version" right after the
  service started) → the next run starts after a backoff (0.5 s doubling to 30 s,
  with jitter); after :data:`MAX_FAILURES` failures in a row → in-process.

A new rate takes effect at the next run (py-spy's rate is fixed per run); profiling
off (``sampling_interval_ms = 0``) stops sampling and moves the watermark with the
clock, so no span waits for samples that will not come.

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> from otel_adaprof.instrumentation.join.samples import SampleStore
    >>> p = Profiler(LiveParams(Params(sampling_interval_ms=0)), SampleStore(), choice="off")
    >>> p.backend
    'none'
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from pathlib import Path

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.profiler.chrometrace import (
    last_ts_us,
    load_events,
    parse_chrometrace,
)
from otel_adaprof.instrumentation.profiler.clock_beacon import ClockBeacon
from otel_adaprof.instrumentation.profiler.inprocess import InProcessSampler
from otel_adaprof.instrumentation.profiler.pyspy import PySpyRun, RunResult, find_py_spy
from otel_adaprof.instrumentation.profiler.run_folder import RunFolder
from otel_adaprof.instrumentation.threads import ThreadLiveness
from otel_adaprof.protocol import ProfilerBackend

log = logging.getLogger("otel_adaprof.agent")

#: Failures in a row after which py-spy is given up for the in-process sampler.
MAX_FAILURES = 6
#: Permission refusals after which py-spy is given up at once.
MAX_PERMISSION_FAILURES = 2
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
#: Time between py-spy writing its file and its exit being seen here (ns, estimated).
WRITE_LAG_NS = 2_000_000
#: How often the supervisor looks at the params while profiling is off (s).
IDLE_TICK_S = 0.2


class Profiler:
    """Runs py-spy segments or the in-process sampler; feeds a :class:`SampleStore`."""

    def __init__(
        self,
        live: LiveParams,
        store: SampleStore,
        *,
        choice: str = "auto",
        py_spy_path: str | None = None,
        segment_s: int = 2,
        idle: bool = True,
        pid: int | None = None,
        clock_beacon: bool = True,
        liveness: ThreadLiveness | None = None,
    ) -> None:
        self.live = live
        self.store = store
        self.choice = choice
        self.segment_s = segment_s
        self.idle = idle
        self.pid = pid or os.getpid()
        self.py_spy = find_py_spy(py_spy_path) if choice in ("auto", "py-spy") else None
        self.backend = self._initial_backend()
        self.runs = 0
        self.failures = 0
        self.restarts = 0
        self.parse_errors = 0
        self.pyspy_cpu_seconds = 0.0
        self.last_error = ""
        self._consecutive = 0
        self._denied = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run: PySpyRun | None = None
        self._inproc: InProcessSampler | None = None
        self._inproc_cpu_done = 0.0
        self._folder = RunFolder(self.pid)
        self._lock = threading.Lock()
        self.liveness = liveness or ThreadLiveness()
        self.beacon = ClockBeacon(self.liveness)
        self.dead_thread_samples = 0
        self.use_beacon = clock_beacon
        self.calibrated_runs = 0

    def _initial_backend(self) -> str:
        if self.choice == "off":
            return ProfilerBackend.NONE.value
        if self.choice == "in-process":
            return ProfilerBackend.IN_PROCESS.value
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
        with self._lock:
            run = self._run
        if run is not None:
            run.kill()
        self._stop_inprocess()
        self.beacon.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._folder.close()

    def kill_children(self) -> None:
        """Kill a running py-spy and remove its files (at interpreter exit; never blocks).

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

    @property
    def thread_native_ids(self) -> list[int]:
        """Native ids of the agent's sampling threads (for CPU accounting)."""
        ids = []
        if self._thread is not None and self._thread.native_id is not None:
            ids.append(self._thread.native_id)
        return ids

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by py-spy runs and the in-process sampler."""
        inproc = self._inproc.cpu_seconds if self._inproc is not None else 0.0
        return self.pyspy_cpu_seconds + self._inproc_cpu_done + inproc

    @property
    def active(self) -> bool:
        """Whether samples are being taken (so spans should wait for them)."""
        return self.backend != ProfilerBackend.NONE.value and self.live.params.profiling_enabled

    # the loop -------------------------------------------------------------------------

    def _loop(self) -> None:
        self.store.ignored.add(threading.get_ident())
        try:
            while not self._stop.is_set():
                params = self.live.params
                if self.backend != ProfilerBackend.PY_SPY.value or not params.profiling_enabled:
                    self.beacon.stop()
                if not params.profiling_enabled or self.backend == ProfilerBackend.NONE.value:
                    self._stop_inprocess()
                    self.store.set_watermark(time.time_ns())
                    self._stop.wait(IDLE_TICK_S)
                elif self.backend == ProfilerBackend.PY_SPY.value:
                    self._stop_inprocess()
                    if self.use_beacon:
                        self.beacon.set_period(params.sampling_interval_ms / 1000.0)
                        self._start_beacon()
                    self._one_pyspy_run(params.rate_hz)
                else:
                    self._keep_inprocess(params.sampling_interval_ms / 1000.0, params.stack_depth)
                    self._stop.wait(IDLE_TICK_S)
                self.store.trim()
        except Exception:  # never let the profiler take the service down
            log.exception("otel-adaprof: profiler supervisor stopped; spans go out without samples")
            self.backend = ProfilerBackend.NONE.value
        finally:
            self._stop_inprocess()
            self.beacon.stop()

    def _start_beacon(self) -> None:
        if not self.beacon.running:
            self.beacon.start()
            if self.beacon.ident is not None:
                self.store.ignored.add(self.beacon.ident)

    def _keep_inprocess(self, interval_s: float, depth: int) -> None:
        sampler = self._inproc
        if sampler is not None and (sampler.interval_s != interval_s or sampler.depth != depth):
            sampler.interval_s, sampler.depth = interval_s, depth
        if sampler is None:
            self._inproc = InProcessSampler(self.store, interval_s, depth)
            self._inproc.start()

    def _stop_inprocess(self) -> None:
        sampler, self._inproc = self._inproc, None
        if sampler is not None:
            sampler.stop()
            self._inproc_cpu_done += sampler.cpu_seconds

    def _tmpdir(self) -> Path | None:
        return self._folder.path()

    def _one_pyspy_run(self, rate_hz: int) -> None:
        assert self.py_spy is not None
        folder = self._tmpdir()
        if folder is None:  # closed: the process is exiting
            self._stop.set()
            return
        out = folder / f"run-{self.runs}.json"
        try:
            run = PySpyRun(self.py_spy, self.pid, rate_hz, self.segment_s, out, self.idle)
        except OSError as exc:
            self._failed(f"cannot start {self.py_spy}: {exc}", permission=False)
            return
        with self._lock:
            self._run = run
        if self._stop.is_set():
            run.kill()
        result = run.wait()
        with self._lock:
            self._run = None
        self.runs += 1
        self.pyspy_cpu_seconds += result.cpu_seconds
        if self._stop.is_set():
            return
        if result.returncode != 0 or not result.output:
            self._failed(result.error_line(), permission=result.permission_denied)
            return
        self._ingest(result, rate_hz)

    def _ingest(self, result: RunResult, rate_hz: int) -> None:
        try:
            events = load_events(result.output or b"[]")
            # py-spy's clock starts after it attached: anchor it at the end of the run
            # (see last_ts_us), then to the millisecond with the clock beacon.
            anchor = result.ended_ns - last_ts_us(events) * 1000 - WRITE_LAG_NS
            fine = self.beacon.calibrate(events, anchor, period_ns=1_000_000_000 // rate_hz)
            if fine is not None:
                anchor = fine
                self.calibrated_runs += 1
            per_thread = parse_chrometrace(
                events, started_at_ns=max(result.started_ns, anchor), rate_hz=rate_hz
            )
        except (ContractError, ValueError, TypeError) as exc:
            self.parse_errors += 1
            log.warning("otel-adaprof: py-spy output skipped: %s", exc)
            per_thread = {}
        if self.liveness.snapshots:
            # py-spy goes on with an exited thread's last stack: keep what it lived.
            for tid, samples in per_thread.items():
                kept = self.liveness.keep(tid, samples)
                self.dead_thread_samples += len(samples) - len(kept)
                per_thread[tid] = kept
            self.liveness.forget_before(result.started_ns - 60_000_000_000)
        for tid, samples in per_thread.items():
            self.store.add_many(tid, samples)
        self.store.set_watermark(result.ended_ns)
        if self._consecutive:
            log.info("otel-adaprof: py-spy runs again after %d failed runs", self._consecutive)
        self._consecutive = 0

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
