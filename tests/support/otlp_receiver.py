"""A real OTLP/HTTP receiver on 127.0.0.1 for spans AND profiles (for tests).

Accepts ``POST /v1/traces`` and ``POST /v1development/profiles`` with protobuf bodies
(gzip'd when ``Content-Encoding: gzip``), decodes them with opentelemetry-proto and
keeps the decoded requests. ``fail_profiles`` makes it answer profiles with an HTTP
error (to test what the agent does then).

Usage::

    with OtlpReceiver() as rx:
        ...  # point OTEL_EXPORTER_OTLP_ENDPOINT at rx.endpoint
        rx.spans(), rx.profiles
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpReceiver:
    """Serves in a daemon thread; ``traces`` and ``profiles`` hold decoded requests."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.profiles: list[ExportProfilesServiceRequest] = []
        self.profile_headers: list[dict[str, str]] = []
        self.fail_profiles: int | None = None
        self.profile_posts = 0
        self._lock = threading.Lock()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.headers.get("Content-Type") != "application/x-protobuf":
                    self._answer(415, b"protobuf only")
                    return
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest.FromString(body)
                    with rx._lock:
                        rx.traces.append(request)
                    self._answer(200, ExportTraceServiceResponse().SerializeToString())
                elif self.path == "/v1development/profiles":
                    with rx._lock:
                        rx.profile_posts += 1
                        if rx.fail_profiles is not None:
                            self._answer(rx.fail_profiles, b"refused by the test")
                            return
                        rx.profiles.append(ExportProfilesServiceRequest.FromString(body))
                        rx.profile_headers.append({k.lower(): v for k, v in self.headers.items()})
                    self._answer(200, ExportProfilesServiceResponse().SerializeToString())
                else:
                    self._answer(404, b"unknown path")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def spans(self) -> list[tuple[Span, dict[str, Any]]]:
        """Every span received so far, with its attributes as plain values."""
        with self._lock:
            requests = list(self.traces)
        out = []
        for request in requests:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        attrs = {}
                        for kv in span.attributes:
                            field = kv.value.WhichOneof("value")
                            attrs[kv.key] = getattr(kv.value, field) if field else None
                        out.append((span, attrs))
        return out

    def profile_requests(self) -> list[ExportProfilesServiceRequest]:
        with self._lock:
            return list(self.profiles)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
