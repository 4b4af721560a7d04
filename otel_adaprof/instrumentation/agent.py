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
import socket
import threading
import uuid
import weakref

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otel_adaprof import __version__
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.control.poller import Poller
from otel_adaprof.instrumentation.join.samples import SampleStore
from otel_adaprof.instrumentation.join.span_join import SpanJoin
from otel_adaprof.instrumentation.observe.agent_cpu import AgentCpu
from otel_adaprof.instrumentation.observe.metered_exporter import MeteredSpanExporter
from otel_adaprof.instrumentation.observe.observer import Counts, WindowObserver
from otel_adaprof.instrumentation.profiler.liveness import ThreadLiveness
from otel_adaprof.instrumentation.profiler.supervisor import Profiler
from otel_adaprof.instrumentation.settings import AgentSettings
from otel_adaprof.instrumentation.spans.latency import LatencyTracker
from otel_adaprof.instrumentation.spans.markers import MarkerBook, MarkerProcessor, SpanCounters
from otel_adaprof.params import Params
from otel_adaprof.protocol import MAX_NAME_CHARS, AgentIdentity, ProfilerBackend

log = logging.getLogger("otel_adaprof.agent")


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
        self.store = SampleStore(retention_s=settings.hold_s + 10.0)
        self.liveness = ThreadLiveness()
        self.marker_processor = MarkerProcessor(
            self.live, self.book, self.latency, self.counters, self.liveness
        )
        self.joins: list[SpanJoin] = []
        self.exporters: list[MeteredSpanExporter] = []
        self._service_name = service_name
        self._instance_id = settings.instance_id
        self.pid = os.getpid()
        self.cpu = AgentCpu(extra=self._other_threads)
        self.profiler = self._new_profiler()
        self.observer = self._new_observer()
        self.poller = self._new_poller()
        self.started = False
        self.attached = False
        self._lock = threading.Lock()
        # A weak reference: the fork hook must not keep a forgotten agent alive.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    # parts --------------------------------------------------------------------------

    def _new_profiler(self) -> Profiler:
        s = self.settings
        return Profiler(
            self.live, self.store, choice=s.profiler, py_spy_path=s.py_spy_path,
            segment_s=s.segment_s, idle=s.profile_idle, pid=self.pid,
            clock_beacon=s.clock_beacon, liveness=self.liveness, cpu=self.cpu,
        )  # fmt: skip

    def _new_observer(self) -> WindowObserver:
        return WindowObserver(
            self.counts, self.agent_threads, cpu=self.cpu, rates=self.profiler.take_rates
        )

    def _new_poller(self) -> Poller:
        s = self.settings
        poller = Poller(
            self.live, self.observer, self.identity, self.store.take_histogram,
            controller_url=s.controller_url, token=s.controller_token, window_s=s.window_s,
            timeout_s=s.poll_timeout_s, stale_after_s=s.stale_params_s,
        )  # fmt: skip
        poller.on_thread_start = self._poller_thread_started
        poller.on_thread_end = self.cpu.leave
        poller.pause_profiler = self.profiler.pause
        poller.resume_profiler = self.profiler.resume
        return poller

    def _poller_thread_started(self) -> None:
        self.cpu.enter("poller")
        self._ignore_current_thread()

    def _other_threads(self) -> list[tuple[str, int]]:
        """Agent threads that do not register themselves (the span joins' threads)."""
        return [("join", j.native_id) for j in self.joins if j.native_id is not None]

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
        """The agent's monotonic counters."""
        return Counts(
            spans=self.counters.spans,
            markers=self.counters.markers,
            samples=self.store.cpu_samples_added,
            bytes_exported=sum(e.bytes for e in self.exporters),
            profiler_cpu_s=0.0,  # counted per version by AgentCpu
            queue_drops=sum(j.counters.overflow for j in self.joins),
            export_failures=sum(e.failures for e in self.exporters),
        )

    def agent_threads(self) -> list[int]:
        """Native ids of the agent's own threads (their CPU is profiler overhead)."""
        ids = self.cpu.native_ids()
        ids.extend(native for _part, native in self._other_threads())
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
            backend=lambda: self.backend, profiling=lambda: self.profiler.active,
        )  # fmt: skip
        self.joins.append(join)
        return join

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
            multi = getattr(provider, "_active_span_processor", None)
            existing = getattr(multi, "_span_processors", None)
            if multi is None or not isinstance(existing, tuple):
                log.warning(
                    "otel-adaprof: this TracerProvider has no processor list to join; "
                    "markers are decided but carry no samples"
                )
                provider.add_span_processor(self.marker_processor)
                self.attached = True
                return False
            wrapped = tuple(
                p if isinstance(p, (SpanJoin, MarkerProcessor)) else self.wrap_processor(p)
                for p in existing
            )
            with multi._lock:
                multi._span_processors = (self.marker_processor, *wrapped)
            self.attached = True
            return True

    def start(self) -> None:
        """Start the profiler and the poller (idempotent), and say what runs."""
        with self._lock:
            if self.started or self.settings.disabled:
                return
            self.started = True
        self.profiler.start()
        self.poller.start()
        atexit.register(self._at_exit)
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
        self._instance_id = None
        self.store = SampleStore(retention_s=self.settings.hold_s + 10.0)
        for join in self.joins:
            join.store = self.store
            join.after_fork()
        self.cpu = AgentCpu(extra=self._other_threads)
        self.profiler = self._new_profiler()
        self.observer = self._new_observer()
        self.poller = self._new_poller()
        self._lock = threading.Lock()
        was_started, self.started = self.started, False
        if was_started:
            self.start()


def _after_fork(ref: weakref.ReferenceType[Agent]) -> None:
    agent = ref()
    if agent is not None:
        agent._after_fork()
