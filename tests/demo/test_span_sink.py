"""The local OTLP/HTTP span sink decodes what the real OTLP exporter sends."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from otel_adaprof.demo.span_sink import SpanSink


def test_real_exporter_spans_land_as_json_lines(tmp_path):
    sink = SpanSink(tmp_path / "spans.jsonl").start()
    try:
        exporter = OTLPSpanExporter(endpoint=sink.endpoint + "/v1/traces", timeout=5)
        provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
        results = []

        class Recording(SimpleSpanProcessor):
            def on_end(self, span):
                results.append(exporter.export([span]))

        provider.add_span_processor(Recording(exporter))
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("checkout") as span:
            span.set_attribute("adaprof.samples", 3)
        provider.shutdown()
        assert results == [SpanExportResult.SUCCESS]
        rows = [json.loads(line) for line in (tmp_path / "spans.jsonl").read_text().splitlines()]
        assert len(rows) == 1 and sink.spans_written == 1 and sink.bytes_received > 0
        assert rows[0]["name"] == "checkout" and rows[0]["service"] == "shop"
        assert rows[0]["attributes"][0]["key"] == "adaprof.samples"
        url = sink.endpoint + "/v1/traces"
        headers = {"Content-Type": "application/x-protobuf"}
        req = urllib.request.Request(url, data=b"\xff\x00garbage", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 400
    finally:
        sink.stop()
