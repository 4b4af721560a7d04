"""A span exporter wrapper that counts what leaves: spans, estimated bytes, failures.

Wraps the exporter the SDK builds from ``OTEL_TRACES_EXPORTER`` (OTLP over
http/protobuf or gRPC, or any other); it runs on the export thread, never on the
application's. The byte figure is an estimate of the encoded size (names, ids,
attributes and events), close enough to compare windows.

    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    >>> exporter = MeteredSpanExporter(InMemorySpanExporter())
    >>> exporter.export([]).name
    'SUCCESS'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

#: Fixed bytes per span: ids, times, kind, status and framing.
SPAN_OVERHEAD_BYTES = 64


def _value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (tuple, list)):
        return sum(_value_bytes(v) + 2 for v in value)
    return 8


def estimate_span_bytes(span: ReadableSpan) -> int:
    """Approximate OTLP size of one span.

    >>> estimate_span_bytes(ReadableSpan(name="GET /a", attributes={"k": "vv"}))
    75
    """
    size = SPAN_OVERHEAD_BYTES + len(span.name)
    for key, value in (span.attributes or {}).items():
        size += len(key) + 2 + _value_bytes(value)
    for event in span.events:
        size += 16 + len(event.name)
        for key, value in (event.attributes or {}).items():
            size += len(key) + 2 + _value_bytes(value)
    return size


class MeteredSpanExporter(SpanExporter):
    """Delegates to ``inner``; counts spans, bytes and failed exports."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.spans = 0
        self.bytes = 0
        self.failures = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter must not raise into the batch worker
            self.failures += 1
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.spans += len(spans)
            self.bytes += sum(estimate_span_bytes(s) for s in spans)
        else:
            self.failures += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))
