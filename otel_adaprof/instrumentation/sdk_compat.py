"""Every use the agent makes of ``opentelemetry-sdk`` internals, in one place.

The SDK has no public API for some of what the agent needs; each access below is to a
private name that has been stable for many releases, and each has a fallback that keeps
the service running (with less from the agent) if a release changes it.
:func:`problems` checks them all against the installed SDK; the test suite runs it, so
an SDK release that changes one fails loudly there rather than quietly in a service.

==============================================  ====================================
private name                                    used for
==============================================  ====================================
``TracerProvider._active_span_processor``       the provider's processor list, to put
``SynchronousMultiSpanProcessor._span_processors``  the span join in front of export
``SynchronousMultiSpanProcessor._lock``         processors and to take it out again
``Span._attributes._dict``                      the attributes as a plain dict (the
                                                public proxy raises per missing key)
``SpanProcessor._on_ending``                    the SDK's hook before ``on_end``,
                                                passed through the span join
``opentelemetry.sdk._configuration``            the SDK's own configurator, which
``._OTelSDKConfigurator``                       ours extends
==============================================  ====================================

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> problems()
    []
    >>> processors(TracerProvider())
    ()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

__all__ = [
    "SDKConfigurator",
    "on_ending_hook",
    "problems",
    "processors",
    "raw_attributes",
    "replace_processors",
]

#: The SDK's configurator (``opentelemetry-instrument`` runs it); ours extends it.
SDKConfigurator = _OTelSDKConfigurator


def processors(provider: TracerProvider) -> tuple[SpanProcessor, ...] | None:
    """The provider's span processors in order, or ``None`` if the SDK hides them."""
    multi = getattr(provider, "_active_span_processor", None)
    current = getattr(multi, "_span_processors", None)
    return current if isinstance(current, tuple) else None


def replace_processors(
    provider: TracerProvider,
    change: Callable[[tuple[SpanProcessor, ...]], tuple[SpanProcessor, ...]],
) -> bool:
    """Replace the provider's processors with ``change(current)``; whether it could.

    Done under the SDK's own lock, so that a concurrent ``add_span_processor`` is not
    lost.
    """
    multi = getattr(provider, "_active_span_processor", None)
    lock = getattr(multi, "_lock", None)
    if multi is None or lock is None or processors(provider) is None:
        return False
    with lock:
        multi._span_processors = change(multi._span_processors)
    return True


def raw_attributes(span: ReadableSpan) -> Mapping[str, Any] | None:
    """The span's attributes as a plain dict where the SDK keeps one.

    ``span.attributes`` is a read-only proxy over ``BoundedAttributes``, whose every
    missing key costs a raised ``KeyError``; classification looks up a dozen keys.
    """
    raw = getattr(getattr(span, "_attributes", None), "_dict", None)
    return raw if isinstance(raw, dict) else span.attributes


def on_ending_hook(processor: SpanProcessor) -> Callable[[Span], None] | None:
    """The processor's ``_on_ending`` hook (the SDK calls it before ``on_end``)."""
    hook = getattr(processor, "_on_ending", None)
    return hook if callable(hook) else None


def _no_hook(span: Span) -> None:
    """A span ending, for a processor with no ``_on_ending`` hook of its own."""


def forward_start_and_ending(wrapper: SpanProcessor, downstream: SpanProcessor) -> None:
    """Make ``wrapper``'s ``on_start`` and ``_on_ending`` those of ``downstream``.

    For a processor that wraps another and does nothing of its own when a span starts
    or is ending: the SDK calls both for every span, and a forwarding frame costs about
    0.1 µs each. (The instance attributes shadow the class's methods.)
    """
    wrapper.on_start = downstream.on_start  # type: ignore[method-assign]
    wrapper._on_ending = on_ending_hook(downstream) or _no_hook  # type: ignore[method-assign,assignment]


def problems() -> list[str]:
    """What of the above the installed SDK no longer has (empty: all there)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    out: list[str] = []
    provider = TracerProvider()
    multi = getattr(provider, "_active_span_processor", None)
    if multi is None:
        out.append("TracerProvider._active_span_processor is gone")
    elif not isinstance(getattr(multi, "_span_processors", None), tuple):
        out.append("SynchronousMultiSpanProcessor._span_processors is not a tuple")
    elif not hasattr(getattr(multi, "_lock", None), "__enter__"):
        out.append("SynchronousMultiSpanProcessor._lock is not a lock")
    if not callable(getattr(SpanProcessor, "_on_ending", None)):
        out.append("SpanProcessor._on_ending is gone")
    memory = InMemorySpanExporter()
    simple = SimpleSpanProcessor(memory)
    ended: list[Span] = []

    class _Probe(SpanProcessor):
        def _on_ending(self, span: Span) -> None:
            ended.append(span)

    try:
        provider.add_span_processor(_Probe())
        provider.add_span_processor(simple)
        if (processors(provider) or ())[-1:] != (simple,):
            out.append("add_span_processor no longer appends to _span_processors")
        with provider.get_tracer("sdk-compat").start_as_current_span("probe") as span:
            span.set_attribute("probe", 1)
    except Exception as exc:  # the SDK changed under the accesses above
        out.append(f"a span through the SDK failed: {exc!r}")
    if not ended:
        out.append("the SDK no longer calls SpanProcessor._on_ending")
    finished = memory.get_finished_spans()
    raw = getattr(getattr(finished[0], "_attributes", None), "_dict", None) if finished else None
    if not isinstance(raw, dict) or raw.get("probe") != 1:
        out.append("ReadableSpan._attributes._dict is not the attributes' dict")
    if not callable(getattr(_OTelSDKConfigurator, "_configure", None)):
        out.append("_OTelSDKConfigurator._configure is gone")
    return out
