"""``otel_adaprof.configure()``: the agent for services that set up OpenTelemetry in code.

Either let it build the tracer provider (OTLP exporter from the standard ``OTEL_*``
variables, the remote-controlled sampler, the agent's processors) and set it as the
global one::

    import otel_adaprof
    otel_adaprof.configure(service_name="shop", controller_url="http://127.0.0.1:8080")

or attach the agent to a provider you built yourself (its export processors are put
behind the span join)::

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    otel_adaprof.configure(tracer_provider=provider)

Arguments left out come from the ``ADAPROF_*`` variables (docs/agent.md). It is
idempotent: a second call returns the same agent.

    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from otel_adaprof.instrumentation.settings import AgentSettings
    >>> agent = configure(tracer_provider=TracerProvider(),
    ...                   settings=AgentSettings(profiler="off"), start=False)
    >>> agent.attached
    True
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from otel_adaprof.instrumentation.agent import Agent
from otel_adaprof.instrumentation.runtime import get_agent
from otel_adaprof.instrumentation.settings import AgentSettings
from otel_adaprof.instrumentation.spans.sampler import AdaprofSampler
from otel_adaprof.params import Params


def _default_exporter() -> SpanExporter:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def configure(
    *,
    tracer_provider: TracerProvider | None = None,
    service_name: str | None = None,
    controller_url: str | None = None,
    exporter: SpanExporter | None = None,
    params: Params | dict[str, Any] | None = None,
    settings: AgentSettings | None = None,
    start: bool = True,
) -> Agent:
    """Set up (or attach) the agent; returns it.

    ``params`` are the local params (a :class:`~otel_adaprof.params.Params` or a dict
    validated as one) used until the controller answers, or always without one.
    """
    base = settings or AgentSettings.from_env()
    if controller_url is not None:
        base = dataclasses.replace(base, controller_url=controller_url.rstrip("/"))
    agent = get_agent(base)
    if base.disabled:  # ADAPROF_DISABLED: OpenTelemetry as without the agent
        if tracer_provider is None:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            attrs = {"service.name": service_name} if service_name else {}
            tracer_provider = TracerProvider(resource=Resource.create(attrs))
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter or _default_exporter()))
            trace.set_tracer_provider(tracer_provider)
        return agent
    if service_name:
        agent.name_service(service_name)
    if params is not None:
        agent.apply_local(params if isinstance(params, Params) else Params.parse(params))
    if tracer_provider is None and not agent.attached:
        attrs = {"service.name": service_name} if service_name else {}
        tracer_provider = TracerProvider(
            resource=Resource.create(attrs), sampler=AdaprofSampler(agent.live)
        )
        tracer_provider.add_span_processor(agent.marker_processor)
        tracer_provider.add_span_processor(agent.export_processor(exporter or _default_exporter()))
        agent.fuse(tracer_provider)
        agent.attached = True
        agent.provider = tracer_provider
        trace.set_tracer_provider(tracer_provider)
        name = tracer_provider.resource.attributes.get("service.name")
        if name and not service_name:
            agent.name_service(str(name))
    elif tracer_provider is not None:
        agent.attach(tracer_provider)
    if start:
        agent.start()
    return agent
