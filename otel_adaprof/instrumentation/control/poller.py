"""The poller: one report per window to the controller, new params back, applied live.

A daemon thread. At the end of each window it sends a
:class:`~otel_adaprof.protocol.PollRequest` (the window's observed state, its CPU
stack histogram and the config version it ran under) to ``POST /v1/agents/poll`` and
puts the answered params in force at once. The service never waits for it:

* controller down, slow (``ADAPROF_POLL_TIMEOUT_S``) or answering an error → the last
  good params stay; the next try comes after a backoff (the window, doubling to
  :data:`MAX_BACKOFF_S`, ±50 % jitter); after ``ADAPROF_STALE_PARAMS_S`` without an
  answer the agent goes back to its local params; it recovers by itself;
* an answer that is not a valid ``PollResponse`` — params outside their bounds, an
  unknown protocol version — is refused and logged with the field; the last good
  params stay.

Polls go out through :mod:`http.client` inside ``suppress_instrumentation`` so that
they never become spans of the service.

    >>> parse_url("http://127.0.0.1:8080/base")
    ('http', '127.0.0.1', 8080, '/base')
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable

from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.control.live_params import LiveParams
from otel_adaprof.instrumentation.observe.observer import WindowObserver
from otel_adaprof.params import Params
from otel_adaprof.protocol import (
    AgentIdentity,
    LateStacks,
    PollRequest,
    PollResponse,
    StackHistogram,
    decode_poll_response,
    encode,
)

log = logging.getLogger("otel_adaprof.agent")

#: Longest wait between two tries while the controller is unreachable (s).
MAX_BACKOFF_S = 60.0
#: Largest answer read from the controller (bytes).
MAX_ANSWER_BYTES = 1024 * 1024


class PollError(RuntimeError):
    """A poll that did not produce valid params (the message says why)."""


def parse_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path prefix)`` of the controller URL."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname or "127.0.0.1", port, parts.path.rstrip("/")


#: A sampling interval this short or shorter (ms) is a learning rate (the catalog's
#: 50-100 Hz learning actions, a burst's 100 Hz).
LEARNING_INTERVAL_MS = 20


#: A report asked for (:meth:`Poller.poll_soon`) less than this many seconds after a poll
#: that came due first is that poll's; one asked for later is kept for the next poll.
#: The first run of session 49's round with none kept a window of 0.02 s, empty.
SOON_KEPT_AFTER_S = 0.5


def starts_learning(ran: Params, now: Params) -> bool:
    """Whether ``now`` samples at a learning rate and ``ran`` did not (the watch, a
    maintenance rate).

    >>> starts_learning(Params(sampling_interval_ms=0), Params(sampling_interval_ms=10))
    True
    >>> starts_learning(Params(sampling_interval_ms=20), Params(sampling_interval_ms=10))
    False
    >>> starts_learning(Params(sampling_interval_ms=500), Params(sampling_interval_ms=50))
    False
    """

    def learning(p: Params) -> bool:
        return 0 < p.sampling_interval_ms <= LEARNING_INTERVAL_MS

    return learning(now) and not learning(ran)


class Poller:
    """Polls the controller once per window in a daemon thread."""

    def __init__(
        self,
        live: LiveParams,
        observer: WindowObserver,
        identity: Callable[[], AgentIdentity],
        histogram: Callable[[int, int], StackHistogram],
        *,
        controller_url: str | None,
        token: str | None = None,
        window_s: float = 5.0,
        timeout_s: float = 2.0,
        stale_after_s: float = 300.0,
    ) -> None:
        self.live = live
        self.observer = observer
        self.identity = identity
        self.histogram = histogram
        self.controller_url = controller_url
        self.token = token
        self.window_s = window_s
        self.timeout_s = timeout_s
        self.stale_after_s = stale_after_s
        self.polls = 0
        self.failures = 0
        self.refused = 0
        self.last_error = ""
        self.last_ok = time.monotonic()
        self._consecutive = 0
        self._reverted = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Reports asked for (:meth:`poll_soon`), monotonic s, not yet made.
        self._soon: list[float] = []
        self._soon_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.native_id: int | None = None
        self.on_thread_start: Callable[[], None] | None = None
        self.on_thread_end: Callable[[], None] | None = None
        #: Called before a window closes (cut the profiler's segment: its samples are
        #: in) and after the answer is applied (sampling goes on).
        self.pause_profiler: Callable[[], object] | None = None
        self.resume_profiler: Callable[[], None] | None = None
        #: Samples and CPU of earlier versions that came in after their report (by depth).
        self.late_stacks: Callable[[int], list[LateStacks]] | None = None
        #: Since when (unix s) samples are still in flight (a py-spy segment), or None.
        self.pending_since: Callable[[], float | None] | None = None
        #: Seconds after an answer that starts learning (:func:`starts_learning`) the
        #: next poll reports, when sooner than the answer's interval: the first samples
        #: of a learning run the controller started on a change it saw are the news of
        #: that change, as a burst's are (``None``: every poll at the answer's interval).
        self.learning_report_after: Callable[[], float] | None = None

    def start(self) -> None:
        """Start polling (a daemon thread); the first poll goes out at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="adaprof-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop polling (an in-flight poll is bounded by the poll timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        self.native_id = threading.get_native_id()
        if self.on_thread_start is not None:
            self.on_thread_start()
        first = True
        try:
            while not self._stop.is_set():
                if not self.controller_url:  # nobody to report to: sleep until stopped
                    self._stop.wait()
                    break
                wait = self.window_s
                try:
                    wait = self.poll_once(first=first)
                except Exception:  # never let the poller die: log, keep the params, go on
                    log.exception("otel-adaprof: poll failed unexpectedly")
                first = False
                self._sleep(wait)
        finally:
            if self.on_thread_end is not None:
                self.on_thread_end()

    def poll_soon(self, delay_s: float) -> None:
        """Close the window and report ``delay_s`` from now, unless a poll is due sooner.

        The burst reflex calls it when a burst starts: the burst's first samples are
        the news of a change, and waiting for the end of the window would add up to a
        window to the time the user waits to see it. Never blocks (the lock is held for
        a few instructions). Every report asked for is made: one asked for while an
        earlier one waits is kept for after it.
        """
        at = time.monotonic() + max(0.0, delay_s)
        with self._soon_lock:
            self._soon.append(at)
        self._wake.set()

    def _soon_at(self) -> float | None:
        """The earliest report asked for and not yet made."""
        with self._soon_lock:
            return min(self._soon, default=None)

    def _sleep(self, wait: float) -> None:
        """Until the next poll: ``wait`` seconds, or sooner if :meth:`poll_soon` asks.

        A report asked for more than :data:`SOON_KEPT_AFTER_S` after the poll that ends
        this sleep is kept for the next one: a glimpse that starts just before a
        window's due close wants its first second's samples reported, and the close that
        came first held few of them (session 49: the ledger's hot path waited the next
        window's whole 3 s). One asked for sooner is this poll's (a window of a few
        milliseconds after it would hold nothing)."""
        due = time.monotonic() + wait
        while not self._stop.is_set():
            self._wake.clear()  # before the read: a request made after it wakes the wait
            soon = self._soon_at()
            now = time.monotonic()
            if now >= due or (soon is not None and now >= soon):
                break
            self._wake.wait(min(due, soon if soon is not None else due) - now)
        answered = time.monotonic() + SOON_KEPT_AFTER_S
        with self._soon_lock:  # this poll is the one asked for; later ones wait
            self._soon = [at for at in self._soon if at > answered]

    def poll_once(self, first: bool = False) -> float:
        """Close the window, report it, apply the answer; seconds until the next poll."""
        if not self.controller_url:
            return self.window_s  # nobody to report to: nothing is measured or taken
        paused = False
        if not first and self.pause_profiler is not None:
            self.pause_profiler()  # the window's last samples are in
            paused = True
        try:
            return self._report(first)
        finally:
            if paused and self.resume_profiler is not None:
                self.resume_profiler()

    def _report(self, first: bool) -> float:
        current = self.live.current
        ran = current.params  # the params the window ran (a burst's included)
        if first:
            request = PollRequest(agent=self.identity(), config_version=current.version)
        else:
            # only what this version produced: samples, CPU and rates of others are dropped
            depth = current.params.stack_depth
            stacks = self.histogram(depth, current.version)
            pending = self.pending_since() if self.pending_since is not None else None
            window = self.observer.close_window(
                version=current.version, samples=stacks.total_samples
            )
            if pending is not None:
                since = max(pending, window.window_start)
                window = window.model_copy(update={"samples_pending_since": since})
            request = PollRequest(
                agent=self.identity(),
                config_version=current.version,
                session_id=current.session_id,
                window=window,
                stacks=stacks,
                late_stacks=self.late_stacks(depth) if self.late_stacks is not None else [],
            )
        started = time.monotonic()
        try:
            answer = self._send(request)
        except PollError as exc:
            return self._on_failure(str(exc))
        self.observer.poll_rtt_ms = (time.monotonic() - started) * 1000.0
        self.polls += 1
        self.last_ok = time.monotonic()
        if self._consecutive or self._reverted:
            log.warning(
                "otel-adaprof: controller answers again after %d failed polls", self._consecutive
            )
        self._consecutive, self._reverted = 0, False
        changed = self.live.apply(answer.params, answer.config_version, answer.session_id)
        if changed:
            log.info(
                "otel-adaprof: params v%d in force: %d Hz, depth %d, ratio %g",
                answer.config_version, answer.params.rate_hz, answer.params.stack_depth,
                answer.params.trace_ratio,
            )  # fmt: skip
        self.window_s = float(answer.poll_interval_s)
        after = self.learning_report_after
        if after is not None and changed and starts_learning(ran, self.live.current.params):
            return min(self.window_s, after())
        return self.window_s

    def _on_failure(self, reason: str) -> float:
        self.failures += 1
        self._consecutive += 1
        self.last_error = reason
        if self._consecutive == 1:
            log.warning("otel-adaprof: poll failed (%s); keeping the params in force", reason)
        if not self._reverted and time.monotonic() - self.last_ok > self.stale_after_s:
            self._reverted = True
            if self.live.revert_to_local():
                log.warning(
                    "otel-adaprof: no answer from the controller for %.0f s; back to local params",
                    self.stale_after_s,
                )
        backoff: float = self.window_s * 2.0 ** (self._consecutive - 1)
        return min(MAX_BACKOFF_S, backoff * random.uniform(0.5, 1.5))

    def _post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        """POST ``body`` to the controller's ``path``; (status, at most MAX_ANSWER_BYTES + 1
        bytes of the answer). Raises :class:`PollError` when the controller is unreachable."""
        assert self.controller_url is not None
        scheme, host, port, prefix = parse_url(self.controller_url)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        conn_cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(host, port, timeout=self.timeout_s)
        try:
            with _suppressed():
                conn.request("POST", prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read(MAX_ANSWER_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise PollError(
                f"cannot reach {self.controller_url}: {exc or type(exc).__name__}"
            ) from None
        finally:
            conn.close()

    def _send(self, request: PollRequest) -> PollResponse:
        status, raw = self._post("/v1/agents/poll", encode(request), "application/json")
        if status != 200:
            raise PollError(
                f"controller answered HTTP {status}: {raw[:300].decode(errors='replace')}"
            )
        try:
            return decode_poll_response(raw)
        except ContractError as exc:
            self.refused += 1
            field = exc.field or "body"
            log.error("otel-adaprof: refused the controller's answer, field %s: %s", field, exc)
            raise PollError(f"invalid answer ({field}): {exc}") from None


class _suppressed:
    """``suppress_instrumentation`` when the instrumentation package offers it."""

    def __enter__(self) -> None:
        self._cm: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        with contextlib.suppress(ImportError):
            from opentelemetry.instrumentation.utils import suppress_instrumentation

            self._cm = suppress_instrumentation()
        self._cm.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(None, None, None)
