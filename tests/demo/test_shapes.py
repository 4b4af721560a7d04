"""The demo service's shapes: the one the policy was tuned on (shop) and one it was not
(ledger), chosen by ``ADAPROF_DEMO_SHAPE`` in every process of a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from otel_adaprof.cli import bench_cmd
from otel_adaprof.demo import loadgen, phases
from otel_adaprof.demo.ground_truth import cpu_ms_per_request
from otel_adaprof.demo.workload import FUNCTIONS, HOT_PATH

#: The hot path's share of the named functions' CPU while it is on, per shape.
HOT_SHARE = {"shop": 0.40, "ledger": 0.15}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ADAPROF_"))}
    return {**env, **extra}


def _shares(endpoints: tuple[phases.Endpoint, ...], hot: bool) -> dict[str, float]:
    ms = cpu_ms_per_request(hot, endpoints)
    return {name: v / sum(ms.values()) for name, v in ms.items()}


@pytest.mark.parametrize("name", sorted(phases.SHAPES))
def test_each_shape_has_a_truth_that_sums_to_one_and_its_own_hot_path_share(name):
    shape = phases.SHAPES[name]
    assert shape.name == name
    assert sum(ep.weight for ep in shape.endpoints) == pytest.approx(1.0)
    for hot in (False, True):
        shares = _shares(shape.endpoints, hot)
        assert set(shares) == set(FUNCTIONS)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares[HOT_PATH] == pytest.approx(HOT_SHARE[name] if hot else 0.0)


def test_the_ledger_differs_from_the_shop_in_mix_hot_path_and_depth():
    shop, ledger = phases.SHAPES["shop"], phases.SHAPES["ledger"]
    assert _shares(shop.endpoints, False) != pytest.approx(_shares(ledger.endpoints, False))
    # the hot path on the rarest endpoint: one request in ten, against one in five
    assert loadgen.endpoint_cycle(ledger.endpoints).count("/checkout") == 1
    assert len(loadgen.endpoint_cycle(ledger.endpoints)) == 10
    assert (shop.layers, ledger.layers) == (0, 24)


def test_this_process_runs_the_default_shop():
    assert phases.SHAPE is phases.SHAPES["shop"]
    assert phases.SHAPES["shop"].endpoints == phases.ENDPOINTS


def test_a_process_started_with_the_ledger_shape_uses_it_throughout():
    code = (
        "import json; from otel_adaprof.demo import ground_truth, loadgen, phases;"
        "print(json.dumps([phases.SHAPE.name, ground_truth.GROUND_TRUTH['hot_path'],"
        " loadgen.endpoint_cycle()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(ADAPROF_DEMO_SHAPE="ledger"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    name, truth, cycle = json.loads(out.stdout)
    assert name == "ledger"
    assert truth[HOT_PATH] == pytest.approx(0.15)
    assert cycle == loadgen.endpoint_cycle(phases.SHAPES["ledger"].endpoints)


def test_an_unknown_shape_is_refused_at_import_with_the_known_ones():
    proc = subprocess.run(
        [sys.executable, "-c", "import otel_adaprof.demo.phases"],
        env=_clean_env(ADAPROF_DEMO_SHAPE="bank"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "unknown demo shape 'bank' (ADAPROF_DEMO_SHAPE): known shapes are ledger, shop" in (
        proc.stderr
    )


def test_the_ledger_service_puts_its_layers_between_the_handler_and_the_work(tmp_path):
    """The real app's /catalog handler, with parse_catalog replaced by a probe of the
    stack's depth, in a process of each shape: ledger's is 24 frames deeper."""
    code = (
        "import json, sys, traceback; from otel_adaprof.demo import service, workload;"
        "depth = [];"
        "workload.FUNCTIONS['parse_catalog'] ="
        " lambda ms: depth.append(len(traceback.extract_stack()));"
        f"app = service.DemoApp({str(tmp_path / 'x.db')!r}, 0);"
        "app._catalog(); print(json.dumps(depth))"
    )
    depths = {}
    for name in ("shop", "ledger"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=_clean_env(ADAPROF_DEMO_SHAPE=name),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        (depths[name],) = json.loads(out.stdout)
    assert depths["ledger"] - depths["shop"] == 24


def test_bench_cli_names_the_shapes_it_offers_as_the_demo_does():
    (option,) = [p for p in bench_cmd.bench.params if p.name == "shape"]
    assert list(option.type.choices) == list(phases.SHAPES) == ["shop", "ledger"]
    (option,) = [p for p in bench_cmd.bench.params if p.name == "arrivals"]
    assert tuple(option.type.choices) == bench_cmd.ARRIVALS == loadgen.ARRIVALS


def test_bench_cli_refuses_a_shape_other_than_the_one_this_process_imported(monkeypatch):
    """Here the demo's modules are imported (shop): ``--shape ledger`` cannot change
    them, and says how to run it instead of running a mixed benchmark."""
    monkeypatch.setenv("ADAPROF_DEMO_SHAPE", "shop")
    result = CliRunner().invoke(bench_cmd.bench, ["--shape", "ledger", "--quick"])
    assert result.exit_code == 2, result.output
    assert "already runs the shop demo; set ADAPROF_DEMO_SHAPE=ledger" in result.output
    result = CliRunner().invoke(bench_cmd.bench, ["--shape", "bank"])
    assert result.exit_code == 2 and "'bank' is not one of 'shop', 'ledger'" in result.output


def test_bench_cli_says_which_shapes_exist_when_the_environment_names_none():
    proc = subprocess.run(
        [sys.executable, "-m", "otel_adaprof.cli", "bench", "--quick"],
        env=_clean_env(ADAPROF_DEMO_SHAPE="bank"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unknown demo shape 'bank' (ADAPROF_DEMO_SHAPE): known shapes are ledger, shop" in (
        proc.stderr
    )


def test_the_demo_stack_starts_its_services_in_the_run_s_shape(tmp_path):
    """The stack strips the caller's ``ADAPROF_*`` from a service's environment but for
    the shape: without it a ledger benchmark ran the shop's service against the
    ledger's truth (session 35's first round)."""
    code = (
        "import json; from otel_adaprof.demo.processes import Children;"
        "from otel_adaprof.demo.stack import DemoStack;"
        "kids = Children();"
        f"env = DemoStack(kids, {str(tmp_path)!r}).service_env('svc');"
        "print(json.dumps({k: v for k, v in env.items() if k.startswith('ADAPROF_')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(ADAPROF_DEMO_SHAPE="ledger", ADAPROF_PROFILER="off"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    env = json.loads(out.stdout)
    assert env["ADAPROF_DEMO_SHAPE"] == "ledger"
    assert "ADAPROF_PROFILER" not in env  # the caller's other settings stay out
