"""Wire protocol between agents and the controller: versioned JSON messages.

An agent sends a :class:`PollRequest` to ``POST /v1/agents/poll`` at the end of each
window and receives a :class:`PollResponse` with the params to run next. Both sides
import this module, so they cannot drift apart. ``docs/protocol.md`` shows an example
of every message.

Usage::

    >>> from otel_adaprof.protocol import PollRequest, AgentIdentity, encode, decode_poll_request
    >>> req = PollRequest(agent=AgentIdentity(service="shop", instance_id="shop-1",
    ...                                       host="web-1", pid=4242))
    >>> decode_poll_request(encode(req)) == req
    True

Every list and string has a size limit (the ``MAX_*`` constants below); a message
over a limit, with an unknown field, or with an unknown ``protocol_version`` is
rejected with a :class:`~otel_adaprof.errors.ContractError` that names the field.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from otel_adaprof.errors import ContractError, UnsupportedProtocolVersion, from_validation_error
from otel_adaprof.params import Params

#: The protocol version this build speaks. Bumped on any incompatible change.
PROTOCOL_VERSION = 1
#: Versions this build accepts.
SUPPORTED_VERSIONS: frozenset[int] = frozenset({1})

#: Largest encoded message accepted (bytes).
MAX_MESSAGE_BYTES = 512 * 1024
#: Most stacks in a window's histogram (top-K by count; the rest only counted).
MAX_STACKS = 256
#: Longest collapsed stack string (``root;...;leaf``).
MAX_STACK_CHARS = 4096
#: Longest identity string (service, instance, host, versions).
MAX_NAME_CHARS = 256
#: Deepest stack, in frames, carried in a histogram.
MAX_STACK_DEPTH = 128
#: Longest window an agent may report (seconds).
MAX_WINDOW_SECONDS = 3600.0

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
OptionalName = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
NonNegative = Annotated[float, Field(ge=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ProfilerBackend(str, enum.Enum):
    """Which stack sampler an agent runs."""

    PY_SPY = "py-spy"
    IN_PROCESS = "in-process"
    NATIVE = "native"
    NONE = "none"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentIdentity(_Message):
    """Who is polling. ``instance_id`` is unique per process (it survives reconnects)."""

    service: Name
    instance_id: Name
    host: OptionalName = ""
    pid: int = Field(default=0, ge=0, le=2**31)
    sdk_version: OptionalName = ""
    agent_version: OptionalName = ""
    profiler_backend: ProfilerBackend = ProfilerBackend.NONE


class ChangeSignals(_Message):
    """The agent's cheap change signals at the end of a window.

    Each signal is its current CUSUM statistic in baseline standard deviations, signed
    (positive: above the baseline). ``changes`` counts the signals that fired in the
    window; ``last_change_unix`` is when one last fired (``None``: never).
    ``profile_changes`` counts those the window's profile mode can show in samples (in
    ``cpu`` mode a latency change alone is not one) and ``last_profile_change_unix`` is
    when one last fired; the reward restarts its phase on these. ``None``: an agent
    older than them (the reward then reads ``changes``). ``new_code`` counts the leaf
    functions that became *new code* in the window (new to the process's CPU samples,
    seen again and again: :mod:`otel_adaprof.instrumentation.observe.new_code`); each
    may start a glimpse.
    """

    cpu_per_request: float = Field(default=0.0, ge=-1e6, le=1e6)
    latency: float = Field(default=0.0, ge=-1e6, le=1e6)
    span_rate: float = Field(default=0.0, ge=-1e6, le=1e6)
    changes: Annotated[int, Field(ge=0)] = 0
    last_change_unix: NonNegative | None = None
    profile_changes: Annotated[int, Field(ge=0)] | None = None
    last_profile_change_unix: NonNegative | None = None
    new_code: Annotated[int, Field(ge=0)] = 0


class ObservedState(_Message):
    """What the agent measured during one window. Rates are per wall second.

    CPU figures are fractions of one core (a process can exceed 1.0 on several cores);
    node figures are fractions of the whole machine.
    """

    window_start: NonNegative = Field(description="unix time (s) the window began")
    window_seconds: Annotated[float, Field(gt=0.0, le=MAX_WINDOW_SECONDS)]
    process_cpu: Annotated[float, Field(ge=0.0, le=1024.0)] = 0.0
    node_cpu: Fraction = 0.0
    process_memory_bytes: Annotated[int, Field(ge=0)] = 0
    node_memory: Fraction = 0.0
    poll_rtt_ms: NonNegative | None = None
    spans_per_s: NonNegative = 0.0
    markers_per_s: NonNegative = 0.0
    samples_per_s: NonNegative = 0.0
    bytes_exported_per_s: NonNegative = 0.0
    profiler_cpu_seconds: NonNegative = Field(
        default=0.0, description="CPU seconds spent by py-spy and the agent's threads"
    )
    queue_drops: Annotated[int, Field(ge=0)] = 0
    export_failures: Annotated[int, Field(ge=0)] = 0
    pyspy_behind_events: Annotated[int, Field(ge=0)] = Field(
        default=0, description="py-spy 'behind in sampling' warnings in the window"
    )
    requested_rate_hz: Annotated[float, Field(ge=0.0, le=10_000.0)] = Field(
        default=0.0, description="sampling rate asked for (0: profiler off)"
    )
    effective_rate_hz: Annotated[float, Field(ge=0.0, le=10_000.0)] = Field(
        default=0.0, description="sampling rate achieved (behind in sampling: lower)"
    )
    profiler_cpu_breakdown: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)], NonNegative
    ] = Field(
        default_factory=dict,
        max_length=32,
        description="CPU seconds per agent part (pyspy, beacon, parse, join, poller, ...);"
        " sums to profiler_cpu_seconds",
    )
    change_signals: ChangeSignals = Field(default_factory=ChangeSignals)
    burst_seconds: NonNegative = Field(
        default=0.0, description="seconds of the window spent in a burst (agent reflex)"
    )
    glimpse_seconds: NonNegative = Field(
        default=0.0,
        description="of burst_seconds, those spent in glimpses (one short burst on a rise"
        " of a change signal, before it fires: glimpse_sensitivity)",
    )
    slow_spans: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="slow marker spans (they outlived the marker trigger's duration"
        " condition) the agent sent on in the window",
    )
    slow_spans_sampled: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="of slow_spans, those that carry at least one stack sample (py-spy's"
        " or slow-span capture's): the window's slow-span coverage is their share; null"
        " from older agents, whose coverage is read as slow_span_samples / slow_spans",
    )
    slow_span_samples: Annotated[int, Field(ge=0)] = Field(
        default=0, description="stacks slow-span capture took in the window"
    )
    samples_pending_since: NonNegative | None = Field(
        default=None,
        description="unix time (s) from which the window's samples are not all in this "
        "report (a py-spy segment in flight); they come in a later report's late_stacks, "
        "tagged with this window's config version; null: every sample is in",
    )

    @property
    def profiler_cpu_fraction(self) -> float:
        """Profiler CPU seconds per wall second (fraction of one core)."""
        return self.profiler_cpu_seconds / self.window_seconds

    @property
    def app_cpu_fraction(self) -> float:
        """The service's own CPU (cores): ``process_cpu`` without the agent's threads in
        it (the profiler CPU but py-spy's, a process of its own), at least 0.

        >>> round(ObservedState(window_start=0, window_seconds=2, process_cpu=0.3,
        ...               profiler_cpu_seconds=0.2).app_cpu_fraction, 3)
        0.2
        """
        pyspy = float((self.profiler_cpu_breakdown or {}).get("pyspy", 0.0))
        in_process = max(0.0, self.profiler_cpu_seconds - pyspy) / self.window_seconds
        return max(0.0, self.process_cpu - in_process)


class StackCount(_Message):
    """One collapsed stack (``root;...;leaf``, frames as ``function (file:line)``)."""

    stack: Annotated[str, StringConstraints(min_length=1, max_length=MAX_STACK_CHARS)]
    count: Annotated[int, Field(ge=1)]


class StackHistogram(_Message):
    """The window's samples, top-K stacks by count.

    ``total_samples`` counts every sample, including those of stacks left out of
    ``stacks``; ``depth`` is the stack depth the samples were truncated to.
    """

    stacks: list[StackCount] = Field(default_factory=list, max_length=MAX_STACKS)
    total_samples: Annotated[int, Field(ge=0)] = 0
    depth: Annotated[int, Field(ge=1, le=MAX_STACK_DEPTH)] = MAX_STACK_DEPTH

    def as_dict(self) -> dict[str, int]:
        """``{stack: count}`` (duplicates, if any, are summed)."""
        out: dict[str, int] = {}
        for item in self.stacks:
            out[item.stack] = out.get(item.stack, 0) + item.count
        return out


class LateStacks(_Message):
    """Samples of an earlier config version that arrived after its window was reported.

    A py-spy segment may span several windows (its samples arrive when it ends); what it
    took under version ``config_version`` comes in the next report as late stacks, never
    in the ``stacks`` of another version. ``taken_from``/``taken_to``: unix times (s) of
    the first and last of these samples. ``profiler_cpu_seconds``: the profiler CPU that
    version used after its report (a cut segment's py-spy tail).
    """

    config_version: Annotated[int, Field(ge=0)]
    stacks: StackHistogram
    taken_from: NonNegative = 0.0
    taken_to: NonNegative = 0.0
    profiler_cpu_seconds: NonNegative = Field(
        default=0.0, description="CPU seconds of that version spent after its report"
    )


#: Most earlier versions carried in one report's ``late_stacks``.
MAX_LATE_VERSIONS = 8


class PollRequest(_Message):
    """Agent → controller, once per window.

    ``config_version`` is the version of the params the window ran under (0 before the
    agent has heard from the controller); ``window`` and ``stacks`` are absent on the
    first poll of a process. ``late_stacks``: samples of earlier versions that arrived
    after their own report (:class:`LateStacks`).
    """

    protocol_version: int = PROTOCOL_VERSION
    agent: AgentIdentity
    config_version: Annotated[int, Field(ge=0)] = 0
    session_id: OptionalName | None = None
    window: ObservedState | None = None
    stacks: StackHistogram | None = None
    late_stacks: list[LateStacks] = Field(default_factory=list, max_length=MAX_LATE_VERSIONS)


class PollResponse(_Message):
    """Controller → agent: the params to run next and when to poll again."""

    protocol_version: int = PROTOCOL_VERSION
    config_version: Annotated[int, Field(ge=0)]
    params: Params
    session_id: OptionalName | None = None
    poll_interval_s: Annotated[float, Field(ge=0.5, le=300.0)] = 5.0


class ErrorResponse(_Message):
    """Body of every 4xx answer: what was wrong and which field."""

    error: str
    message: str
    field: str = ""
    problems: list[dict[str, str]] = Field(default_factory=list)


M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """Serialise a message to compact JSON bytes."""
    data = message.model_dump(mode="json", exclude_none=False)
    if isinstance(message, PollResponse):
        data["params"] = message.params.to_json()
    return json.dumps(data, separators=(",", ":")).encode()


def _load(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        raise ContractError([("", f"message of {size} bytes exceeds {MAX_MESSAGE_BYTES} bytes")])
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError([("", f"body is not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ContractError([("", f"body must be a JSON object, got {type(data).__name__}")])
    return data


def check_version(data: dict[str, Any]) -> None:
    """Raise :class:`UnsupportedProtocolVersion` unless ``protocol_version`` is spoken here."""
    version = data.get("protocol_version", PROTOCOL_VERSION)
    if (
        not isinstance(version, int)
        or isinstance(version, bool)
        or (version not in SUPPORTED_VERSIONS)
    ):
        supported = ", ".join(str(v) for v in sorted(SUPPORTED_VERSIONS))
        reason = f"unsupported version {version!r}, this build speaks {supported}"
        raise UnsupportedProtocolVersion([("protocol_version", reason)])


def decode(model: type[M], raw: bytes | str | dict[str, Any]) -> M:
    """Parse and validate ``raw`` as ``model``; raise :class:`ContractError` on any problem."""
    data = _load(raw)
    if "protocol_version" in model.model_fields:
        check_version(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def decode_poll_request(raw: bytes | str | dict[str, Any]) -> PollRequest:
    """Validate an agent's poll."""
    return decode(PollRequest, raw)


def decode_poll_response(raw: bytes | str | dict[str, Any]) -> PollResponse:
    """Validate the controller's answer (the agent refuses params outside the bounds)."""
    return decode(PollResponse, raw)
