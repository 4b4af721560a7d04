"""A service simulator for the learning policy: scenarios with phases, a calibrated
cost model, simulated agents that emit real :class:`~otel_adaprof.protocol.PollRequest`
reports, and a runner that scores every window with the same reward path as the
controller (:func:`otel_adaprof.reward.compute_reward`).

Usage::

    >>> from otel_adaprof.sim.scenario import SCENARIOS
    >>> from otel_adaprof.sim.runner import run_policy
    >>> from otel_adaprof.controller.policy.heuristic import ThresholdPolicy
    >>> result = run_policy(ThresholdPolicy(), SCENARIOS["hot-path"], seed=1, windows=20)
    >>> len(result.windows)
    20

Modules: :mod:`~otel_adaprof.sim.scenario` (what the service does, phase by phase),
:mod:`~otel_adaprof.sim.physics` (what profiling costs and observes: the calibrated
cost model), :mod:`~otel_adaprof.sim.agent` (one agent's window → poll request),
:mod:`~otel_adaprof.sim.runner` (a policy against a scenario, controller side),
:mod:`~otel_adaprof.sim.compare` (adaptive vs static vs heuristic, regret),
:mod:`~otel_adaprof.sim.training` (pretraining a model).
"""
