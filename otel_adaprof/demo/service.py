"""The demo service: a threaded WSGI app with CPU work, SQLite and a peer HTTP call.

Endpoints (CPU per request from :data:`otel_adaprof.demo.phases.ENDPOINTS`, those of the
shape ``ADAPROF_DEMO_SHAPE`` picks, :data:`otel_adaprof.demo.phases.SHAPES`):

``GET /catalog``    ``parse_catalog`` + a SQLite ``SELECT``
``GET /price``      ``price_items`` + an outbound HTTP call to ``/peer/tax`` (``compute_tax``)
``GET /checkout``   ``render_invoice`` + a SQLite ``INSERT``; plus ``compress_report``
                    while the hot path is on
``GET /peer/tax``   the peer endpoint ``/price`` calls
``GET|POST /control/hot-path?on=1|0``  the hot-path switch (answers its state)
``GET /healthz``    ``ok``

Usage::

    OTEL_SERVICE_NAME=adaprof-demo ADAPROF_CONTROLLER_URL=http://127.0.0.1:8080 \\
        opentelemetry-instrument python -m otel_adaprof.demo.service --port 8000

The app is wrapped in OpenTelemetry's WSGI middleware (server spans); ``sqlite3`` and
``urllib`` are instrumented by ``opentelemetry-instrument``; each named function runs in
an internal span. Without OpenTelemetry installed-and-configured the spans are no-ops.
It prints ``listening on http://HOST:PORT`` once ready (``--port 0`` picks a free port).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sqlite3
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from otel_adaprof.demo import workload
from otel_adaprof.demo.phases import ENDPOINTS, SHAPE

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_tracer = trace.get_tracer("otel_adaprof.demo")
_SPEC = {ep.path: ep for ep in ENDPOINTS}
_PEER_TIMEOUT_S = 5.0
#: Request threads the service keeps (a /price request holds two: its own and the peer's).
DEFAULT_WORKERS = 16
#: Most request threads: beyond the kept ones, extra threads start when none is idle.
MAX_WORKERS = 128
#: Seconds an extra request thread waits for work before it leaves.
EXTRA_WORKER_IDLE_S = 30.0


def _through_layers(layers: int, name: str, cpu_ms: float) -> None:
    """Run the named function in its span under ``layers`` (≥ 1) frames of this
    function, as a framework's middleware and dispatch put frames between a handler and
    its work (the shape's ``layers``: its stacks are that much deeper)."""
    if layers > 1:
        _through_layers(layers - 1, name, cpu_ms)
        return
    with _tracer.start_as_current_span(name):
        workload.FUNCTIONS[name](cpu_ms)


class DemoApp:
    """The WSGI application. ``hot_path`` is the switch; ``db_path`` the SQLite file."""

    def __init__(self, db_path: str, port: int) -> None:
        self.db_path = db_path
        self.port = port
        self.hot_path = threading.Event()
        with sqlite3.connect(db_path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total REAL)")
            if db.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0:
                db.executemany(
                    "INSERT INTO products (name) VALUES (?)", [(f"item-{i}",) for i in range(200)]
                )

    def _run(self, name: str, cpu_ms: float) -> None:
        if SHAPE.layers:  # the shop's stacks stay as they always were
            _through_layers(SHAPE.layers, name, cpu_ms)
            return
        with _tracer.start_as_current_span(name):
            workload.FUNCTIONS[name](cpu_ms)

    def _catalog(self) -> bytes:
        self._run("parse_catalog", _SPEC["/catalog"].cpu_ms["parse_catalog"])
        with sqlite3.connect(self.db_path) as db:
            rows = db.execute("SELECT id, name FROM products ORDER BY id LIMIT 20").fetchall()
        return f"{len(rows)} products\n".encode()

    def _price(self) -> bytes:
        self._run("price_items", _SPEC["/price"].cpu_ms["price_items"])
        url = f"http://127.0.0.1:{self.port}/peer/tax"
        with urllib.request.urlopen(url, timeout=_PEER_TIMEOUT_S) as resp:
            tax = resp.read().decode().strip()
        return f"price ok, tax {tax}\n".encode()

    def _tax(self) -> bytes:
        self._run("compute_tax", _SPEC["/price"].cpu_ms["compute_tax"])
        return b"0.2\n"

    def _checkout(self) -> bytes:
        spec = _SPEC["/checkout"]
        self._run("render_invoice", spec.cpu_ms["render_invoice"])
        if self.hot_path.is_set():
            self._run("compress_report", spec.hot_cpu_ms)
        with sqlite3.connect(self.db_path) as db:
            db.execute("INSERT INTO orders (total) VALUES (?)", (42.0,))
        return b"order placed\n"

    def _control(self, environ: dict[str, Any]) -> bytes:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            query.update(parse_qs(environ["wsgi.input"].read(length).decode()))
        if "on" in query:
            if query["on"][0] in ("1", "true", "on"):
                self.hot_path.set()
            else:
                self.hot_path.clear()
        return b"on\n" if self.hot_path.is_set() else b"off\n"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        routes: dict[str, Callable[[], bytes]] = {
            "/catalog": self._catalog,
            "/price": self._price,
            "/checkout": self._checkout,
            "/peer/tax": self._tax,
            "/control/hot-path": lambda: self._control(environ),
            "/healthz": lambda: b"ok\n",
        }
        handler = routes.get(path)
        if handler is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        try:
            body = handler()
        except Exception as exc:  # a demo endpoint failing must answer, not kill the thread
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [f"error: {exc}\n".encode()]
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]


class PooledWSGIServer(WSGIServer):
    """Long-lived worker threads, as gunicorn's ``gthread`` workers or waitress run.

    ``workers`` threads wait for requests; when a request arrives and none is idle, one
    more starts (up to ``max_workers``), and such extra threads leave after
    ``idle_s`` without work. Growing keeps a ``/price`` request — which holds a worker
    while it waits for its ``/peer/tax`` call to this same server — from starving the
    peer call under overload. Idle workers wait in ``Queue.get``, which the agent
    counts as waiting, not CPU.
    """

    request_queue_size = 128

    def __init__(
        self,
        *args: Any,
        workers: int = DEFAULT_WORKERS,
        max_workers: int = MAX_WORKERS,
        idle_s: float = EXTRA_WORKER_IDLE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._requests: queue.Queue[tuple[Any, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._core = max(1, workers)
        self._max = max(self._core, max_workers)
        self._idle_s = idle_s
        self._threads = 0
        self._idle = 0
        for _ in range(self._core):
            self._spawn(extra=False)

    def _spawn(self, extra: bool) -> None:
        # under self._lock, or before any worker runs
        self._threads += 1
        self._idle += 1
        name = f"worker-{self._threads}{'-extra' if extra else ''}"
        threading.Thread(target=self._work, args=(extra,), name=name, daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._idle <= self._requests.qsize() and self._threads < self._max:
                self._spawn(extra=True)
        self._requests.put((request, client_address))

    def _work(self, extra: bool) -> None:
        while True:
            try:
                item = self._requests.get(timeout=self._idle_s if extra else None)
            except queue.Empty:
                with self._lock:
                    if self._requests.qsize() == 0:
                        self._threads -= 1
                        self._idle -= 1
                        return
                continue
            if item is None:
                return
            with self._lock:
                self._idle -= 1
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._lock:
                    self._idle += 1

    @property
    def threads(self) -> int:
        """Worker threads now."""
        return self._threads

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._requests.put(None)


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr (the load generator records every request)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(host: str, port: int, db_path: str | None = None, workers: int = DEFAULT_WORKERS) -> None:
    """Run the service until SIGTERM/SIGINT, with ``workers`` request threads."""
    db = db_path or os.path.join(tempfile.mkdtemp(prefix="adaprof-demo-"), "shop.db")
    server = PooledWSGIServer((host, port), QuietHandler, workers=workers)
    app = DemoApp(db, server.server_port)
    server.set_app(OpenTelemetryMiddleware(app))

    def _stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """``python -m otel_adaprof.demo.service [--host H] [--port P] [--db FILE] [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", default=None, help="SQLite file (default: a temp file)")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="request threads kept (default 16; more start when all are busy)",
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.db, args.workers)
    sys.exit(0)


if __name__ == "__main__":
    main()
