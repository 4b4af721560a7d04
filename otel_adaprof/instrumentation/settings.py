"""The agent's settings: one value read from ``ADAPROF_*`` environment variables.

Every knob has a variable, a default and a sentence of doc in :data:`ENV_VARS` (what
``docs/agent.md`` lists). A bad value never stops the service: it is logged once,
naming the variable, the value and what is allowed, and the default is used.

Usage::

    >>> s = AgentSettings.from_env({"ADAPROF_CONTROLLER_URL": "http://127.0.0.1:8080",
    ...                             "ADAPROF_PROFILER": "in-process"})
    >>> s.controller_url, s.profiler, s.segment_s
    ('http://127.0.0.1:8080', 'in-process', 2)
    >>> AgentSettings.from_env({"ADAPROF_PROFILE_SEGMENT_S": "zero"}).segment_s
    2

Marker spans wait for the py-spy run that covers them, at most the longest run + 4 s:

    >>> AgentSettings().hold_s, AgentSettings(cut_rule="window").hold_s
    (14.0, 6.0)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from otel_adaprof.errors import ContractError
from otel_adaprof.params import DEFAULT_PARAMS, Params

log = logging.getLogger("otel_adaprof.agent")

ProfilerChoice = Literal["auto", "py-spy", "native", "in-process", "off"]
PROFILER_CHOICES: tuple[str, ...] = ("auto", "py-spy", "native", "in-process", "off")
#: How the agent talks to the controller (``ADAPROF_CONTROL_PROTOCOL``).
CONTROL_PROTOCOLS: tuple[str, ...] = ("native", "opamp")
ProfilesExportChoice = Literal["off", "otlp"]


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of the agent."""

    name: str
    field: str
    default: str
    doc: str


#: Every variable the agent reads, in the order ``docs/agent.md`` lists them.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("ADAPROF_CONTROLLER_URL", "controller_url", "(unset)",
           "controller base URL; unset = run on local params, no polling"),
    EnvVar("ADAPROF_CONTROLLER_TOKEN", "controller_token", "(unset)",
           "bearer token for the poll, when the controller requires one"),
    EnvVar("ADAPROF_CONTROL_PROTOCOL", "control_protocol", "native",
           "native (POST /v1/agents/poll, JSON) or opamp (POST /v1/opamp, OpAMP protobuf)"),
    EnvVar("ADAPROF_PARAMS", "params_json", "(unset)",
           "local params as JSON, used until (or without) the controller"),
    EnvVar("ADAPROF_PARAMS_FILE", "params_file", "(unset)",
           "local params from a YAML or JSON file (ADAPROF_PARAMS wins)"),
    EnvVar("ADAPROF_PROFILER", "profiler", "auto",
           "auto (py-spy, else in-process), py-spy, native (the C sampler in the process, "
           "CPython 3.11/3.12; else auto's choice), in-process or off"),
    EnvVar("ADAPROF_PY_SPY", "py_spy_path", "(found on PATH)", "path of the py-spy binary"),
    EnvVar("ADAPROF_PROFILE_SEGMENT_S", "segment_s", "2",
           "shortest planned py-spy run (whole seconds, 1-30); a run is cut sooner only "
           "when py-spy's knobs change (rate, profile_mode, off)"),
    EnvVar("ADAPROF_PROFILE_SEGMENT_SAMPLES", "segment_samples", "200",
           "a py-spy run is planned long enough for this many samples at its rate "
           "(amortises its start), within ADAPROF_PROFILE_SEGMENT_S..._MAX_S"),
    EnvVar("ADAPROF_PROFILE_SEGMENT_MAX_S", "segment_max_s", "10",
           "longest py-spy run (whole seconds, 1-120); marker spans wait up to this long"),
    EnvVar("ADAPROF_PROFILE_CUTS", "cut_rule", "params",
           "params: cut a py-spy run only when its knobs change (samples of a run that "
           "spans a window's close come in a later report); window: also at every "
           "window's close and new config version, with runs of ADAPROF_PROFILE_SEGMENT_S"),
    EnvVar("ADAPROF_PROFILE_IDLE", "profile_idle", "true",
           "profile_mode wall: keep samples of waiting threads (py-spy --idle)"),
    EnvVar("ADAPROF_CLOCK_BEACON", "clock_beacon", "true",
           "place py-spy's samples on the wall clock with the clock beacon thread"),
    EnvVar("ADAPROF_WINDOW_S", "window_s", "5",
           "report window before the controller sets poll_interval_s (0.5-300)"),
    EnvVar("ADAPROF_POLL_TIMEOUT_S", "poll_timeout_s", "2",
           "timeout of one poll; a slow controller never holds the service"),
    EnvVar("ADAPROF_STALE_PARAMS_S", "stale_params_s", "300",
           "controller unreachable this long: back to local params"),
    EnvVar("ADAPROF_MAX_HOLD_S", "max_hold_s", "longest run + 4",
           "longest a marker span is held for its samples before it leaves anyway "
           "(default: the longest py-spy run + 4 s, 14 s)"),
    EnvVar("ADAPROF_MAX_HELD_SPANS", "max_held_spans", "20000",
           "marker spans held at once; beyond it spans leave at once, without samples"),
    EnvVar("ADAPROF_SPAN_TOP_STACKS", "span_top_stacks", "5",
           "collapsed stacks attached per marker span (most sampled first)"),
    EnvVar("ADAPROF_PROFILES_EXPORT", "profiles_export", "off",
           "otlp: also send the samples on marker spans as OTLP profiles, linked to their "
           "spans, to OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT (else OTEL_EXPORTER_OTLP_ENDPOINT)"),
    EnvVar("ADAPROF_INSTANCE_ID", "instance_id", "service-host-pid-random",
           "this process's id at the controller"),
    EnvVar("ADAPROF_DISABLED", "disabled", "false",
           "true: the agent stays out; OpenTelemetry works as without it"),
)  # fmt: skip


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent is configured with (see :data:`ENV_VARS`)."""

    controller_url: str | None = None
    controller_token: str | None = None
    control_protocol: str = "native"
    params_json: str | None = None
    params_file: str | None = None
    profiler: ProfilerChoice = "auto"
    py_spy_path: str | None = None
    segment_s: int = 2
    segment_samples: int = 200
    segment_max_s: int = 10
    cut_rule: str = "params"
    profile_idle: bool = True
    clock_beacon: bool = True
    window_s: float = 5.0
    poll_timeout_s: float = 2.0
    stale_params_s: float = 300.0
    max_hold_s: float | None = None
    max_held_spans: int = 20_000
    span_top_stacks: int = 5
    profiles_export: ProfilesExportChoice = "off"
    instance_id: str | None = None
    disabled: bool = False
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def hold_s(self) -> float:
        """Longest time a marker span waits for its samples."""
        if self.max_hold_s is not None:
            return self.max_hold_s
        return self.longest_segment_s + 4.0

    @property
    def longest_segment_s(self) -> int:
        """Longest planned py-spy run (s)."""
        if self.cut_rule == "window":
            return self.segment_s
        return max(self.segment_s, self.segment_max_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Read the ``ADAPROF_*`` variables; bad values are reported in ``problems``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        known = {f.name: f for f in fields(cls)}
        for var in ENV_VARS:
            raw = env.get(var.name)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[var.field] = _PARSERS.get(var.field, _text)(raw.strip())
            except ValueError as exc:
                problems.append(f"{var.name}={raw!r}: {exc}; using the default {var.default}")
        settings = cls(**{k: v for k, v in values.items() if k in known})
        return replace(settings, problems=tuple(problems))

    def local_params(self) -> tuple[Params, str]:
        """The params to run without a controller, and where they came from.

        A bad ``ADAPROF_PARAMS`` or file is logged naming the field; defaults are used.
        """
        source, data = "built-in defaults", None
        try:
            if self.params_json:
                source = "ADAPROF_PARAMS"
                data = json.loads(self.params_json)
            elif self.params_file:
                source = f"ADAPROF_PARAMS_FILE {self.params_file}"
                data = yaml.safe_load(Path(self.params_file).read_text())
            if data is None:
                return DEFAULT_PARAMS, "built-in defaults"
            return Params.parse(data), source
        except (OSError, ValueError, yaml.YAMLError) as exc:
            detail = str(exc) if isinstance(exc, ContractError) else f"{type(exc).__name__}: {exc}"
            log.error("otel-adaprof: %s is invalid (%s); using built-in defaults", source, detail)
            return DEFAULT_PARAMS, "built-in defaults"


def _text(raw: str) -> str:
    return raw


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _ranged(kind: Callable[[str], float], lo: float, hi: float) -> Callable[[str], Any]:
    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"not a {kind.__name__}") from None
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside [{lo}, {hi}]")
        return value

    return parse


def _profiler(raw: str) -> str:
    if raw not in PROFILER_CHOICES:
        raise ValueError(f"expected one of {', '.join(PROFILER_CHOICES)}")
    return raw


def _profiles_export(raw: str) -> str:
    if raw not in ("off", "otlp"):
        raise ValueError("expected off or otlp")
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return raw.rstrip("/")


def _cut_rule(raw: str) -> str:
    if raw not in ("params", "window"):
        raise ValueError("expected one of params, window")
    return raw


def _protocol(raw: str) -> str:
    if raw not in CONTROL_PROTOCOLS:
        raise ValueError(f"expected one of {', '.join(CONTROL_PROTOCOLS)}")
    return raw


_PARSERS: dict[str, Callable[[str], Any]] = {
    "controller_url": _url,
    "control_protocol": _protocol,
    "profiler": _profiler,
    "segment_s": _ranged(int, 1, 30),
    "segment_samples": _ranged(int, 1, 100_000),
    "segment_max_s": _ranged(int, 1, 120),
    "cut_rule": _cut_rule,
    "profile_idle": _bool,
    "clock_beacon": _bool,
    "window_s": _ranged(float, 0.5, 300.0),
    "poll_timeout_s": _ranged(float, 0.1, 60.0),
    "stale_params_s": _ranged(float, 1.0, 86_400.0),
    "max_hold_s": _ranged(float, 0.5, 600.0),
    "max_held_spans": _ranged(int, 0, 1_000_000),
    "span_top_stacks": _ranged(int, 0, 50),
    "profiles_export": _profiles_export,
    "disabled": _bool,
}
