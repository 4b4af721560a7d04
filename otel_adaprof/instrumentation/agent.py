"""The agent: the parts of one service process, wired together and started once.

:class:`Agent` owns the live params, the marker processor, the sample store, the
profiler, the observer and the poller; :meth:`Agent.export_processor` wraps the SDK's
export processor with the span join. One agent per process
(:func:`otel_adaprof.instrumentation.runtime.get_agent`); it follows a fork (gunicorn,
multiprocessing) with a new instance id and fresh threads in the child.

    >>> from otel_adaprof.instrumentation.settings import AgentSettings
    >>> agent = Agent(AgentSettings(profiler="off"), service_name="shop")
    >>> agent.identity().service, agent.backend
    ('shop', 'none')
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
import socket
import threading
import uuid
import weakref
from urllib.parse import urlparse

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_adaprof import __version__
from otel_adaprof.instrumentation.control.fast_loop import FastLoop
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.poller import Poller
from otel_adaprof.instrumentation.export.profiles import ExportCounters, ProfilesExport
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.span_join import SpanJoin
from otel_adaprof.instrumentation.observe.agent_cpu import AgentCpu, thread_part
from otel_adaprof.instrumentation.observe.metered_exporter import MeteredSpanExporter
from otel_adaprof.instrumentation.observe.new_code import NewCode
from otel_adaprof.instrumentation.observe.observer import Counts, WindowObserver
from otel_adaprof.instrumentation.profiler import native
from otel_adaprof.instrumentation.profiler.native import SlowSpanWatcher
from otel_adaprof.instrumentation.profiler.run_folder import remove_orphans
from otel_adaprof.instrumentation.profiler.slow_spans import (
    NativeWatchIndex,
    OpenSpanIndex,
    SlowSpanCapture,
)
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.instrumentation.sdk_compat import replace_processors
from otel_adaprof.instrumentation.settings import AgentSettings
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor, SpanCounters
from otel_adaprof.instrumentation.spans.sampler import AdaprofSampler
from otel_adaprof.instrumentation.threads import AgentThreads, ThreadIdentity, ThreadLiveness
from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    MAX_LATE_VERSIONS,
    MAX_NAME_CHARS,
    MAX_STACK_DEPTH,
    AgentIdentity,
    LateStacks,
    ProfilerBackend,
    StackHistogram,
)

log = logging.getLogger("otel_adaprof.agent")

#: When a burst starts, the window closes and is reported this long after (s), not at
#: its end: long enough for the burst's first py-spy run (planned for 200 samples: 2 s
#: at 100 Hz) to be in. A py-spy glimpse (one 2 s run) is reported after it too, whole.
BURST_REPORT_AFTER_S = 2.5
#: The same for a burst of the native profiler (s): its samples are in the store within
#: a take, and the report's close takes the rest (``Profiler.pause``), so a second of a
#: 100 Hz burst, about 100 samples, is the news of a change in the report; waiting
#: 2.5 s made a burst's detection wait 1.5 s more than its samples did. A glimpse too
#: (its second half comes with the next report): the first of it is what finds a hot
#: path a slow request showed as new code (session 46; it used to be reported whole).
NATIVE_BURST_REPORT_AFTER_S = 1.0


@functools.cache
def _sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("opentelemetry-sdk")
    except Exception:
        return ""


class Agent:
    """Everything the agent runs in one process."""

    def __init__(self, settings: AgentSettings, service_name: str | None = None) -> None:
        self.settings = settings
        for problem in settings.problems:
            log.error("otel-adaprof: %s", problem)
        params, source = settings.local_params()
        self.live = LiveParams(params, source=source)
        self.book = MarkerBook()
        self.counters = SpanCounters()
        self.latency = LatencyTracker()
        #: The threads this agent started (their samples are ignored, their CPU counted).
        self.threads = AgentThreads()
        self.thread_identity = ThreadIdentity()
        self.store = SampleStore(retention_s=settings.hold_s + 10.0, agent_threads=self.threads)
        self.liveness = ThreadLiveness()
        self.marker_processor = MarkerProcessor(
            self.live, self.book, self.latency, self.counters, self.liveness, self.thread_identity
        )
        #: The tracer provider the agent is attached to (``None``: not attached).
        self.provider: TracerProvider | None = None
        self._retired_sampler: AdaprofSampler | None = None
        self.joins: list[SpanJoin] = []
        self.exporters: list[MeteredSpanExporter] = []
        self.profiles = self._new_profiles_export()
        self._service_name = service_name
        self._instance_id = settings.instance_id
        self.pid = os.getpid()
        self.cpu = AgentCpu(extra=self._other_threads)
        self.profiler = self._new_profiler()
        if self._native_backend():  # sample_scope: requests
            self.marker_processor.request_hooks = native.request_hooks()
        self.slow_capture = self._new_slow_capture()
        self.fast_loop = self._new_fast_loop()
        self.observer = self._new_observer()
        self.poller = self._new_poller()
        if self.profiles is not None:
            self.profiles.on_thread_start = self._ignore_current_thread
        self.started = False
        self.attached = False
        self._exit_hooked = False
        self._lock = threading.Lock()
        # A weak reference: the fork hook must not keep a forgotten agent alive.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    # parts --------------------------------------------------------------------------

    def _new_profiler(self) -> Profiler:
        s = self.settings
        # the native watcher's thread (slow-span capture without the GIL), and its takes
        # on the spans' threads where no span join takes them: a part of their own
        self.cpu.add_meter("watch", native.WATCHER.cpu_seconds)
        return Profiler(
            self.live, self.store, choice=s.profiler, py_spy_path=s.py_spy_path,
            segment_s=s.segment_s, segment_max_s=s.segment_max_s,
            segment_samples=s.segment_samples, cut_rule=s.cut_rule, idle=s.profile_idle,
            pid=self.pid,
            clock_beacon=s.clock_beacon, liveness=self.liveness, cpu=self.cpu,
        )  # fmt: skip

    def _new_slow_capture(self) -> SlowSpanCapture:
        return SlowSpanCapture(
            self.live, self.store, self.latency, enable=self._index_open_spans,
            native=self._native_watcher,
        )  # fmt: skip

    def _native_backend(self) -> bool:
        """Whether the profiler in use is the native sampler (asked anew each time: it
        falls back to py-spy or the in-process sampler when the extension fails)."""
        return self.profiler.backend == ProfilerBackend.NATIVE.value

    def _native_watcher(self) -> SlowSpanWatcher | None:
        """The native watcher for slow-span capture while the profiler is the native one
        (the reads without the GIL), else ``None`` (the reads in the fast loop)."""
        if not self._native_backend() or native.unavailable():
            return None
        return native.WATCHER

    def _native_cpu(self) -> float:
        """CPU seconds of the agent's native threads (sampler and watcher): not the service's."""
        return self.profiler.native_cpu_total() + native.WATCHER.cpu_seconds()

    def _new_fast_loop(self) -> FastLoop:
        new_code = NewCode()
        loop = FastLoop(
            self.live, self.slow_capture, self.latency,
            counts=lambda: (self.counters.requests, self.counters.spans),
            agent_threads=self.agent_threads, beacon=self.profiler.beacon,
            profiler_cpu=self._native_cpu,
            one_level=self._native_backend,
            new_code=new_code,
            glimpse_on_new_code=self._native_backend,
        )  # fmt: skip
        new_code.on_new = loop.wake  # the glimpse at the loop's next tick, not in 1.25 s
        self.store.new_code = new_code
        return loop

    def _new_observer(self) -> WindowObserver:
        return WindowObserver(
            self.counts,
            self.agent_threads,
            signals=lambda n, shown: self.fast_loop.detector.report(n, shown),
            cpu=self.cpu,
            rates=self.profiler.take_rates,
        )

    def _index_open_spans(self, index: OpenSpanIndex | None) -> bool:
        """Install (or remove) the marker processor's open-span index for slow-span capture."""
        self.marker_processor.open_spans = index
        return True

    def _new_poller(self) -> Poller:
        s = self.settings
        poller_cls = Poller
        if s.control_protocol == "opamp":
            from otel_adaprof.instrumentation.control.opamp_poller import OpampPoller

            poller_cls = OpampPoller
        poller = poller_cls(
            self.live, self.observer, self.identity, self.store.take_histogram,
            controller_url=s.controller_url, token=s.controller_token, window_s=s.window_s,
            timeout_s=s.poll_timeout_s, stale_after_s=s.stale_params_s,
        )  # fmt: skip
        poller.on_thread_start = self._poller_thread_started
        poller.on_thread_end = self.cpu.leave
        poller.pause_profiler = self.profiler.pause
        poller.resume_profiler = self.profiler.resume
        poller.late_stacks = self._late_stacks
        poller.pending_since = self.profiler.pending_since
        self.fast_loop.on_burst = functools.partial(self._report_burst, poller)
        poller.learning_report_after = self._first_samples_after
        return poller

    def _first_samples_after(self) -> float:
        """Seconds after a sampling run starts that its first samples are in for a
        report: a second with the native profiler, py-spy's first run (2.5 s) else."""
        if self._native_backend():
            return NATIVE_BURST_REPORT_AFTER_S
        return BURST_REPORT_AFTER_S

    def _report_burst(self, poller: Poller) -> None:
        """A burst or a glimpse started (on the fast loop's thread): close the window and
        report soon, once its first samples are in (:data:`BURST_REPORT_AFTER_S`,
        :data:`NATIVE_BURST_REPORT_AFTER_S`). Never blocks."""
        poller.poll_soon(self._first_samples_after())

    def _late_stacks(self, depth: int) -> list[LateStacks]:
        """Samples and CPU of already-reported versions that came in since (the tail of a
        py-spy segment that spanned their window's close), one entry per version."""
        late = {item.config_version: item for item in self.store.take_late(depth)}
        for version, seconds in self.cpu.take_late().items():
            item = late.get(version)
            if item is None:
                empty = StackHistogram(depth=max(1, min(depth, MAX_STACK_DEPTH)))
                item = LateStacks(config_version=version, stacks=empty)
            late[version] = item.model_copy(update={"profiler_cpu_seconds": seconds})
        return [late[v] for v in sorted(late, reverse=True)][:MAX_LATE_VERSIONS]

    def _poller_thread_started(self) -> None:
        self.cpu.enter("poller")
        self._ignore_current_thread()

    def _other_threads(self) -> list[tuple[str, int]]:
        """``(part, native id)`` of the agent threads that do not count their own CPU in
        :attr:`cpu`: those registered in :attr:`threads` (the span joins', slow-span
        capture's, ...) and the joins' workers, named after their thread's name."""
        out: dict[int, str] = {}
        for thread in self.threads.threads():
            native = thread.native_id
            if native is not None and not self.cpu.counts_itself(native):
                out[native] = thread_part(thread.name)
        for join in self.joins:
            native = join.native_id
            if native is not None and native not in out and not self.cpu.counts_itself(native):
                out[native] = "join"
        profiles = getattr(self, "profiles", None)  # absent while __init__ runs
        if profiles is not None and profiles.native_id is not None:
            out.setdefault(profiles.native_id, "profiles_export")
        return [(part, native) for native, part in out.items()]

    def _new_profiles_export(self) -> ProfilesExport | None:
        if self.settings.profiles_export != "otlp":
            return None
        try:
            export = ProfilesExport.from_env()
        except ValueError as exc:
            log.error("otel-adaprof: OTLP profiles stay off: %s", exc)
            return None
        log.info("otel-adaprof: OTLP profiles to %s", export.endpoint.url)
        if urlparse(export.endpoint.url).port == 4317:
            log.warning(
                "otel-adaprof: OTLP profiles go over HTTP, but %s is gRPC's port; set "
                "OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT to the HTTP receiver (port 4318)",
                export.endpoint.url,
            )
        return export

    @property
    def backend(self) -> str:
        """The profiler backend in use: ``py-spy``, ``in-process`` or ``none``."""
        return self.profiler.backend

    @property
    def service_name(self) -> str:
        """``service.name`` of the tracer provider's resource (or ``OTEL_SERVICE_NAME``)."""
        return self._service_name or os.environ.get("OTEL_SERVICE_NAME") or "unknown_service"

    def name_service(self, name: str | None, *, override: bool = True) -> None:
        """Set the service name (``override=False``: only if none was set yet)."""
        if name and (override or self._service_name is None):
            self._service_name = str(name)

    @property
    def instance_id(self) -> str:
        """Unique per process; stable across reconnects."""
        if self._instance_id is None:
            host = socket.gethostname()
            self._instance_id = f"{self.service_name}-{host}-{self.pid}-{uuid.uuid4().hex[:6]}"
        return self._instance_id[:MAX_NAME_CHARS]

    def identity(self) -> AgentIdentity:
        """Who polls: service, instance, host, pid, versions, backend."""
        return AgentIdentity(
            service=self.service_name[:MAX_NAME_CHARS],
            instance_id=self.instance_id,
            host=socket.gethostname()[:MAX_NAME_CHARS],
            pid=self.pid,
            sdk_version=_sdk_version(),
            agent_version=__version__,
            profiler_backend=ProfilerBackend(self.backend),
        )

    def set_local_ratio(self, ratio: float) -> None:
        """Local trace ratio (``OTEL_TRACES_SAMPLER_ARG``), until the controller speaks."""
        params = self.live.local.with_changes(trace_ratio=ratio)
        self.live.local = params
        if self.live.current.version == 0:
            self.live.apply(params, 0, None, source="local")

    def counts(self) -> Counts:
        """The agent's monotonic counters (OTLP profiles' bytes, drops and failures in)."""
        profiles = self.profiles.counters if self.profiles else ExportCounters()
        return Counts(
            spans=self.counters.spans,
            markers=self.counters.markers,
            samples=self.store.cpu_samples_added,
            bytes_exported=sum(e.bytes for e in self.exporters) + profiles.bytes_sent,
            profiler_cpu_s=0.0,  # counted per version by AgentCpu
            queue_drops=sum(j.counters.overflow for j in self.joins) + profiles.dropped,
            export_failures=sum(e.failures for e in self.exporters) + profiles.failures,
            slow_spans=sum(j.counters.slow for j in self.joins),
            slow_spans_sampled=sum(j.counters.slow_sampled for j in self.joins),
            slow_span_samples=self.slow_capture.samples + native.WATCHER.samples,
            burst_s=self.fast_loop.reflex.burst_seconds,
            glimpse_s=self.fast_loop.reflex.glimpse_seconds,
            changes=self.fast_loop.detector.changes,
            profile_changes=self.fast_loop.detector.profile_changes,
            new_code=self.store.new_code.events if self.store.new_code is not None else 0,
        )

    def agent_threads(self) -> list[int]:
        """Native ids of the agent's own threads (their CPU is profiler overhead).

        Every thread registered in :attr:`threads` or counting itself in :attr:`cpu`.
        """
        ids = self.threads.native_ids()
        ids += [i for i in self.cpu.native_ids() if i not in ids]
        ids += [i for _part, i in self._other_threads() if i not in ids]
        fast_loop = getattr(self, "fast_loop", None)  # absent while __init__ runs
        if fast_loop is not None and fast_loop.native_id is not None:
            ids += [] if fast_loop.native_id in ids else [fast_loop.native_id]
        return ids

    # wiring -------------------------------------------------------------------------

    def export_processor(self, exporter: SpanExporter) -> SpanProcessor:
        """The export processor for ``exporter``: span join → batch processor → exporter.

        This is the ``export_span_processor`` the SDK's configuration calls per exporter.
        """
        metered = MeteredSpanExporter(exporter)
        self.exporters.append(metered)
        return self.wrap_processor(BatchSpanProcessor(metered))

    def wrap_processor(self, downstream: SpanProcessor) -> SpanJoin:
        """Put the span join in front of an existing export processor."""
        join = SpanJoin(
            downstream, self.book, self.store, self.live,
            hold_s=self.settings.hold_s, max_held=self.settings.max_held_spans,
            top_stacks=self.settings.span_top_stacks,
            backend=self._span_backend, profiling=self._samples_expected,
            linker=self.profiles,
        )  # fmt: skip
        # the native watcher's samples come in at the join's pass, not at each span's end
        join.before_send = native.WATCHER.take_ended
        native.WATCHER.deferred = True
        self.joins.append(join)
        return join

    def fuse(self, provider: TracerProvider) -> None:
        """Fold the marker processor into the first span join after it in the provider's
        list (:meth:`SpanJoin.decide_markers`).

        Done once the agent's processors are in (by :func:`~otel_adaprof.configure`, the
        configurator and :meth:`attach`); with no span join after it, the marker
        processor stays on its own.
        """
        replace_processors(provider, self._fused)

    def _fused(self, existing: tuple[SpanProcessor, ...]) -> tuple[SpanProcessor, ...]:
        marker = self.marker_processor
        if marker not in existing:
            return existing
        at = existing.index(marker)
        for processor in existing[at + 1 :]:
            if isinstance(processor, SpanJoin) and processor in self.joins:
                processor.decide_markers(marker)
                return existing[:at] + existing[at + 1 :]
        return existing

    def _samples_expected(self) -> bool:
        """Whether marker spans should wait for samples (a profiler or slow-span capture)."""
        return self.profiler.active or self.slow_capture.on

    def _span_backend(self) -> str:
        if not self.profiler.active and self.slow_capture.on:
            # the slow-span capture's samples only: read by the native watcher, or in-process
            if isinstance(self.slow_capture.open_spans, NativeWatchIndex):
                return ProfilerBackend.NATIVE.value
            return "in-process"
        return self.backend

    def attach(self, provider: TracerProvider) -> bool:
        """Attach to a provider someone else configured; whether it worked.

        The marker processor is added, and the provider's export processors are put
        behind the span join (through the SDK's processor list: an internal of
        ``opentelemetry-sdk`` that has been stable since 1.0; if it is not there, spans
        still get markers but no samples, and the log says so).
        """
        with self._lock:
            if self.attached:
                return True
            name = provider.resource.attributes.get("service.name")
            self.name_service(str(name) if name else None, override=False)
            self.provider = provider
            self.attached = True
            retired, self._retired_sampler = self._retired_sampler, None
            if retired is not None and provider.sampler is retired.default:
                retired.retired = False  # attached again after detach(): sample as before
                provider.sampler = retired

            def wrap(existing: tuple[SpanProcessor, ...]) -> tuple[SpanProcessor, ...]:
                wrapped = tuple(
                    p if isinstance(p, (SpanJoin, MarkerProcessor)) else self.wrap_processor(p)
                    for p in existing
                )
                return self._fused((self.marker_processor, *wrapped))

            if not replace_processors(provider, wrap):
                log.warning(
                    "otel-adaprof: this TracerProvider has no processor list to join; "
                    "markers are decided but carry no samples"
                )
                provider.add_span_processor(self.marker_processor)
                return False
            return True

    def detach(self) -> None:
        """Undo what attaching and starting did (``AdaprofInstrumentor().uninstrument()``).

        The agent's threads stop; held spans go on with the samples already in; the
        marker processor leaves the provider and each export processor takes the place
        of its span join; an adaprof sampler samples as the SDK's default does
        (``ParentBased(ALWAYS_ON)``), on the provider and in the tracers made from it.
        Attaching again (``instrument()``) puts everything back.
        """
        self.stop()
        with self._lock:
            provider, self.provider = self.provider, None
            self.attached = False
        for join in self.joins:
            join.stop()
        if provider is None:
            return

        def unwrap(existing: tuple[SpanProcessor, ...]) -> tuple[SpanProcessor, ...]:
            return tuple(
                p.downstream if isinstance(p, SpanJoin) else p
                for p in existing
                if p is not self.marker_processor
            )

        replace_processors(provider, unwrap)
        sampler = provider.sampler
        if isinstance(sampler, AdaprofSampler):
            sampler.retired = True
            provider.sampler = sampler.default
            self._retired_sampler = sampler

    def start(self) -> None:
        """Start the profiler and the poller (idempotent), and say what runs."""
        with self._lock:
            if self.started or self.settings.disabled:
                return
            self.started = True
        if self.profiler.backend == ProfilerBackend.PY_SPY.value:
            removed = remove_orphans()  # of processes killed outright (SIGKILL)
            if removed:
                log.info("otel-adaprof: removed %d run folders of exited processes", len(removed))
        self.profiler.start()
        self.fast_loop.start()
        self.poller.start()
        if not self._exit_hooked:
            self._exit_hooked = True
            atexit.register(self._at_exit)
            _clean_up_on_sigterm(weakref.ref(self))
        if self.settings.controller_url:
            log.info(
                "otel-adaprof: agent %s polls %s; profiler %s",
                self.instance_id, self.settings.controller_url, self.backend,
            )  # fmt: skip
        else:
            log.warning(
                "otel-adaprof: ADAPROF_CONTROLLER_URL is not set; running on %s "
                "(%d Hz, depth %d, ratio %g), profiler %s",
                self.live.current.source, self.live.params.rate_hz, self.live.params.stack_depth,
                self.live.params.trace_ratio, self.backend,
            )  # fmt: skip

    def _at_exit(self) -> None:
        self.profiler.kill_children()  # the current profiler (a fork made a new one)

    def stop(self) -> None:
        """Stop polling and profiling (bounded); held spans are released by the joins.

        A stopped agent stays stopped, also in a process forked later.
        """
        self.started = False
        self.poller.stop()
        self.fast_loop.stop()
        self.profiler.stop()

    def apply_local(self, params: Params) -> None:
        """Put local params in force (tests and ``configure(params=...)``)."""
        self.live.local = params
        self.live.apply(params, 0, None, source="local")

    def _ignore_current_thread(self) -> None:
        self.store.ignored.add(threading.get_ident())

    def _after_fork(self) -> None:
        self.pid = os.getpid()
        # A fresh process for the controller: new instance, first poll at version 0.
        # Locks another thread held at the fork would never be released in the child.
        self.live.after_fork()
        self.book.after_fork()
        self.latency.after_fork()
        self.liveness.after_fork()
        self.threads.after_fork()
        self.thread_identity.after_fork()
        self._instance_id = None
        self.store = SampleStore(
            retention_s=self.settings.hold_s + 10.0, agent_threads=self.threads
        )
        for join in self.joins:
            join.store = self.store
            join.after_fork()
        if self.profiles is not None:
            self.profiles.after_fork()
        self.cpu = AgentCpu(extra=self._other_threads)
        self.profiler = self._new_profiler()
        self.marker_processor.open_spans = None
        self.slow_capture = self._new_slow_capture()
        self.fast_loop = self._new_fast_loop()
        self.observer = self._new_observer()
        self.poller = self._new_poller()
        self._lock = threading.Lock()
        was_started, self.started = self.started, False
        if was_started:
            self.start()


def _clean_up_on_sigterm(ref: weakref.ReferenceType[Agent]) -> None:
    """On SIGTERM with the default action (the process dies without running ``atexit``),
    kill py-spy and remove the run folder first, then die of SIGTERM as before.

    Only where the application left SIGTERM alone, and only from the main thread (the
    only one that may set handlers); an application that handles SIGTERM exits through
    ``atexit``, which does the same.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: object) -> None:
            agent = ref()
            try:
                if agent is not None:
                    agent._at_exit()
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _after_fork(ref: weakref.ReferenceType[Agent]) -> None:
    agent = ref()
    if agent is not None:
        agent._after_fork()
