"""A small instrumented HTTP service for the agent tests (run as a subprocess).

``GET /burn`` spends ~60 ms of CPU in :func:`burn_cpu_hotspot` inside an internal span;
``GET /query`` runs a SQLite query (a ``db`` span from the sqlite3 instrumentation);
``GET /healthz`` answers ``ok``. Server spans come from the WSGI middleware. Prints
``listening on http://127.0.0.1:PORT`` when ready; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import tempfile
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

tracer = trace.get_tracer("tests.agent.app")
DB = tempfile.mktemp(suffix=".db")


def burn_cpu_hotspot(ms: float) -> int:
    """Spin on thread CPU time for ``ms`` milliseconds."""
    end = time.thread_time() + ms / 1000.0
    n = 0
    while time.thread_time() < end:
        n += 1
    return n


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/burn":
        with tracer.start_as_current_span("burn"):
            burn_cpu_hotspot(60.0)
        body = b"burnt\n"
    elif path == "/query":
        db = sqlite3.connect(DB)
        try:
            cur = db.cursor()  # cursor calls are what the sqlite3 instrumentation traces
            cur.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
            cur.execute("INSERT INTO t VALUES (1)")
            cur.execute("SELECT COUNT(*) FROM t")
            body = f"{cur.fetchone()[0]}\n".encode()
            db.commit()
        finally:
            db.close()
    elif path == "/healthz":
        body = b"ok\n"
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main() -> None:
    server = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(app), Server, Quiet)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
