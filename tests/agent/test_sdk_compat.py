"""The SDK internals the agent relies on are where it expects them, and only
``sdk_compat`` touches them: an SDK release that moves one fails here, loudly."""

from __future__ import annotations

import re
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_adaprof
from otel_adaprof.instrumentation import sdk_compat

PACKAGE = Path(otel_adaprof.__file__).resolve().parent
#: Private names of opentelemetry-sdk; only sdk_compat may use them.
PRIVATE = re.compile(
    r"_active_span_processor|\._span_processors|\._attributes\b|\._dict\b|multi\._lock"
    r"|sdk\._configuration|_OTelSDKConfigurator|\._on_ending|getattr\([^)]*\"_on_ending\""
    r"|\._context\b|\._start_time\b|\._end_time\b|\._kind\b|\._parent\b"
)


def test_the_installed_sdk_has_every_internal_the_agent_uses() -> None:
    assert sdk_compat.problems() == []


def test_each_access_works_on_a_real_provider_and_span() -> None:
    memory = InMemorySpanExporter()
    simple = SimpleSpanProcessor(memory)
    provider = TracerProvider()
    provider.add_span_processor(simple)
    assert sdk_compat.processors(provider) == (simple,)
    other = SimpleSpanProcessor(InMemorySpanExporter())
    assert sdk_compat.replace_processors(provider, lambda current: (other, *current))
    assert sdk_compat.processors(provider) == (other, simple)
    with provider.get_tracer("t").start_as_current_span("s", attributes={"a": 1}):
        pass
    span = memory.get_finished_spans()[0]
    raw = sdk_compat.raw_attributes(span)
    assert type(raw) is dict and raw == {"a": 1}
    assert sdk_compat.on_ending_hook(simple) is not None
    # the span path's one-call reads: the private fields, equal to the public properties
    assert sdk_compat.SPAN_FIELDS_PRIVATE and sdk_compat.SPAN_ID_INDEXED
    public = (span.context, span.parent, span.start_time, span.end_time, span.name, span.kind)
    assert sdk_compat.span_fields(span) == public
    assert sdk_compat.span_context_of(span) is span.context
    assert sdk_compat.span_id_in(span.context) == span.context.span_id != 0


def test_starts_nothing_tells_an_empty_on_start_from_one_that_works() -> None:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class Documented(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
            """Only a docstring."""

    class Counting(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
            self.started = getattr(self, "started", 0) + 1

    class Returning(SpanProcessor):
        def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
            return 1

    assert sdk_compat.starts_nothing(SpanProcessor())
    assert sdk_compat.starts_nothing(SimpleSpanProcessor(InMemorySpanExporter()))
    batch = BatchSpanProcessor(InMemorySpanExporter())
    assert sdk_compat.starts_nothing(batch)
    batch.shutdown()
    assert sdk_compat.starts_nothing(Documented())
    assert not sdk_compat.starts_nothing(Counting())
    assert not sdk_compat.starts_nothing(Returning())


def test_no_other_module_touches_sdk_internals() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "sdk_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if PRIVATE.search(line) and not line.lstrip().startswith("def _on_ending("):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []


def test_a_wrapper_forwards_start_and_ending_with_no_frame_of_its_own() -> None:
    from opentelemetry.sdk.trace import SpanProcessor

    calls: list[str] = []

    class Recording(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
            calls.append(f"start {span.name}")

        def _on_ending(self, span) -> None:  # type: ignore[no-untyped-def]
            calls.append(f"ending {span.name}")

    class Wrapper(SpanProcessor):
        def on_start(self, span, parent_context=None) -> None:  # type: ignore[no-untyped-def]
            raise AssertionError("the class's own on_start ran")

        def on_end(self, span) -> None:  # type: ignore[no-untyped-def]
            calls.append(f"end {span.name}")

    recording, wrapper = Recording(), Wrapper()
    sdk_compat.forward_start_and_ending(wrapper, recording)
    assert wrapper.on_start == recording.on_start
    provider = TracerProvider()
    provider.add_span_processor(wrapper)
    with provider.get_tracer("t").start_as_current_span("s"):
        pass
    assert calls == ["start s", "ending s", "end s"]
    # a downstream with no hook of its own: the span still ends, with nothing to call
    sdk_compat.forward_start_and_ending(wrapper, SpanProcessor())
    with provider.get_tracer("t").start_as_current_span("u"):
        pass
    assert calls[-1] == "end u"
