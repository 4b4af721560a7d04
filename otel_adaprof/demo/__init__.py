"""The demo workload: a real HTTP service with known CPU ground truth, and its load.

Usage::

    # terminal 1: the service (add ``opentelemetry-instrument`` in front for spans)
    python -m otel_adaprof.demo.service --port 8000
    # terminal 2: open-loop load with phases (steady → hot path → load change → gone)
    python -m otel_adaprof.demo.loadgen --port 8000 --duration 60

Modules: :mod:`~otel_adaprof.demo.workload` (the named CPU functions),
:mod:`~otel_adaprof.demo.phases` (the phase schedule),
:mod:`~otel_adaprof.demo.ground_truth` (function CPU shares per phase, by construction),
:mod:`~otel_adaprof.demo.service` (the WSGI service), :mod:`~otel_adaprof.demo.loadgen`,
:mod:`~otel_adaprof.demo.span_sink` (a local OTLP/HTTP receiver writing JSON lines),
:mod:`~otel_adaprof.demo.report` (the HTML report).
"""
