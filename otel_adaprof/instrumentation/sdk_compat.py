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
``ReadableSpan._context``, ``._parent``,        what the marker processor reads of
``._start_time``, ``._end_time``, ``._name``,   every ending span, in one C call
``._kind``; ``SpanContext[1]``
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

import dis
import operator
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
    "span_context_of",
    "span_fields",
    "span_id_in",
    "starts_nothing",
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


#: What :func:`span_fields` returns: context, parent, start and end (ns), name and kind.
SpanFields = tuple[Any, Any, "int | None", "int | None", str, Any]
_PUBLIC_FIELDS = ("context", "parent", "start_time", "end_time", "name", "kind")
_PRIVATE_FIELDS = tuple(f"_{name}" for name in _PUBLIC_FIELDS)


def _span_fields_getter() -> tuple[Callable[[ReadableSpan], SpanFields], bool]:
    """The attributes behind the public properties, if they still are what those return
    (and whether they are: else the properties).

    Six property calls cost the span path about 0.3 µs a span; one ``attrgetter``
    of the attributes behind them is a single C call.
    """
    from opentelemetry.trace import SpanContext, SpanKind

    public = operator.attrgetter(*_PUBLIC_FIELDS)
    fast = operator.attrgetter(*_PRIVATE_FIELDS)
    context = SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=False)
    parent = SpanContext(trace_id=0x1F, span_id=0x3F, is_remote=True)
    kind = SpanKind.CONSUMER
    probe = ReadableSpan(
        name="probe", context=context, parent=parent, start_time=5, end_time=7, kind=kind
    )
    try:
        same = fast(probe) == public(probe) == (context, parent, 5, 7, "probe", kind)
    except AttributeError:
        same = False
    return (fast if same else public), same


def _span_id_getter() -> tuple[Callable[[Any], int], bool]:
    """``itemgetter(1)`` if a ``SpanContext`` (a tuple) still keeps its span id there."""
    from opentelemetry.trace import SpanContext

    probe = SpanContext(trace_id=0x1F, span_id=0x2F, is_remote=False)
    fast = operator.itemgetter(1)
    same = fast(probe) == probe.span_id == 0x2F
    return (fast if same else operator.attrgetter("span_id")), same


#: ``span_id_in(context)``: ``context.span_id`` of a ``SpanContext`` in one C call (the
#: property is a frame of Python: 0.1 µs on a path that reads it twice per span).
#:
#:     >>> from opentelemetry.trace import SpanContext
#:     >>> span_id_in(SpanContext(trace_id=1, span_id=42, is_remote=False))
#:     42
span_id_in, SPAN_ID_INDEXED = _span_id_getter()


#: ``span_fields(span)``: ``(span.context, span.parent, span.start_time, span.end_time,
#: span.name, span.kind)`` of an SDK span, read in one call.
#:
#:     >>> from opentelemetry.sdk.trace import TracerProvider
#:     >>> with TracerProvider().get_tracer("t").start_as_current_span("work") as span:
#:     ...     pass
#:     >>> span_fields(span)[4], span_fields(span)[0] is span.context
#:     ('work', True)
span_fields, SPAN_FIELDS_PRIVATE = _span_fields_getter()
#: ``span_context_of(span)``: ``span.context``, in one C call (as :data:`span_fields`).
span_context_of: Callable[[ReadableSpan], Any] = operator.attrgetter(
    "_context" if SPAN_FIELDS_PRIVATE else "context"
)


#: What a function with no body runs (``pass``, or only a docstring): CPython 3.11, 3.12+.
_NO_BODY = ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


def starts_nothing(processor: SpanProcessor) -> bool:
    """Whether the processor's ``on_start`` has no body (the SDK's base, batch and simple
    processors): a caller that stands in for it need not call it.

    Judged by its bytecode (only ``return None``), so an ``on_start`` that gains a body
    in a later release, or a subclass's, is called as it should be.

        >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        >>> starts_nothing(SimpleSpanProcessor(None)), starts_nothing(SpanProcessor())
        (True, True)
    """
    start = getattr(type(processor), "on_start", None)
    code = getattr(start, "__code__", None)
    if code is None:
        return False
    ran = [
        (ins.opname, ins.argval)
        for ins in dis.get_instructions(code)
        if ins.opname not in ("RESUME", "NOP", "CACHE")
    ]
    return ran in _NO_BODY


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
    last = finished[0] if finished else None
    public = tuple(getattr(last, name) for name in _PUBLIC_FIELDS) if last else None
    if not SPAN_FIELDS_PRIVATE or (last is not None and span_fields(last) != public):
        out.append("ReadableSpan's _context, _parent, _start_time, _end_time, _name or _kind moved")
    if not SPAN_ID_INDEXED or (
        last is not None and span_id_in(last.context) != last.context.span_id
    ):
        out.append("SpanContext no longer keeps the span id at index 1")
    if not callable(getattr(_OTelSDKConfigurator, "_configure", None)):
        out.append("_OTelSDKConfigurator._configure is gone")
    return out
