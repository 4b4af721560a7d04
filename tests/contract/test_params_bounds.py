"""Every knob of Params: below, at and above its bounds; errors name field, value and range."""

from __future__ import annotations

from typing import Any

import pytest

from otel_adaprof.errors import ContractError
from otel_adaprof.params import BOUNDS, MAX_OPERATION_NAME, MAX_OPERATION_RULES, Params


def _nested(path: str, value: Any) -> dict[str, Any]:
    head, _, tail = path.partition(".")
    return {head: _nested(tail, value) if tail else value}


# (field path, below, lowest, highest, above)
NUMERIC_KNOBS = [
    ("sampling_interval_ms", -1, 1, 1000, 1001),
    ("stack_depth", 0, 1, 128, 129),
    ("trace_ratio", -0.01, 0.0, 1.0, 1.01),
    ("marker_trigger.min_duration_ms", -1.0, 0.0, 600_000.0, 600_001.0),
    ("marker_trigger.latency_percentile", 49.9, 50.0, 99.9, 99.95),
]


@pytest.mark.parametrize(("path", "below", "lo", "hi", "above"), NUMERIC_KNOBS)
def test_numeric_knob_accepts_its_bounds(path: str, below: Any, lo: Any, hi: Any, above: Any):
    for value in (lo, hi):
        params = Params.parse(_nested(path, value))
        got: Any = params
        for part in path.split("."):
            got = getattr(got, part)
        assert got == value


@pytest.mark.parametrize(("path", "below", "lo", "hi", "above"), NUMERIC_KNOBS)
def test_numeric_knob_rejects_outside_with_field_value_and_range(
    path: str, below: Any, lo: Any, hi: Any, above: Any
):
    bound = BOUNDS[path]
    for value in (below, above):
        with pytest.raises(ContractError) as info:
            Params.parse(_nested(path, value))
        message = str(info.value)
        assert info.value.field == path
        assert message.startswith(f"{path}: ")
        assert repr(value) in message or str(value) in message
        assert f"[{bound.lo}, {bound.hi}]" in message


def test_sampling_interval_zero_turns_profiler_off():
    params = Params.parse({"sampling_interval_ms": 0})
    assert not params.profiling_enabled
    assert params.rate_hz == 0
    assert "or 0 to turn profiling off" in _error({"sampling_interval_ms": 2000})


def test_rate_follows_interval():
    assert Params(sampling_interval_ms=10).rate_hz == 100
    assert Params(sampling_interval_ms=1).rate_hz == 1000
    assert Params(sampling_interval_ms=1000).rate_hz == 1


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ContractError) as info:
        Params.parse(data)
    return str(info.value)


def test_operation_ratios_bounds():
    ok = Params.parse({"operation_ratios": {"GET /a": 0.0, "GET /b": 1.0}})
    assert ok.ratio_for("GET /a") == 0.0
    assert ok.ratio_for("GET /other") == ok.trace_ratio
    msg = _error({"operation_ratios": {"GET /a": 1.5}})
    assert msg.startswith("operation_ratios: ") and "'GET /a'" in msg and "1.5" in msg
    too_many = {f"op{i}": 0.5 for i in range(MAX_OPERATION_RULES + 1)}
    assert f"at most {MAX_OPERATION_RULES}" in _error({"operation_ratios": too_many})
    at_limit = {f"op{i}": 0.5 for i in range(MAX_OPERATION_RULES)}
    assert len(Params.parse({"operation_ratios": at_limit}).operation_ratios) == MAX_OPERATION_RULES
    long_name = "x" * (MAX_OPERATION_NAME + 1)
    assert f"1 to {MAX_OPERATION_NAME} characters" in _error({"operation_ratios": {long_name: 0.5}})
    assert "characters" in _error({"operation_ratios": {"": 0.5}})


def test_span_filters_vocabulary():
    params = Params.parse({"span_filters": {"categories": ["db", "http"], "errors_only": True}})
    assert params.to_json()["span_filters"] == {"categories": ["db", "http"], "errors_only": True}
    msg = _error({"span_filters": {"categories": ["db", "sql"]}})
    assert msg.startswith("span_filters.categories: ") and "'sql'" in msg and "messaging" in msg


def test_unknown_fields_are_rejected_by_name():
    assert _error({"sampling_rate": 5}) == "sampling_rate: unknown field"
    assert _error({"marker_trigger": {"p99": 1}}) == "marker_trigger.p99: unknown field"


def test_wrong_types_name_field_and_value():
    msg = _error({"stack_depth": "deep"})
    assert msg.startswith("stack_depth: ") and "'deep'" in msg
    assert _error({"span_filters": 3}).startswith("span_filters: ")


def test_several_problems_are_all_reported():
    with pytest.raises(ContractError) as info:
        Params.parse({"stack_depth": 0, "trace_ratio": 2})
    fields = [f for f, _ in info.value.problems]
    assert fields == ["stack_depth", "trace_ratio"]


def test_not_a_mapping():
    with pytest.raises(ContractError, match="must be an object, got list"):
        Params.parse([1, 2])  # type: ignore[arg-type]


def test_params_are_immutable_and_with_changes_validates():
    params = Params()
    with pytest.raises(Exception, match="frozen"):
        params.stack_depth = 3  # type: ignore[misc]
    assert params.with_changes(stack_depth=3).stack_depth == 3
    with pytest.raises(ContractError, match="stack_depth"):
        params.with_changes(stack_depth=300)


def test_json_round_trip_is_stable():
    params = Params.parse(
        {
            "sampling_interval_ms": 5,
            "span_filters": {"categories": ["rpc", "db"]},
            "marker_trigger": {"min_duration_ms": 20, "latency_percentile": 95},
            "operation_ratios": {"GET /x": 0.1},
        }
    )
    again = Params.parse(params.to_json())
    assert again == params
    assert again.to_json() == params.to_json()
    assert params.to_json()["span_filters"]["categories"] == ["db", "rpc"]
