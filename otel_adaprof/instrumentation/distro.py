"""Zero-code activation: the entry points ``opentelemetry-instrument`` loads.

========================================  ===========================================
``opentelemetry_distro: adaprof``         :class:`AdaprofDistro` — defaults for the
                                          ``OTEL_*`` variables the user left unset
``opentelemetry_configurator: adaprof``   :class:`AdaprofConfigurator` — the SDK's own
                                          set-up, plus the marker processor and the
                                          span join in front of every exporter
``opentelemetry_instrumentor: adaprof``   :class:`AdaprofInstrumentor` — attaches the
                                          agent when another configurator (e.g.
                                          ``opentelemetry-distro``'s) set up the SDK
``opentelemetry_traces_sampler: adaprof`` ``OTEL_TRACES_SAMPLER=adaprof``
========================================  ===========================================

With ``opentelemetry-distro`` installed too, ``opentelemetry-instrument`` uses the
first configurator it finds; either way the agent ends up attached. Set
``OTEL_PYTHON_CONFIGURATOR=adaprof`` and ``OTEL_PYTHON_DISTRO=adaprof`` to choose ours
explicitly (docs/agent.md).

    >>> AdaprofInstrumentor().instrumentation_dependencies()
    ()
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from otel_adaprof.instrumentation.runtime import get_agent
from otel_adaprof.instrumentation.sdk_compat import SDKConfigurator

log = logging.getLogger("otel_adaprof.agent")

#: What :class:`AdaprofDistro` sets when the user has not: traces over OTLP, the
#: remote-controlled sampler, no metrics or logs exporter (Jaeger and Tempo take traces).
DISTRO_DEFAULTS: dict[str, str] = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_TRACES_SAMPLER": "adaprof",
}


def _disabled() -> bool:
    return os.environ.get("ADAPROF_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")


class AdaprofDistro(BaseDistro):  # type: ignore[misc]
    """Sets :data:`DISTRO_DEFAULTS` for the ``OTEL_*`` variables that are unset."""

    def _configure(self, **kwargs: Any) -> None:
        if _disabled():
            return
        for key, value in DISTRO_DEFAULTS.items():
            os.environ.setdefault(key, value)


class AdaprofConfigurator(SDKConfigurator):
    """The SDK's default configuration with the agent's processors added."""

    def _configure(self, **kwargs: Any) -> None:
        if _disabled():
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            return
        try:
            agent = get_agent()
        except Exception:  # the service comes first: plain OpenTelemetry without the agent
            log.exception("otel-adaprof: the agent could not start; tracing goes on without it")
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            return
        kwargs["span_processors"] = [*kwargs.get("span_processors", []), agent.marker_processor]
        kwargs.setdefault("export_span_processor", agent.export_processor)
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            name = provider.resource.attributes.get("service.name")
            agent.name_service(str(name) if name else None, override=False)
            agent.provider = provider
            agent.fuse(provider)
        agent.attached = True
        agent.start()


class AdaprofInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Attaches the agent to the global tracer provider, whoever configured it.

    Does nothing when :class:`AdaprofConfigurator` already did. ``tracer_provider``
    may be passed, as with every instrumentor.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        if _disabled():
            return
        agent = get_agent()
        if agent.attached:
            agent.start()
            return
        provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            log.warning(
                "otel-adaprof: no OpenTelemetry SDK tracer provider is configured, so there "
                "are no spans to profile; run under opentelemetry-instrument with "
                "OTEL_PYTHON_CONFIGURATOR=adaprof, or call otel_adaprof.configure()"
            )
            return
        agent.attach(provider)
        agent.start()

    def _uninstrument(self, **kwargs: Any) -> None:
        """Undo what attaching did: threads stopped, processors out, sampler back."""
        get_agent().detach()
