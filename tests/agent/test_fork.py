"""A forked child (gunicorn, multiprocessing) gets its own agent: new instance, fresh
threads, its own samples; the parent's profiler goes on undisturbed. With the in-process
sampler and with the native one (a C thread, which a fork does not copy)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.support.native import skip_without_native

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import otel_adaprof
    from otel_adaprof.instrumentation.settings import AgentSettings

    memory = InMemorySpanExporter()
    agent = otel_adaprof.configure(
        service_name="forks", exporter=memory, params={"sampling_interval_ms": 5},
        settings=AgentSettings(profiler=sys.argv[2]))
    tracer = trace.get_tracer("forks")

    def burn_in_child():
        end = time.thread_time() + 0.15
        while time.thread_time() < end:
            pass

    parent_id = agent.instance_id
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:
        with tracer.start_as_current_span("child-work"):
            burn_in_child()
        time.sleep(0.5)
        trace.get_tracer_provider().force_flush()
        spans = [s for s in memory.get_finished_spans() if s.name == "child-work"]
        # the child's window reports read the child's own change signals
        agent.fast_loop.detector.last_change_unix = 123.0
        signals = agent.observer.close_window().change_signals
        out = {
            "signals_last_change": signals.last_change_unix,
            "pid_ok": agent.pid == os.getpid(),
            "backend": agent.profiler.backend,
            "new_instance": agent.instance_id != parent_id,
            "version": agent.live.current.version,
            "threads": sorted(t.name for t in threading.enumerate()
                              if t.name.startswith("adaprof-")),
            "samples": spans[0].attributes.get("adaprof.sample_count", 0) if spans else -1,
            "top": spans[0].attributes.get("adaprof.top_frame", "") if spans else "",
        }
        with open(sys.argv[1], "w") as f:
            json.dump(out, f)
        os._exit(0)
    os.waitpid(pid, 0)
    print(json.dumps({"parent_profiler_alive": agent.profiler._thread.is_alive()}))
    """
)


@pytest.mark.parametrize("profiler", ["in-process", "native"])
def test_forked_child_runs_its_own_agent(tmp_path, profiler):
    if profiler == "native":
        skip_without_native()
    result = tmp_path / "child.json"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(result), profiler],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["parent_profiler_alive"]
    child = json.loads(result.read_text())
    assert child["pid_ok"] and child["new_instance"] and child["version"] == 0
    assert "adaprof-profiler" in child["threads"]
    assert child["samples"] > 0 and "burn_in_child" in child["top"], child
    assert child["signals_last_change"] == 123.0, child
    assert child["backend"] == profiler, child
