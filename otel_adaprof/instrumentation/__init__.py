"""The otel-adaprof agent: sampler, marker processor, profiler, span join, observer, poller.

Usage — no code change, with the package installed::

    OTEL_SERVICE_NAME=shop \\
    ADAPROF_CONTROLLER_URL=http://127.0.0.1:8080 \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
        opentelemetry-instrument python app.py

or in code, for services that set up OpenTelemetry themselves::

    import otel_adaprof
    otel_adaprof.configure(service_name="shop", controller_url="http://127.0.0.1:8080")

The folders follow the loop, one step each:

- ``spans/`` — the sampler (:mod:`.spans.sampler`) keeps a span or not; the marker
  processor (:mod:`.spans.markers`) decides whether it is a marker, by category
  (:mod:`.spans.categories`) and per-operation latency (:mod:`.spans.latency`);
- ``profiler/`` — py-spy or the in-process fallback (:mod:`.profiler.supervisor`)
  fills the sample store;
- ``join/`` — the sample store (:mod:`.join.samples`); the span join
  (:mod:`.join.span_join`) holds a marker until its samples are in and attaches them
  (:mod:`.join.span_samples`); the SDK's batch processor and OTLP exporter send it;
- ``observe/`` — the window observer (:mod:`.observe.observer`) and the metered
  exporter (:mod:`.observe.metered_exporter`) measure what happened;
- ``control/`` — the poller (:mod:`.control.poller`) reports each window to the
  controller and applies the live params it answers (:mod:`.control.live_params`).

Shared by all steps: thread identity and liveness, for spans and samples alike, and the
registry of the agent's own threads (:mod:`.threads`); every use of the SDK's internals
(:mod:`.sdk_compat`). Settings: :mod:`.settings`; the process singleton:
:mod:`.runtime`. docs/agent.md has all of it.
"""
