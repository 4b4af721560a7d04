"""``SessionSpec.policy``: the controller answers each session with its own policy —
the service's bandit, the threshold heuristic (server side, window by window) or static."""

from __future__ import annotations

import pytest

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.errors import ContractError
from otel_adaprof.params import Params
from otel_adaprof.protocol import AgentIdentity, ObservedState, PollRequest
from otel_adaprof.session_spec import PolicyKind, SessionSpec


def _poll(core: ControllerCore, service: str, version: int, cpu_fraction: float | None):
    window = None
    if cpu_fraction is not None:
        window = ObservedState(
            window_start=1000.0 + version * 5,
            window_seconds=5.0,
            profiler_cpu_seconds=cpu_fraction * 5.0,
        )
    req = PollRequest(
        agent=AgentIdentity(service=service, instance_id=f"{service}-1"),
        config_version=version,
        window=window,
    )
    return core.poll(req)


def test_policy_defaults_follow_the_mode_and_a_static_heuristic_is_refused():
    assert SessionSpec.parse({"service": "s"}).policy is PolicyKind.ADAPTIVE
    assert SessionSpec.parse({"service": "s", "mode": "static"}).policy is PolicyKind.STATIC
    with pytest.raises(ContractError, match="policy"):
        SessionSpec.parse({"service": "s", "mode": "static", "policy": "heuristic"})
    with pytest.raises(ContractError, match="policy"):
        SessionSpec.parse({"service": "s", "policy": "greedy"})


def test_a_heuristic_session_climbs_and_backs_off_the_rate_ladder_server_side():
    clock = [1000.0]
    core = ControllerCore(ControllerConfig(), Store(":memory:"), clock=lambda: clock[0])
    core.open_session(
        SessionSpec.parse(
            {
                "service": "shop",
                "policy": "heuristic",
                "budget": {"cpu_fraction": 0.1},
                "initial_params": Params(sampling_interval_ms=100).to_json(),
            }
        )
    )
    first = _poll(core, "shop", 0, None)
    assert first.params.rate_hz == 10  # the initial params' step of the ladder
    cheap = _poll(core, "shop", first.config_version, 0.01)  # well under 0.6 budgets: up
    assert cheap.params.rate_hz == 20
    over = _poll(core, "shop", cheap.config_version, 0.2)  # over budget: down
    assert over.params.rate_hz == 10
    decision = core.store.get_decision("shop-1", over.config_version)
    assert decision is not None and decision["policy"] == "heuristic"
    assert decision["action"] == "rate-10hz"


def test_static_and_adaptive_sessions_keep_their_policies():
    core = ControllerCore(ControllerConfig(), Store(":memory:"))
    params = Params(sampling_interval_ms=50)
    core.open_session(
        SessionSpec.parse(
            {"service": "fixed", "mode": "static", "initial_params": params.to_json()}
        )
    )
    core.open_session(SessionSpec.parse({"service": "learn"}))
    a = _poll(core, "fixed", 0, None)
    b = _poll(core, "fixed", a.config_version, 0.5)
    assert a.params == b.params == params
    c = _poll(core, "learn", 0, None)
    row = core.store.get_decision("learn-1", c.config_version)
    assert row is not None and row["policy"] == "adaptive"
    assert c.params in [x.params for x in core.adaptive_policy("learn").catalog]  # type: ignore[attr-defined]
