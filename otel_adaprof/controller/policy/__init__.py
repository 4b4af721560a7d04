"""Policies: what params an agent should run next.

The serving path only knows :class:`~otel_adaprof.controller.policy.base.Policy`;
``static`` (the session's fixed params) is the default and the benchmark's baseline,
the Vowpal Wabbit contextual bandit plugs in behind the same interface
(:class:`~otel_adaprof.controller.policy.vw.VWPolicy`, built for a service with
``VWPolicy.from_config(config.policy)``), as does the threshold heuristic
(:class:`~otel_adaprof.controller.policy.heuristic.ThresholdPolicy`). Those two are
imported from their modules, so importing this package stays light.
"""

from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy.static import StaticPolicy

__all__ = ["Decision", "DecisionContext", "Policy", "StaticPolicy"]
