"""The controller's configuration file (YAML), validated with field-naming errors.

Usage::

    >>> from otel_adaprof.controller.config import ControllerConfig
    >>> cfg = ControllerConfig.parse({"listen": {"port": 9000}})
    >>> cfg.listen.port, cfg.database.path
    (9000, 'adaprof.db')

Every option has a default; an empty file is a valid configuration. See
``configs/controller.yaml`` for a commented example and ``docs/controller.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from otel_adaprof.errors import ContractError, from_validation_error
from otel_adaprof.params import Params
from otel_adaprof.session_spec import OverheadBudget, RewardWeights

#: Environment variable that supplies the token when the file does not.
TOKEN_ENV = "ADAPROF_TOKEN"
#: Environment variable with the agents' own token.
AGENT_TOKEN_ENV = "ADAPROF_AGENT_TOKEN"
#: Environment variable that turns ``server_timing`` on (``1``) when the file does not.
SERVER_TIMING_ENV = "ADAPROF_SERVER_TIMING"

Token = Annotated[str, StringConstraints(min_length=8, max_length=512)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ListenConfig(_Section):
    """Where the HTTP server listens (loopback by default)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080


class DatabaseConfig(_Section):
    """The database (a SQLite file, a ``sqlite:`` or ``postgresql://`` URL) and how much
    history to keep; with PostgreSQL, the model leases of replicas."""

    path: str = "adaprof.db"
    report_retention: Annotated[int, Field(ge=100, le=10_000_000)] = 100_000
    model_snapshot_interval_s: Annotated[float, Field(ge=1.0, le=3600.0)] = 30.0
    lease_s: Annotated[float, Field(ge=2.0, le=600.0)] = 15.0
    lease_renew_s: Annotated[float, Field(ge=0.5, le=300.0)] = 5.0

    @model_validator(mode="after")
    def _renew_well_within_the_lease(self) -> DatabaseConfig:
        if self.lease_renew_s * 2 > self.lease_s:
            raise ValueError(
                f"lease_renew_s ({self.lease_renew_s}) must be at most half of lease_s "
                f"({self.lease_s}): a missed renewal must not lose the lease"
            )
        return self

    @field_validator("path")
    @classmethod
    def _supported(cls, value: str) -> str:
        from otel_adaprof.controller.store_factory import check_database_url

        try:
            check_database_url(value, "")
        except ContractError as exc:
            raise ValueError(exc.problems[0][1]) from None
        return value


class ModelsConfig(_Section):
    """Learning models kept in memory (one per adaptive service)."""

    #: Models of services without an open session beyond this many (least recently
    #: used first) are snapshotted to the database and dropped from memory.
    max_in_memory: Annotated[int, Field(ge=1, le=100_000)] = 100


class AgentsConfig(_Section):
    """How agents are driven when they poll."""

    poll_interval_s: Annotated[float, Field(ge=0.5, le=300.0)] = 5.0
    stale_after_s: Annotated[float, Field(ge=1.0, le=86_400.0)] = 60.0
    #: A settled agent (the adaptive policy's steady phase, on a maintenance action)
    #: polls this many times less often (at most every 300 s): each poll costs the
    #: agent about 1.5 ms of CPU (its window's close and the request), a quarter of
    #: what a settled agent spends at 3 s windows (docs/benchmarks.md, session 44),
    #: while a change it sees itself — its reflex's burst or glimpse — is reported at
    #: once whatever the interval. ``1``: every agent polls every ``poll_interval_s``.
    settled_poll_factor: Annotated[float, Field(ge=1.0, le=20.0)] = 3.0

    def interval_for(self, *, settled: bool) -> float:
        """Seconds the agent waits before its next poll.

        >>> AgentsConfig(poll_interval_s=3.0).interval_for(settled=True)
        9.0
        >>> AgentsConfig(poll_interval_s=3.0).interval_for(settled=False)
        3.0
        """
        if not settled:
            return self.poll_interval_s
        return min(300.0, self.poll_interval_s * self.settled_poll_factor)


class PolicyConfig(_Section):
    """The learning policy: action catalog, pretrained model, default goal and budget."""

    catalog: str | None = None  # path to an action catalog; None = the packaged default
    model: str | None = None  # pretrained model that seeds services without one
    goal: RewardWeights = Field(default_factory=RewardWeights)
    budget: OverheadBudget = Field(default_factory=OverheadBudget)
    #: Seconds an adaptive service's decision is shared: the polls of its other agents
    #: within this long of a decision get the same params (unless their window leaves
    #: the budget bank spent), and only the deciding poll's window is learned from. One
    #: agent polling every few seconds decides at each poll; a fleet of a thousand
    #: decides about once a second instead of at each of its polls. ``0``: every poll
    #: decides.
    share_decision_s: Annotated[float, Field(ge=0.0, le=60.0)] = 1.0


class ControllerConfig(_Section):
    """The whole controller configuration."""

    listen: ListenConfig = Field(default_factory=ListenConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    token: Token | None = None
    agent_token: Token | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    default_params: Params = Field(default_factory=Params)
    service_params: dict[str, Params] = Field(default_factory=dict)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    #: Answer each poll with a ``Server-Timing`` header: the time of each of its parts
    #: in the controller (see ``poll_timing``); for benchmarks and diagnosis.
    server_timing: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None, source: str = "") -> ControllerConfig:
        """Validate a mapping; errors name the field (and ``source``, when given)."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ContractError([(source, "configuration must be a mapping of options")])
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            err = from_validation_error(exc)
            if source:
                err = ContractError(
                    [(f"{source}: {f}" if f else source, r) for f, r in err.problems]
                )
            raise err from None

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> ControllerConfig:
        """Read a YAML file (``None`` gives the defaults); tokens and ``server_timing``
        fall back to the environment."""
        data: Any = {}
        source = str(path) if path else ""
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                reason = f"cannot read configuration: {exc.strerror}"
                raise ContractError([(source, reason)]) from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ContractError([(source, f"not valid YAML: {exc}")]) from None
        cfg = cls.parse(data, source)
        updates: dict[str, Any] = {}
        if cfg.token is None and os.environ.get(TOKEN_ENV):
            updates["token"] = os.environ[TOKEN_ENV]
        if cfg.agent_token is None and os.environ.get(AGENT_TOKEN_ENV):
            updates["agent_token"] = os.environ[AGENT_TOKEN_ENV]
        if not cfg.server_timing and os.environ.get(SERVER_TIMING_ENV) == "1":
            updates["server_timing"] = True
        if updates:
            cfg = cls.parse({**cfg.model_dump(mode="json"), **updates}, source)
        return cfg

    def params_for(self, service: str) -> Params:
        """Default params of ``service``: its own entry, else ``default_params``."""
        return self.service_params.get(service, self.default_params)
