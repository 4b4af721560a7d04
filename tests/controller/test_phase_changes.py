"""Which change signals restart the reward's phase: the profile changes an agent reports,
and new code.

In cpu mode a latency change alone is one CPU samples cannot show (the agent counts it
in ``changes``, not in ``profile_changes``): the reward's phase goes on. An agent that
does not report profile changes is read as before (every change restarts the phase).
Real poll handling (:class:`ControllerCore`, in-memory SQLite), real poll requests.
"""

from __future__ import annotations

import numpy as np
import pytest

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store import Store
from otel_adaprof.params import Params
from otel_adaprof.protocol import ChangeSignals, PollRequest
from otel_adaprof.session_spec import Mode, SessionSpec
from otel_adaprof.sim.agent import SimulatedAgent
from otel_adaprof.sim.scenario import demo_scenario

EPOCH = 1_800_000_000.0


def _last_window_reward(signals: ChangeSignals):  # type: ignore[no-untyped-def]
    """Six windows of a steady phase at 100 Hz; the sixth carries ``signals``."""
    clock = [EPOCH]
    store = Store(":memory:")
    core = ControllerCore(ControllerConfig(), store, clock=lambda: clock[0])
    scenario = demo_scenario()
    params = Params(sampling_interval_ms=10)
    spec = SessionSpec(
        service=scenario.name, duration_s=3600, mode=Mode.STATIC, initial_params=params
    )
    core.open_session(spec)
    agent = SimulatedAgent(scenario.name, np.random.default_rng(3), window_s=scenario.window_s)
    window_s = scenario.window_s
    answer = core.poll(PollRequest(agent=agent.identity))
    try:
        for i in range(6):
            start = EPOCH + i * window_s
            req = agent.report(answer.params, answer.config_version, scenario.phases[0], start)
            assert req.window is not None
            if i == 5:
                at = start + window_s / 2
                signals = signals.model_copy(
                    update={
                        "last_change_unix": at if signals.changes else None,
                        "last_profile_change_unix": at if signals.profile_changes else None,
                    }
                )
                req = req.model_copy(
                    update={"window": req.window.model_copy(update={"change_signals": signals})}
                )
            clock[0] = start + window_s
            answer = core.poll(req)
        return core.last_reward[scenario.name]
    finally:
        store.close()


def test_a_latency_change_alone_in_cpu_mode_does_not_restart_the_phase():
    reward = _last_window_reward(ChangeSignals(changes=1, profile_changes=0, latency=9.0))
    assert not reward.change
    assert reward.accuracy > 0  # the phase's samples still pay as they did


@pytest.mark.parametrize(
    "signals",
    [
        ChangeSignals(changes=1, profile_changes=1, cpu_per_request=9.0),
        ChangeSignals(changes=1, latency=9.0),  # an agent that reports no profile changes
        # new code alone (session 48): a subtle hot path's CPU per request takes tens of
        # seconds to signal, and meanwhile the phase before it took in its samples
        ChangeSignals(changes=0, profile_changes=0, new_code=1),
    ],
    ids=["profile-change", "older-agent", "new-code"],
)
def test_a_change_the_samples_can_show_restarts_the_phase(signals):
    reward = _last_window_reward(signals)
    assert reward.change
