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

How a span flows: the sampler (:mod:`.sampler`) keeps it or not; the marker processor
(:mod:`.markers`) decides whether it is a marker; the profiler (:mod:`.profiler`)
fills the sample store (:mod:`.samples`); the span join (:mod:`.span_join`) holds a
marker until its samples are in and attaches them (:mod:`.span_samples`); the SDK's
batch processor and OTLP exporter send it. The observer (:mod:`.observer`) and the
poller (:mod:`.poller`) close the loop with the controller. Settings: :mod:`.settings`;
docs/agent.md has all of it.
"""
