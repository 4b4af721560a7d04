"""Health, metrics, OpenAPI and the Jaeger sampling endpoint of the real controller."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess


def test_health_and_readiness(controller: ControllerProcess):
    assert controller.request("GET", "/healthz") == {"status": "ok"}
    assert controller.request("GET", "/readyz") == {"status": "ready"}


def test_metrics_parse_with_prometheus_client(controller: ControllerProcess):
    controller.request("POST", "/v1/agents/poll", poll_body("a-1"))
    controller.request("POST", "/v1/agents/poll", poll_body("a-1", 1))
    controller.raw("POST", "/v1/agents/poll", b"{}")
    status, body = controller.raw("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["adaprof_polls"].samples[0].value == 2
    decisions = {
        s.labels["kind"]: s.value
        for s in families["adaprof_decisions"].samples
        if s.name == "adaprof_decisions_total"
    }
    assert decisions == {"default": 2}
    errors = {
        s.labels["status"]: s.value
        for s in families["adaprof_http_errors"].samples
        if s.name == "adaprof_http_errors_total"
    }
    assert errors == {"400": 1}
    latency = families["adaprof_http_request_duration_seconds"]
    counts = [
        s
        for s in latency.samples
        if s.name.endswith("_count") and s.labels["route"] == "/v1/agents/poll"
    ]
    assert counts and counts[0].value == 3
    assert "adaprof_sessions_open" in families


def test_openapi_describes_every_route(controller: ControllerProcess):
    doc = controller.request("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.")
    expected = {
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/sessions/{id}/stop",
        "/v1/sessions/{id}/timeline",
        "/v1/sessions/{id}/profile",
        "/v1/agents/poll",
        "/v1/agents",
        "/v1/opamp",
        "/",
        "/page/{name}",
        "/v1/replicas",
        "/sampling",
        "/api/sampling",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    }
    assert set(doc["paths"]) == expected
    assert {"SessionSpec", "PollRequest", "PollResponse", "ErrorResponse", "Params"} <= set(
        doc["components"]["schemas"]
    )


def test_jaeger_sampling_shape(controller: ControllerProcess):
    for path in ("/sampling", "/api/sampling"):
        plain = controller.request("GET", f"{path}?service=other")
        assert plain == {
            "strategyType": "PROBABILISTIC",
            "probabilisticSampling": {"samplingRate": 1.0},
        }
    controller.request(
        "POST",
        "/v1/sessions",
        {
            "service": "shop",
            "mode": "static",
            "initial_params": {
                "trace_ratio": 0.2,
                "operation_ratios": {"GET /slow": 1.0, "GET /": 0.05},
            },
        },
    )
    strategy = controller.request("GET", "/api/sampling?service=shop")
    assert strategy["strategyType"] == "PROBABILISTIC"
    assert strategy["probabilisticSampling"] == {"samplingRate": 0.2}
    ops = strategy["operationSampling"]
    assert ops["defaultSamplingProbability"] == 0.2
    assert ops["perOperationStrategies"] == [
        {"operation": "GET /", "probabilisticSampling": {"samplingRate": 0.05}},
        {"operation": "GET /slow", "probabilisticSampling": {"samplingRate": 1.0}},
    ]
    status, body = controller.raw("GET", "/sampling")
    assert status == 400 and json.loads(body)["field"] == "service"
