"""Spans with samples leave over OTLP/gRPC too, and the agent attaches to a provider that
another configurator (or the application) built."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.support.instrumented import InstrumentedService

pytestmark = pytest.mark.slow


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list = []

    def Export(self, request, context):
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                self.spans.extend(ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def _samples(span) -> int:
    """The span's ``adaprof.sample_count`` (0 without one)."""
    return max(
        (a.value.int_value for a in span.attributes if a.key == "adaprof.sample_count"),
        default=0,
    )


def test_otlp_grpc_export_carries_samples(tmp_path):
    receiver = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        env = {"ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 10})}
        with InstrumentedService(
            tmp_path, f"http://127.0.0.1:{port}", protocol="grpc", env=env
        ) as svc:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                assert svc.get("/burn")[0] == 200
            # wait for a span with several samples (60 ms at 10 ms: about 6): a span whose
            # one or two samples fell on its first or last lines (the SDK setting its
            # attributes) says nothing of its body
            deadline = time.monotonic() + 15
            sampled: list = []
            while time.monotonic() < deadline and max(map(_samples, sampled), default=0) < 3:
                time.sleep(0.5)
                sampled = [s for s in receiver.spans if s.name == "burn" and _samples(s) > 0]
            assert sampled, svc.log()[-2000:]
            richest = max(sampled, key=_samples)
            assert _samples(richest) >= 3, [_samples(s) for s in sampled]
            top = {a.key: a.value.string_value for a in richest.attributes}
            assert "burn_cpu_hotspot" in top["adaprof.top_frame"], [
                (_samples(s), {a.key: a.value.string_value for a in s.attributes}
                 .get("adaprof.top_frame")) for s in sampled
            ]  # fmt: skip
    finally:
        server.stop(0)


ATTACH = textwrap.dedent(
    """
    import time, threading
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from otel_adaprof.instrumentation.distro import AdaprofInstrumentor

    # what another configurator (opentelemetry-distro's) leaves behind
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    AdaprofInstrumentor().instrument()  # what opentelemetry-instrument then loads

    def burn_cpu_hotspot():
        end = time.thread_time() + 0.08
        while time.thread_time() < end:
            pass

    tracer = trace.get_tracer("attach")
    for _ in range(30):
        with tracer.start_as_current_span("burn"):
            burn_cpu_hotspot()
    # the span join holds each span in front of export until its samples are in: all 30
    # exported, nothing changes any more (at most 3.5 s)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline and len(
        [s for s in memory.get_finished_spans() if s.name == "burn"]
    ) < 30:
        time.sleep(0.05)
    provider.force_flush()
    spans = [s for s in memory.get_finished_spans() if s.name == "burn"]
    print(sum(1 for s in spans if s.attributes.get("adaprof.sample_count", 0) > 0), len(spans),
          max((s.attributes.get("adaprof.top_frame", "") for s in spans), key=len))
    """
)


# Timing on a shared 2-core machine: 30 spans of 80 ms while py-spy starts; on main
# (27d28cd) it failed 1 of 4 alone (5 of 30 spans sampled) and once in session 19's
# suite run. A rerun, the bound unchanged.
@pytest.mark.flaky(reruns=2)
def test_attaches_to_a_provider_someone_else_configured(tmp_path):
    env = {"ADAPROF_PARAMS": json.dumps({"sampling_interval_ms": 10}),
           "ADAPROF_PROFILE_SEGMENT_S": "1", "PATH": "/usr/bin:/bin"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", ATTACH], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with_samples, total, top = done.stdout.split(maxsplit=2)
    assert int(total) == 30 and int(with_samples) >= 10, done.stdout
    assert "burn_cpu_hotspot" in top
