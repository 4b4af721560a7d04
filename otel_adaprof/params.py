"""Profiling parameters: the knobs the controller turns, with hard bounds.

One immutable, validated value shared by the agent and the controller. The same
bounds are enforced wherever params enter: the HTTP API, the controller's config
file, the action catalog and the poll response the agent receives.

Usage::

    >>> from otel_adaprof.params import Params
    >>> p = Params.parse({"sampling_interval_ms": 10, "stack_depth": 32})
    >>> p.rate_hz
    100
    >>> p.with_changes(trace_ratio=0.25).trace_ratio
    0.25
    >>> Params.parse({"stack_depth": 0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    otel_adaprof.errors.ContractError: stack_depth: 0 is out of bounds, allowed range ...

Knobs (see :data:`BOUNDS` for the numbers):

``sampling_interval_ms``
    Time between stack samples; py-spy runs at ``1000 / interval`` Hz. ``0`` turns
    the profiler off.
``stack_depth``
    Frames kept per sample, counted from the leaf (the frame that was running).
``trace_ratio``
    Fraction of new traces the sampler keeps (parent-based, trace-id consistent).
``operation_ratios``
    Per-operation (span name) overrides of ``trace_ratio``.
``span_filters``
    Which spans may become markers: semantic-convention categories and errors-only.
``marker_trigger``
    When a filtered span becomes a marker: minimum duration and/or slower than the
    given latency percentile of its operation (a request: or of all the service's
    requests).
``profile_mode``
    ``cpu`` (default): py-spy ``--gil``, on-CPU samples of the thread holding the GIL
    only, a fraction of the cost with many threads; ``wall``: every thread at every
    sample, waiting ones included and marked (see :data:`PROFILE_MODES`).
``sample_scope``
    What the native profiler samples: ``process`` (default), the whole process at every
    tick; ``requests``, only while a request (a local root span) is open: a profile of
    the requests' CPU, at a fraction of the cost on a service idle between requests, and
    blind to CPU spent while no request is open (see :data:`SAMPLE_SCOPES`). py-spy and the
    in-process sampler always sample the process.
``slow_span_interval_ms``
    In-process capture of a slow span's own thread: while a span outlives its
    ``marker_trigger``, its thread's stack is read every interval. ``0`` = off.
``burst_sensitivity``
    The agent's reflex: a change signal (CUSUM, in baseline standard deviations) above
    this starts a burst at once. Lower = more sensitive; ``0`` = reflex off.
``burst_interval_ms``, ``burst_seconds``
    The sampling interval during a burst, and how long a burst lasts.
``glimpse_sensitivity``
    The reflex's first stage: a *rise* of CPU per request or of the span rate (its
    CUSUM, in baseline standard deviations) above this starts a *glimpse*, one short
    burst (one py-spy run at ``burst_interval_ms``) whose samples are reported at once,
    before the evidence reaches ``burst_sensitivity``; one glimpse per rise. ``0`` = off.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from otel_adaprof.errors import ContractError, from_validation_error


class Category(str, enum.Enum):
    """Span categories, derived from OpenTelemetry semantic conventions and span kind."""

    DB = "db"
    HTTP = "http"
    RPC = "rpc"
    MESSAGING = "messaging"
    INTERNAL = "internal"


ALL_CATEGORIES: frozenset[Category] = frozenset(Category)


@dataclass(frozen=True)
class Bound:
    """Inclusive range of one knob, with its unit and a sentence of doc."""

    lo: float
    hi: float
    unit: str
    doc: str

    def check(self, field: str, value: float) -> None:
        """Raise ``ValueError`` naming the value and the range when ``value`` is outside."""
        if not (self.lo <= value <= self.hi):
            unit = f" {self.unit}" if self.unit else ""
            raise ValueError(
                f"{value!r} is out of bounds, allowed range is [{self.lo}, {self.hi}]{unit}"
            )


#: Hard bounds of every numeric knob, keyed by field path. Both sides enforce these.
BOUNDS: dict[str, Bound] = {
    "sampling_interval_ms": Bound(1, 1000, "ms", "time between samples; 0 = profiler off"),
    "stack_depth": Bound(1, 128, "frames", "frames kept per sample, from the leaf"),
    "trace_ratio": Bound(0.0, 1.0, "", "fraction of new traces sampled"),
    "operation_ratios": Bound(0.0, 1.0, "", "per-operation trace ratio"),
    "marker_trigger.min_duration_ms": Bound(0.0, 600_000.0, "ms", "minimum marker duration"),
    "marker_trigger.latency_percentile": Bound(
        50.0, 99.9, "percentile", "marker when slower than this per-operation percentile"
    ),
    "slow_span_interval_ms": Bound(
        1, 1000, "ms", "capture a slow span's thread every interval; 0 = off"
    ),
    "burst_sensitivity": Bound(
        0.0, 20.0, "std", "change-signal threshold starting a burst; lower = more; 0 = off"
    ),
    "burst_interval_ms": Bound(1, 1000, "ms", "sampling interval during a burst"),
    "burst_seconds": Bound(0.0, 120.0, "s", "length of a burst"),
    "glimpse_sensitivity": Bound(
        0.0, 20.0, "std", "rise of a change signal starting one short glimpse; 0 = off"
    ),
}

#: ``profile_mode`` values: what each one samples.
PROFILE_MODES: dict[str, str] = {
    "cpu": "py-spy --gil: on-CPU samples of the thread holding the GIL (cheap with many threads)",
    "wall": "every thread at every sample, waiting ones kept and marked (cost grows with threads)",
}
ProfileMode = Literal["cpu", "wall"]
DEFAULT_PROFILE_MODE: ProfileMode = "cpu"

#: ``sample_scope`` values: when the native profiler samples.
SAMPLE_SCOPES: dict[str, str] = {
    "process": "at every tick, whatever runs: the process's CPU",
    "requests": "only while a request (a local root span) is open: the requests' CPU, "
    "no wake-up while none is; CPU while none is open is not seen",
}
SampleScope = Literal["process", "requests"]
#: The knobs that take one of a few names: what each is called in an error, and the names.
_CHOICES: dict[str, tuple[str, Mapping[str, str]]] = {
    "profile_mode": ("profile mode", PROFILE_MODES),
    "sample_scope": ("sample scope", SAMPLE_SCOPES),
}

#: At most this many per-operation ratio rules.
MAX_OPERATION_RULES = 64
#: Longest operation (span) name accepted in a rule.
MAX_OPERATION_NAME = 256

#: Defaults used by agents without a controller and by the controller's built-in config.
DEFAULT_SAMPLING_INTERVAL_MS = (
    50  # 20 Hz: a few % of a core with --nonblocking (docs/benchmarks.md)
)
DEFAULT_STACK_DEPTH = 64
DEFAULT_TRACE_RATIO = 1.0
DEFAULT_BURST_INTERVAL_MS = 10
DEFAULT_BURST_SECONDS = 10.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class SpanFilters(_Frozen):
    """Which spans can become markers.

    >>> SpanFilters(categories=frozenset({Category.DB}), errors_only=True).matches(
    ...     Category.DB, is_error=True)
    True
    """

    categories: frozenset[Category] = Field(default=ALL_CATEGORIES)
    errors_only: bool = False

    @field_validator("categories", mode="before")
    @classmethod
    def _known_categories(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple, set, frozenset)):
            allowed = sorted(c.value for c in Category)
            for item in value:
                name = item.value if isinstance(item, Category) else item
                if name not in allowed:
                    raise ValueError(f"unknown category {item!r}, allowed: {', '.join(allowed)}")
        return value

    def matches(self, category: Category, is_error: bool) -> bool:
        """Whether a span of ``category`` (and error status) passes the filters."""
        if self.errors_only and not is_error:
            return False
        return category in self.categories


class MarkerTrigger(_Frozen):
    """When a span that passed the filters becomes a marker.

    Both conditions hold when both are set: at least ``min_duration_ms`` long and, if
    ``latency_percentile`` is set, slower than that percentile of its operation.
    """

    min_duration_ms: float = 0.0
    latency_percentile: float | None = None

    @field_validator("min_duration_ms")
    @classmethod
    def _min_duration(cls, value: float) -> float:
        BOUNDS["marker_trigger.min_duration_ms"].check("min_duration_ms", value)
        return value

    @field_validator("latency_percentile")
    @classmethod
    def _percentile(cls, value: float | None) -> float | None:
        if value is not None:
            BOUNDS["marker_trigger.latency_percentile"].check("latency_percentile", value)
        return value


class Params(_Frozen):
    """The profiling parameters an agent runs under. Immutable; build new ones with
    :meth:`with_changes` or :meth:`parse`."""

    sampling_interval_ms: int = DEFAULT_SAMPLING_INTERVAL_MS
    stack_depth: int = DEFAULT_STACK_DEPTH
    trace_ratio: float = DEFAULT_TRACE_RATIO
    operation_ratios: dict[str, float] = Field(default_factory=dict)
    span_filters: SpanFilters = Field(default_factory=SpanFilters)
    marker_trigger: MarkerTrigger = Field(default_factory=MarkerTrigger)
    profile_mode: ProfileMode = DEFAULT_PROFILE_MODE
    sample_scope: SampleScope = "process"
    slow_span_interval_ms: int = 0
    burst_sensitivity: float = 0.0
    burst_interval_ms: int = DEFAULT_BURST_INTERVAL_MS
    burst_seconds: float = DEFAULT_BURST_SECONDS
    glimpse_sensitivity: float = 0.0

    @field_validator("profile_mode", "sample_scope", mode="before")
    @classmethod
    def _choice(cls, value: Any, info: ValidationInfo) -> Any:
        what, allowed = _CHOICES[str(info.field_name)]
        if value not in allowed:
            raise ValueError(f"{value!r} is not a {what}, allowed: {', '.join(allowed)}")
        return value

    @field_validator("sampling_interval_ms")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value != 0:
            try:
                BOUNDS["sampling_interval_ms"].check("sampling_interval_ms", value)
            except ValueError as exc:
                raise ValueError(f"{exc}, or 0 to turn profiling off") from None
        return value

    @field_validator("slow_span_interval_ms")
    @classmethod
    def _slow_interval(cls, value: int) -> int:
        if value != 0:
            try:
                BOUNDS["slow_span_interval_ms"].check("slow_span_interval_ms", value)
            except ValueError as exc:
                raise ValueError(f"{exc}, or 0 to turn slow-span capture off") from None
        return value

    @field_validator("burst_sensitivity", "glimpse_sensitivity")
    @classmethod
    def _sensitivity(cls, value: float, info: ValidationInfo) -> float:
        name = str(info.field_name)
        try:
            BOUNDS[name].check(name, value)
        except ValueError as exc:
            what = "the burst reflex" if name == "burst_sensitivity" else "the glimpse"
            raise ValueError(f"{exc}; 0 turns {what} off") from None
        return value

    @field_validator("burst_interval_ms")
    @classmethod
    def _burst_interval(cls, value: int) -> int:
        BOUNDS["burst_interval_ms"].check("burst_interval_ms", value)
        return value

    @field_validator("burst_seconds")
    @classmethod
    def _burst_seconds(cls, value: float) -> float:
        BOUNDS["burst_seconds"].check("burst_seconds", value)
        return value

    @field_validator("stack_depth")
    @classmethod
    def _depth(cls, value: int) -> int:
        BOUNDS["stack_depth"].check("stack_depth", value)
        return value

    @field_validator("trace_ratio")
    @classmethod
    def _ratio(cls, value: float) -> float:
        BOUNDS["trace_ratio"].check("trace_ratio", value)
        return value

    @field_validator("operation_ratios")
    @classmethod
    def _op_ratios(cls, value: dict[str, float]) -> dict[str, float]:
        if len(value) > MAX_OPERATION_RULES:
            raise ValueError(
                f"{len(value)} rules is too many, at most {MAX_OPERATION_RULES} allowed"
            )
        bound = BOUNDS["operation_ratios"]
        for name, ratio in value.items():
            if not name or len(name) > MAX_OPERATION_NAME:
                raise ValueError(
                    f"operation name {name[:40]!r} must be 1 to {MAX_OPERATION_NAME} characters"
                )
            try:
                bound.check(name, ratio)
            except ValueError as exc:
                raise ValueError(f"ratio for {name!r}: {exc}") from None
        return value

    @classmethod
    def parse(cls, data: Mapping[str, Any], prefix: str = "") -> Params:
        """Validate a JSON-like mapping; raise :class:`ContractError` naming the field."""
        if not isinstance(data, Mapping):
            raise ContractError([(prefix, f"must be an object, got {type(data).__name__}")])
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise from_validation_error(exc, prefix) from None

    def with_changes(self, **changes: Any) -> Params:
        """A validated copy with some knobs changed (nested knobs as dicts or models)."""
        data = self.to_json()
        for key, value in changes.items():
            data[key] = (
                value.to_json()
                if isinstance(value, Params)
                else (value.model_dump(mode="json") if isinstance(value, BaseModel) else value)
            )
        return Params.parse(data)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (categories sorted, so equal params serialise equally)."""
        data = self.model_dump(mode="json")
        data["span_filters"]["categories"] = sorted(data["span_filters"]["categories"])
        return data

    @property
    def profiling_enabled(self) -> bool:
        """False when ``sampling_interval_ms`` is 0."""
        return self.sampling_interval_ms > 0

    @property
    def rate_hz(self) -> int:
        """py-spy rate in samples per second (0 when profiling is off)."""
        if not self.profiling_enabled:
            return 0
        return max(1, round(1000 / self.sampling_interval_ms))

    def ratio_for(self, operation: str) -> float:
        """Trace ratio for a span name: its rule if any, else ``trace_ratio``."""
        return self.operation_ratios.get(operation, self.trace_ratio)


#: Parameters for a service with no session and no configured defaults.
DEFAULT_PARAMS = Params()

#: The cheapest useful setting: profiler off, everything else default. The safety guard
#: falls back to it when a window runs over the overhead budget.
PROFILER_OFF = Params(sampling_interval_ms=0)
