"""The remote-controlled sampler: parent-based, trace-id-consistent ratio sampling.

A root span is kept when the low 64 bits of its trace id fall under
``ratio × 2**64`` — the same rule as OpenTelemetry's ``TraceIdRatioBased``, so every
service sampling at the same ratio keeps the same traces. The ratio is the params'
``trace_ratio``, or the ``operation_ratios`` rule for the span's name; both change live
when the controller answers. Child spans follow their parent's decision.

Selected with ``OTEL_TRACES_SAMPLER=adaprof`` (``OTEL_TRACES_SAMPLER_ARG`` is the ratio
used before the controller has spoken), or built directly::

    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.instrumentation.control.live_params import LiveParams
    >>> live = LiveParams(Params(trace_ratio=0.0, operation_ratios={"GET /health": 1.0}))
    >>> sampler = AdaprofSampler(live)
    >>> sampler.should_sample(None, 0xABC, "GET /orders").decision.is_sampled()
    False
    >>> sampler.should_sample(None, 0xABC, "GET /health").decision.is_sampled()
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_adaprof.instrumentation.control.live_params import LiveParams

log = logging.getLogger("otel_adaprof.agent")

_TRACE_ID_LIMIT = (1 << 64) - 1


def keeps(trace_id: int, ratio: float) -> bool:
    """Whether a trace is kept at ``ratio`` (consistent across services).

    >>> keeps(0, 0.01), keeps(_TRACE_ID_LIMIT, 0.99), keeps(_TRACE_ID_LIMIT, 1.0)
    (True, False, True)
    """
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    return (trace_id & _TRACE_ID_LIMIT) < round(ratio * (_TRACE_ID_LIMIT + 1))


class _RootRatio(Sampler):
    """Root decision from the live params (ratio per operation)."""

    def __init__(self, live: LiveParams) -> None:
        self._live = live
        self.retired = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        ratio = 1.0 if self.retired else self._live.params.ratio_for(name)
        decision = Decision.RECORD_AND_SAMPLE if keeps(trace_id, ratio) else Decision.DROP
        state = get_current_span(parent_context).get_span_context().trace_state
        return SamplingResult(decision, None, state)

    def get_description(self) -> str:
        return f"AdaprofRatio{{{self._live.params.trace_ratio}}}"


class AdaprofSampler(ParentBased):
    """``ParentBased`` around the live ratio: follow the parent, decide roots by ratio.

    Once :attr:`retired` (the agent was uninstrumented), it samples as the SDK's
    default, :attr:`default`, does: tracers made earlier hold on to their sampler.
    """

    def __init__(self, live: LiveParams) -> None:
        self._ratio = _RootRatio(live)
        super().__init__(root=self._ratio)
        self.live = live
        #: The SDK's default sampler, which the provider gets back on uninstrument.
        self.default: Sampler = ParentBased(ALWAYS_ON)

    @property
    def retired(self) -> bool:
        """Whether the agent is detached: every root is kept, as by the SDK default."""
        return self._ratio.retired

    @retired.setter
    def retired(self, value: bool) -> None:
        self._ratio.retired = value

    def get_description(self) -> str:
        return f"AdaprofSampler{{{self.live.params.trace_ratio}}}"


def sampler_factory(arg: str | float | None = None) -> Sampler:
    """Entry point of ``OTEL_TRACES_SAMPLER=adaprof`` (group ``opentelemetry_traces_sampler``).

    ``arg`` (``OTEL_TRACES_SAMPLER_ARG``) is the ratio until the controller answers.
    """
    from otel_adaprof.instrumentation.runtime import get_agent

    agent = get_agent()
    if arg not in (None, ""):
        try:
            ratio = float(arg)
            agent.set_local_ratio(ratio)
        except ValueError as exc:
            log.error("otel-adaprof: OTEL_TRACES_SAMPLER_ARG=%r ignored: %s", arg, exc)
    return AdaprofSampler(agent.live)
