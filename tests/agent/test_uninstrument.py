"""``AdaprofInstrumentor().uninstrument()`` undoes what installing did, and
``instrument()`` puts it back; every thread the agent starts is in its registry. Real
SDK, real agent threads, in a child process (the agent is one per process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import json, threading, time
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from otel_adaprof.instrumentation.distro import AdaprofInstrumentor
    from otel_adaprof.instrumentation.runtime import get_agent
    from otel_adaprof.instrumentation.sdk_compat import processors
    from otel_adaprof.instrumentation.spans.sampler import AdaprofSampler, sampler_factory

    memory = InMemorySpanExporter()
    export = SimpleSpanProcessor(memory)
    provider = TracerProvider(resource=Resource.create({"service.name": "undo"}),
                              sampler=sampler_factory("0.0"))  # keeps no root span
    provider.add_span_processor(export)
    trace.set_tracer_provider(provider)
    tracer = provider.get_tracer("undo")

    def agent_threads():
        return sorted(t.name for t in threading.enumerate() if t.name.startswith("adaprof"))

    def one_span():
        memory.clear()
        with tracer.start_as_current_span("work"):
            time.sleep(0.01)
        time.sleep(0.3)
        spans = memory.get_finished_spans()
        return [dict(s.attributes) for s in spans]

    out = {}
    instrumentor = AdaprofInstrumentor()
    instrumentor.instrument()
    time.sleep(0.5)
    agent = get_agent()
    out["installed"] = {
        "processors": [type(p).__name__ for p in processors(provider)],
        "threads": agent_threads(),
        "sampler": type(provider.sampler).__name__,
        "spans": one_span(),  # ratio 0: nothing kept
    }
    instrumentor.uninstrument()
    time.sleep(0.5)
    out["uninstalled"] = {
        "processors": [type(p).__name__ for p in processors(provider)],
        "export_is_original": processors(provider) == (export,),
        "threads": agent_threads(),
        "sampler": type(provider.sampler).__name__,
        "spans": one_span(),  # the SDK's default sampler, no agent attributes
    }
    instrumentor.instrument()
    time.sleep(0.5)
    out["again"] = {
        "processors": [type(p).__name__ for p in processors(provider)],
        "threads": agent_threads(),
        "sampler": type(provider.sampler).__name__,
    }
    agent.apply_local(agent.live.local.with_changes(trace_ratio=1.0))
    out["again"]["spans"] = one_span()
    registered = set(agent.threads.native_ids())
    out["again"]["threads_now"] = agent_threads()
    out["again"]["unregistered"] = sorted(
        t.name for t in threading.enumerate()
        if t.name.startswith("adaprof") and t.native_id not in registered)
    print(json.dumps(out))
    """
)


def test_uninstrument_undoes_install_and_instrument_redoes_it() -> None:
    env = {"ADAPROF_PROFILER": "in-process", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    installed, uninstalled, again = got["installed"], got["uninstalled"], got["again"]
    # the marker processor is folded into the span join (Agent.fuse): one processor
    assert installed["processors"] == ["SpanJoin"]
    assert {"adaprof-profiler", "adaprof-poller"} <= set(installed["threads"])
    assert installed["sampler"] == "AdaprofSampler" and installed["spans"] == []

    assert uninstalled["processors"] == ["SimpleSpanProcessor"]
    assert uninstalled["export_is_original"]
    assert uninstalled["threads"] == []
    assert uninstalled["sampler"] == "ParentBased"
    assert len(uninstalled["spans"]) == 1
    assert not any(k.startswith("adaprof.") for k in uninstalled["spans"][0])

    assert again["processors"] == ["SpanJoin"]
    assert {"adaprof-profiler", "adaprof-poller"} <= set(again["threads"])
    assert again["sampler"] == "AdaprofSampler"
    assert again["spans"] and again["spans"][0].get("adaprof.marker") is True
    # every thread the agent started is in its registry (its CPU is counted as overhead)
    assert "adaprof-span-join" in again["threads_now"]
    assert again["unregistered"] == []
