"""A local OTLP/HTTP trace receiver that writes every span as one JSON line.

``adaprof demo`` points the service's OTLP exporter here when no ``--otlp-endpoint`` is
given, so the spans (with their ``adaprof.*`` samples) end up in a file next to the
report. It accepts ``POST /v1/traces`` with ``application/x-protobuf`` or
``application/json`` bodies, as the OTLP/HTTP specification allows.

Usage::

    >>> from otel_adaprof.demo.span_sink import SpanSink
    >>> sink = SpanSink("/tmp/spans.jsonl").start()        # doctest: +SKIP
    >>> sink.endpoint                                       # doctest: +SKIP
    'http://127.0.0.1:43117'
    >>> sink.stop(); sink.spans_written                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

#: Largest request body accepted (bytes).
MAX_BODY_BYTES = 32 * 1024 * 1024


def flatten(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """One dict per span, with its service name and scope (OTLP JSON field names)."""
    out: list[dict[str, Any]] = []
    for rs in request.resource_spans:
        service = ""
        for attr in rs.resource.attributes:
            if attr.key == "service.name":
                service = attr.value.string_value
        for ss in rs.scope_spans:
            for span in ss.spans:
                row = MessageToDict(span)
                row["service"] = service
                row["scope"] = ss.scope.name
                out.append(row)
    return out


class SpanSink:
    """OTLP/HTTP receiver on 127.0.0.1 appending spans to ``path`` as JSON lines."""

    def __init__(self, path: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = Path(path)
        self.spans_written = 0
        self.requests = 0
        self.bytes_received = 0
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/traces":
                    self.send_error(404, "only /v1/traces is served")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.send_error(413, f"body over {MAX_BODY_BYTES} bytes")
                    return
                body = self.rfile.read(length)
                request = ExportTraceServiceRequest()
                try:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        ParseDict(json.loads(body), request)
                    else:
                        request.ParseFromString(body)
                except Exception as exc:  # any undecodable body is the client's error
                    self.send_error(400, f"undecodable OTLP body: {exc}")
                    return
                sink.write(flatten(request), len(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        """Base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (http/protobuf)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write(self, spans: list[dict[str, Any]], nbytes: int) -> None:
        """Append decoded spans (thread-safe)."""
        with self._lock:
            self.requests += 1
            self.bytes_received += nbytes
            for span in spans:
                self._file.write(json.dumps(span, separators=(",", ":")) + "\n")
            self._file.flush()
            self.spans_written += len(spans)

    def start(self) -> SpanSink:
        """Serve in a daemon thread; returns ``self``."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the file."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._file.close()
