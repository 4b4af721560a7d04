"""The packaged cost model: the committed fit of ``bench/cost_model.py``, read once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_adaprof.cost_model import SLOW_SPAN_CORE_SHARE, load_cost_model, parse_cost_fit
from otel_adaprof.errors import ContractError
from otel_adaprof.instrumentation.profiler import slow_spans

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_fit_is_the_measured_one():
    fit = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    raw = json.loads((ROOT / "bench" / "output" / "cost_model.json").read_text())
    assert fit["provisional"] is False
    assert fit["measured_at"] == raw["measured_at"]
    for mode, by in raw["fits"].items():
        for state, coefficients in by.items():
            for name in ("a", "b", "c"):
                assert fit["profiler"][mode][state][name] == coefficients[name]


def test_cost_grows_with_rate_and_threads_and_wall_costs_more():
    model = load_cost_model()
    for mode in ("cpu", "wall"):
        assert model.profiler_cores(0, 20, mode) == 0.0
        assert model.profiler_cores(100, 20, mode) > model.profiler_cores(10, 20, mode)
        assert model.profiler_cores(100, 64, mode) >= model.profiler_cores(100, 4, mode)
        both = model.profiler_cores(100, 20, mode)
        assert both == max(
            model.profiler_cores(100, 20, mode, busy=True),
            model.profiler_cores(100, 20, mode, busy=False),
        )
    assert model.profiler_cores(100, 20, "wall") > 2 * model.profiler_cores(100, 20, "cpu")
    assert model.slow_span_cores(5.0) == pytest.approx(5 * model.slow_span_capture_cpu_s)
    # never above the share of a core the agent holds its captures to
    assert model.slow_span_cores(1e6) == SLOW_SPAN_CORE_SHARE == slow_spans.CORE_SHARE
    with pytest.raises(ValueError, match="mode"):
        model.profiler_cores(100, 20, "gpu")


def test_a_broken_fit_is_refused_naming_the_field():
    good = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    bad = json.loads(json.dumps(good))
    del bad["profiler"]["wall"]["loaded"]["b"]
    with pytest.raises(ContractError, match=r"profiler\.wall\.loaded"):
        parse_cost_fit(bad)
    with pytest.raises(ContractError, match="profiler"):
        parse_cost_fit({"provisional": True})
    assert parse_cost_fit(good).profiler_cores(10, 4) > 0


def test_a_partly_busy_service_costs_along_the_measured_curve():
    fit = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    partial = json.loads((ROOT / "bench" / "output" / "cost_model_partial.json").read_text())
    assert fit["busy_curve"] == partial["busy_curve"]  # the packaged curve is the measured one
    model = load_cost_model()
    idle = model.profiler_cores(100, 20, busy=0.0)
    loaded = model.profiler_cores(100, 20, busy=1.0)
    assert idle == model.profiler_cores(100, 20, busy=False)
    assert loaded == model.profiler_cores(100, 20, busy=True)
    for busy, share in partial["busy_curve"]:  # through every measured point
        assert model.profiler_cores(100, 20, busy=busy) == pytest.approx(
            idle + share * (loaded - idle)
        )
    costs = [model.profiler_cores(100, 20, busy=b / 20) for b in range(21)]
    assert costs == sorted(costs)  # never cheaper as the service gets busier
    assert model.profiler_cores(100, 20, busy=3.0) == pytest.approx(loaded)  # held at 1


def test_a_broken_busy_curve_is_refused_naming_the_field():
    good = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    for curve in (
        [[0.0, 0.0]],
        [[0.5, 0.2], [1.0, 1.0]],
        [[0.0, 0.0], [0.6, 0.5], [0.4, 0.6], [1.0, 1.0]],
        "flat",
    ):
        with pytest.raises(ContractError, match="busy_curve"):
            parse_cost_fit({**good, "busy_curve": curve})
    without = {k: v for k, v in good.items() if k != "busy_curve"}
    straight = parse_cost_fit(without)
    half = straight.profiler_cores(100, 20, busy=0.5)
    assert half == pytest.approx(
        (straight.profiler_cores(100, 20, busy=0.0) + straight.profiler_cores(100, 20, busy=1.0))
        / 2
    )


def test_the_native_fits_are_the_measured_ones_and_priced_for_native_agents_only():
    """``backends.native`` is the fit of the committed ``--compare`` cells (with the
    native profiler); an agent whose backend has no fit of its own is priced as py-spy."""
    fit = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    raw = json.loads((ROOT / "bench" / "output" / "cost_model_native.json").read_text())
    native = fit["backends"]["native"]
    assert native["measured_at"] == raw["measured_at"]
    for mode, by in raw["native_fits"].items():
        for state, coefficients in by.items():
            for name in ("a", "b", "c"):
                assert native["profiler"][mode][state][name] == coefficients[name]
    model = load_cost_model()
    for mode in ("cpu", "wall"):
        for threads in (4, 20, 64):
            cells = [
                c for c in raw["cells"]
                if (c["mode"], c["threads"], c["rate_hz"]) == (mode, threads, 100)
            ]  # fmt: skip
            measured = max(c["native_cores"] for c in cells)
            priced = model.for_backend("native").profiler_cores(100, threads, mode)
            # the fit within 35 % of the larger of its loaded and idle cells, and far
            # under py-spy's price for the same cell
            assert priced == pytest.approx(measured, rel=0.35), (mode, threads)
            assert priced < model.profiler_cores(100, threads, mode) / 4
    assert model.for_backend("in-process") is model and model.for_backend("none") is model


def test_a_broken_backend_fit_is_refused_naming_the_field():
    good = json.loads((ROOT / "otel_adaprof" / "cost_fit.json").read_text())
    bad = json.loads(json.dumps(good))
    del bad["backends"]["native"]["profiler"]["cpu"]["idle"]["a"]
    with pytest.raises(ContractError, match=r"backends\.native\.profiler\.cpu\.idle"):
        parse_cost_fit(bad)
    bad["backends"] = {"native": {}}
    with pytest.raises(ContractError, match=r"backends\.native\.profiler"):
        parse_cost_fit(bad)
