"""A small instrumented HTTP service for the agent tests (run as a subprocess).

``GET /burn`` spends ~60 ms of CPU in :func:`burn_cpu_hotspot` inside an internal span;
``GET /query`` runs a SQLite query (a ``db`` span from the sqlite3 instrumentation);
``GET /mix?ms=16`` spends 8 + 4 + 4 ms of CPU in the demo's ``parse_catalog``,
``price_items`` and ``render_invoice`` (shares 0.5 / 0.25 / 0.25 by construction) and
answers the wall seconds each took (more than its CPU time on a busy machine);
``GET /healthz`` answers ``ok``. Every request runs on a thread of its own (the
standard library's ``ThreadingMixIn``, as ``flask run --with-threads`` does). Server
spans come from the WSGI middleware. Prints
``listening on http://127.0.0.1:PORT`` when ready; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import json
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

from otel_adaprof.demo import workload

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
    elif path == "/mix":
        walls = {}
        with tracer.start_as_current_span("mix"):
            total = float(environ.get("QUERY_STRING", "").partition("ms=")[2] or 16.0)
            for work, share in ((workload.parse_catalog, 0.5), (workload.price_items, 0.25),
                                (workload.render_invoice, 0.25)):  # fmt: skip
                ms = total * share
                t0 = time.perf_counter()
                work(ms)
                walls[work.__name__] = time.perf_counter() - t0
        body = json.dumps(walls).encode()
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
