"""The demo's processes on 127.0.0.1: controller, span sink and instrumented service.

Usage::

    >>> from otel_adaprof.demo.processes import Children
    >>> from otel_adaprof.demo.stack import DemoStack
    >>> with Children() as kids:                                   # doctest: +SKIP
    ...     stack = DemoStack(kids, workdir="/tmp/demo", poll_interval_s=2.0)
    ...     stack.start_controller(); stack.start_sink()
    ...     port = stack.start_service("adaprof-demo")

Each process logs to ``WORKDIR/<name>.log``; the controller keeps its SQLite database
in ``WORKDIR/adaprof.db``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml

from otel_adaprof.demo.controller_client import ControllerClient
from otel_adaprof.demo.phases import SHAPE, SHAPE_ENV
from otel_adaprof.demo.processes import Children, wait_for_line
from otel_adaprof.demo.span_sink import SpanSink
from otel_adaprof.instrumentation.settings import AgentSettings

#: The agent's py-spy run length at 100 Hz (``ADAPROF_PROFILE_SEGMENT_S``, its default).
SEGMENT_S = 2.0
#: The agent's longest py-spy run (``ADAPROF_PROFILE_SEGMENT_MAX_S``, its default): at low
#: rates a run lasts this long, and its samples arrive at its end.
LONGEST_RUN_S = float(AgentSettings().segment_max_s)
#: Seconds the controller and the service get to come up.
STARTUP_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _adaprof_sampler_registered() -> bool:
    """Whether the agent's remote-controlled sampler is installed as ``adaprof``."""
    return any(ep.name == "adaprof" for ep in entry_points(group="opentelemetry_traces_sampler"))


def _python_cmd(module_call: str) -> list[str]:
    return [sys.executable, "-c", module_call]


def instrument_command() -> list[str]:
    """``opentelemetry-instrument`` from this interpreter's environment."""
    sibling = Path(sys.executable).with_name("opentelemetry-instrument")
    if sibling.exists():
        return [str(sibling)]
    found = shutil.which("opentelemetry-instrument")
    if found is None:
        raise FileNotFoundError("opentelemetry-instrument not found (pip install otel-adaprof)")
    return [found]


class DemoStack:
    """Starts and knows the addresses of the demo's processes (stopped by ``children``)."""

    def __init__(
        self,
        children: Children,
        workdir: str | Path,
        poll_interval_s: float = 2.0,
        otlp_endpoint: str | None = None,
    ) -> None:
        self.children = children
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.poll_interval_s = poll_interval_s
        self.otlp_endpoint = otlp_endpoint
        self.controller_url = ""
        self.sink: SpanSink | None = None
        self.spans_path = self.workdir / "spans.jsonl"

    def start_controller(self, extra: dict[str, Any] | None = None) -> ControllerClient:
        """The real ``adaprof controller`` on a free port, with its own config and DB.

        ``extra``: more configuration (e.g. ``default_params``: what it answers an agent
        outside any session)."""
        port = free_port()
        config = {
            "listen": {"host": "127.0.0.1", "port": port},
            "database": {"path": str(self.workdir / "adaprof.db")},
            "agents": {"poll_interval_s": self.poll_interval_s},
            **(extra or {}),
        }
        cfg_path = self.workdir / "controller.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        argv = [
            *_python_cmd("from otel_adaprof.cli import main; main()"),
            "controller",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--db", str(self.workdir / "adaprof.db"),
            "--config", str(cfg_path),
        ]  # fmt: skip
        self.children.start("controller", argv, log=self.workdir / "controller.log")
        self.controller_url = f"http://127.0.0.1:{port}"
        client = ControllerClient(self.controller_url)
        try:
            client.wait_ready(STARTUP_TIMEOUT_S)
        except TimeoutError:
            log = (self.workdir / "controller.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the controller did not start; its log ends:\n{log}") from None
        return client

    def start_sink(self) -> str:
        """The local OTLP/HTTP span sink (unless spans go to ``otlp_endpoint``)."""
        if self.otlp_endpoint:
            return self.otlp_endpoint
        self.sink = SpanSink(self.spans_path).start()
        return self.sink.endpoint

    def service_env(self, service_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment of an instrumented demo service process."""
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("OTEL_", "ADAPROF_")):
                del env[key]  # the caller's settings must not leak into the demo
        env[SHAPE_ENV] = SHAPE.name  # but the service takes the run's shape
        endpoint = self.otlp_endpoint or (self.sink.endpoint if self.sink else "")
        env.update(
            {
                "OTEL_SERVICE_NAME": service_name,
                "OTEL_TRACES_EXPORTER": "otlp" if endpoint else "none",
                "OTEL_METRICS_EXPORTER": "none",
                "OTEL_LOGS_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "1000",
                "ADAPROF_CONTROLLER_URL": self.controller_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if endpoint:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        if _adaprof_sampler_registered():
            # Lets the controller's trace_ratio reach the service's sampler.
            env["OTEL_TRACES_SAMPLER"] = "adaprof"
        env.update(extra or {})
        return env

    def start_service(
        self,
        service_name: str,
        extra_env: dict[str, str] | None = None,
        key: str | None = None,
        cwd: Path | None = None,
    ) -> int:
        """The demo service under ``opentelemetry-instrument`` with the agent; its port.

        ``cwd``: the directory it starts in, whose ``otel_adaprof`` (if any) it runs.
        """
        name = key or f"service-{service_name}"
        argv = [*instrument_command(), sys.executable, "-m", "otel_adaprof.demo.service"]
        argv += ["--port", "0", "--db", str(self.workdir / f"{name}.db")]
        log = self.workdir / f"{name}.log"
        proc = self.children.start(
            name,
            argv,
            env=self.service_env(service_name, extra_env),
            log=log,
            stdout_pipe=True,
            cwd=cwd,
        )
        try:
            line = wait_for_line(proc, "listening on", STARTUP_TIMEOUT_S, log=log)
        except (TimeoutError, RuntimeError) as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"the demo service did not start: {exc}\n{tail}") from None
        return int(line.rsplit(":", 1)[1])

    def stop_sink(self) -> None:
        """Stop the span sink (after the service flushed its spans)."""
        if self.sink is not None:
            self.sink.stop()
