"""Jaeger remote sampling strategies from params, so that services in other languages
(OpenTelemetry's Jaeger remote samplers) follow the same trace ratios.

The answer is proto-JSON as Jaeger serves it: camelCase keys, ``strategyType`` as a
string, ``probabilisticSampling`` always present, ``operationSampling`` when params
have per-operation ratios.

>>> from otel_adaprof.params import Params
>>> s = jaeger_strategy(Params(trace_ratio=0.5, operation_ratios={"GET /": 0.1}))
>>> s["strategyType"], s["probabilisticSampling"]["samplingRate"]
('PROBABILISTIC', 0.5)
>>> s["operationSampling"]["perOperationStrategies"][0]["operation"]
'GET /'
"""

from __future__ import annotations

from typing import Any

from otel_adaprof.params import Params


def jaeger_strategy(params: Params) -> dict[str, Any]:
    """The ``SamplingStrategyResponse`` for params."""
    body: dict[str, Any] = {
        "strategyType": "PROBABILISTIC",
        "probabilisticSampling": {"samplingRate": params.trace_ratio},
    }
    if params.operation_ratios:
        body["operationSampling"] = {
            "defaultSamplingProbability": params.trace_ratio,
            "defaultLowerBoundTracesPerSecond": 0.0,
            "perOperationStrategies": [
                {"operation": name, "probabilisticSampling": {"samplingRate": ratio}}
                for name, ratio in sorted(params.operation_ratios.items())
            ],
        }
    return body
