"""OTLP profiles from the agent: the samples joined to marker spans, linked to those spans.

Switched on by ``ADAPROF_PROFILES_EXPORT=otlp`` (off by default); the receiver comes
from the standard variables (:mod:`otel_adaprof.exporters.otlp_http`:
``OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` +
``/v1development/profiles``; headers, timeout, gzip).

The span join calls :meth:`ProfilesExport.link` when it attaches a marker span's
samples (on its worker thread, never the application's): the on-CPU samples (waiting
ones are left out: the profile is ``process_cpu``) go into a bounded queue, each
linked to that span. Each sample is linked to **one** span: nested marker spans on one
thread end child first, so a sample goes to the innermost marker span that claims it
(a second claim by the same span — a second exporter's join — is counted again for that
span, nothing is queued twice). ``link`` answers how many of the span's samples are in
the profile; the join then sets ``pyroscope.profile.id`` (the span id, 16 hex digits)
on the span, which Grafana's
"Profiles for this span" reads.

A daemon worker sends the queue every :data:`FLUSH_INTERVAL_S` (sooner when
:data:`BATCH_SAMPLES` are waiting) as one ``ExportProfilesServiceRequest`` per sampling
period. Nothing here blocks or raises into the service: a full queue drops the new
samples (``dropped``), a failed send drops its batch (``failed_samples``, ``failures``),
both counted and reported with the window's ``queue_drops`` / ``export_failures``.

    >>> from opentelemetry.sdk.resources import Resource
    >>> from opentelemetry.sdk.trace import ReadableSpan
    >>> from opentelemetry.trace import SpanContext
    >>> from otel_adaprof.exporters.otlp_http import ProfilesEndpoint, endpoint_from_env
    >>> export = ProfilesExport(ProfilesEndpoint("http://127.0.0.1:1/v1development/profiles"))
    >>> span = ReadableSpan("burn", SpanContext(0xABC, 0x1F, is_remote=False),
    ...                     resource=Resource({"service.name": "shop"}))
    >>> stack = ("main (app.py:1)", "burn (app.py:9)")
    >>> export.link(span, 7, [(1_000, stack, False), (2_000, stack, True)], 10_000_000)
    1
    >>> export.queued, export.counters.linked, export.resource["service.name"]
    (1, 1, 'shop')
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_adaprof import __version__
from otel_adaprof.exporters.otlp_http import ProfilesEndpoint, endpoint_from_env
from otel_adaprof.exporters.otlp_profiles import ProfileSample, samples_request

log = logging.getLogger("otel_adaprof.agent")

#: Samples waiting to be sent at most; beyond it new samples are dropped (counted).
MAX_QUEUED_SAMPLES = 50_000
#: Seconds between two sends (at most; a full batch goes sooner).
FLUSH_INTERVAL_S = 5.0
#: Samples that make the worker send before the interval is up.
BATCH_SAMPLES = 5_000
#: Samples remembered as linked (to keep a sample in one span only), and for how long.
MAX_CLAIMED = 200_000
CLAIM_TTL_NS = 120 * 1_000_000_000

Sample = tuple[int, Sequence[str], bool]  # (unix ns, stack root first, waiting)


@dataclass
class ExportCounters:
    """Counts since start (the observer takes per-window differences)."""

    linked: int = 0
    dropped: int = 0
    sent_samples: int = 0
    failed_samples: int = 0
    requests: int = 0
    failures: int = 0
    bytes_sent: int = 0


class ProfilesExport:
    """Bounded queue of linked samples and the daemon worker that sends them."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfilesExport:
        """The export to the receiver the ``OTEL_EXPORTER_OTLP_*`` variables name;
        :class:`ValueError` naming a bad variable."""
        return cls(endpoint_from_env(env))

    def __init__(
        self,
        endpoint: ProfilesEndpoint,
        *,
        max_queued: int = MAX_QUEUED_SAMPLES,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        batch_samples: int = BATCH_SAMPLES,
    ) -> None:
        self.endpoint = endpoint
        #: Attributes of the resource the spans came from (``service.name`` and the rest).
        self.resource: Mapping[str, Any] = {}
        self.max_queued = max_queued
        self.flush_interval_s = flush_interval_s
        self.batch_samples = batch_samples
        self.counters = ExportCounters()
        self.native_id: int | None = None
        #: Called first thing on the worker thread (the agent marks it as its own).
        self.on_thread_start: Callable[[], None] | None = None
        self._queue: deque[tuple[int, ProfileSample]] = deque()
        self._claimed: dict[tuple[int, int], int] = {}
        self._claim_order: deque[tuple[int, int]] = deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._worker: threading.Thread | None = None
        self._warned = False
        self._resource_seen: object = None

    @property
    def queued(self) -> int:
        """Samples waiting to be sent."""
        return len(self._queue)

    # the join's hook ------------------------------------------------------------------

    def link(
        self,
        span: ReadableSpan,
        tid: int,
        samples: Sequence[Sample],
        period_ns: int,
        depth: int = 0,
    ) -> int:
        """Queue the on-CPU ``samples`` of thread ``tid`` linked to ``span``, each stack
        cut to its last ``depth`` frames (the leaf end; 0 = whole); how many of them the
        profile links to this span (0: the span gets no profile id)."""
        context = span.context
        if context is None or not context.span_id or period_ns <= 0:
            return 0
        trace_id, span_id = context.trace_id, context.span_id
        if span.resource is not None and span.resource.attributes is not self._resource_seen:
            self._resource_seen = span.resource.attributes
            self.resource = dict(span.resource.attributes)
        linked = queued = dropped = 0
        with self._lock:
            for t_ns, stack, waiting in samples:
                if waiting or not stack:
                    continue
                key = (tid, t_ns)
                owner = self._claimed.get(key)
                if owner is not None:
                    linked += owner == span_id
                    continue
                if len(self._queue) >= self.max_queued:
                    dropped += 1
                    continue
                self._claim(key, span_id)
                frames = stack[-depth:] if depth > 0 else stack
                self._queue.append((period_ns, ProfileSample(frames, t_ns, trace_id, span_id)))
                linked += 1
                queued += 1
            self.counters.linked += queued
            self.counters.dropped += dropped
            full = len(self._queue) >= self.batch_samples
        if queued:
            self._ensure_worker()
            if full:
                self._wake.set()
        return linked

    def _claim(self, key: tuple[int, int], span_id: int) -> None:
        self._claimed[key] = span_id
        self._claim_order.append(key)
        oldest = key[1] - CLAIM_TTL_NS
        while self._claim_order and (
            len(self._claim_order) > MAX_CLAIMED or self._claim_order[0][1] < oldest
        ):
            self._claimed.pop(self._claim_order.popleft(), None)

    # the worker -----------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._stopped or (self._worker is not None and self._worker.is_alive()):
            return
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._run, name="adaprof-profiles-export", daemon=True
                )
                self._worker.start()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        if self.on_thread_start is not None:
            self.on_thread_start()
        while not self._stopped:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            try:
                self.send_queued()
            except Exception:  # keep exporting; never let the worker die
                log.exception("otel-adaprof: profiles export failed")

    def send_queued(self) -> int:
        """Send every queued sample now (on the calling thread); samples sent."""
        with self._send_lock:
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
            if not batch:
                return 0
            by_period: dict[int, list[ProfileSample]] = {}
            for period_ns, sample in batch:
                by_period.setdefault(period_ns, []).append(sample)
            sent = 0
            for period_ns, samples in by_period.items():
                sent += self._send(period_ns, samples)
            return sent

    def _send(self, period_ns: int, samples: list[ProfileSample]) -> int:
        try:
            body = samples_request(
                samples,
                resource=self.resource,
                period_ns=period_ns,
                scope_version=__version__,
            ).SerializeToString()
            self.endpoint.send(body)
        except (OSError, ValueError) as exc:
            self.counters.failures += 1
            self.counters.failed_samples += len(samples)
            detail = exc.code if isinstance(exc, urllib.error.HTTPError) else exc
            if not self._warned:
                self._warned = True
                log.warning(
                    "otel-adaprof: OTLP profiles to %s failed (%s); %d samples dropped "
                    "(counted in export_failures; warned once)",
                    self.endpoint.url, detail, len(samples),
                )  # fmt: skip
            else:
                log.debug("otel-adaprof: OTLP profiles failed: %s", detail)
            return 0
        self.counters.requests += 1
        self.counters.sent_samples += len(samples)
        self.counters.bytes_sent += len(body)
        return len(samples)

    def flush(self) -> None:
        """Send what is queued now (each send bounded by the endpoint's timeout)."""
        try:
            self.send_queued()
        except Exception:
            log.debug("otel-adaprof: profiles flush failed", exc_info=True)

    def shutdown(self) -> None:
        """Send what is queued and stop the worker."""
        self.flush()
        self._stopped = True
        self._wake.set()

    def after_fork(self) -> None:
        """In a forked child: no worker, none of the parent's samples."""
        self._worker = None
        self.native_id = None
        self._queue.clear()
        self._claimed.clear()
        self._claim_order.clear()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
