"""What a client asks for when it opens a profiling session.

Usage::

    >>> from otel_adaprof.session_spec import SessionSpec
    >>> spec = SessionSpec.parse({"service": "shop", "duration_s": 300,
    ...                           "budget": {"cpu_fraction": 0.02}})
    >>> spec.mode.value, spec.budget.cpu_fraction, spec.goal.information
    ('adaptive', 0.02, 20.0)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from otel_adaprof.errors import ContractError, from_validation_error
from otel_adaprof.params import Params

#: Shortest and longest session (seconds).
MIN_SESSION_SECONDS = 5.0
MAX_SESSION_SECONDS = 7 * 24 * 3600.0
DEFAULT_SESSION_SECONDS = 300.0

Weight = Annotated[float, Field(ge=0.0, le=100.0)]


class Mode(str, enum.Enum):
    """``adaptive``: the learned policy picks params; ``static``: initial params, never explores."""

    ADAPTIVE = "adaptive"
    STATIC = "static"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RewardWeights(_Spec):
    """The session's goal: weights of the reward terms (see ``docs/policy.md``).

    reward = information·KL + novelty·new_share − cpu·cpu/budget − bytes·bytes/budget
    + density·min(1, markers_per_s/target)
    """

    # A nat of information is worth 20 windows at the full CPU budget: at that exchange
    # rate learning a new hot path pays for a few windows of 10-20 Hz profiling, while
    # re-sampling a converged profile does not (docs/policy.md, "Goal").
    information: Weight = 20.0
    novelty: Weight = 2.0
    cpu: Weight = 1.0
    bytes: Weight = 0.2
    density: Weight = 0.3
    target_markers_per_s: Annotated[float, Field(gt=0.0, le=1e6)] = 5.0


class OverheadBudget(_Spec):
    """Hard limits the safety guard holds: profiler CPU (fraction of one core) and bytes/s."""

    cpu_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.02
    bytes_per_s: Annotated[float, Field(gt=0.0, le=1e9)] = 200_000.0


class SessionSpec(_Spec):
    """Body of ``POST /v1/sessions``."""

    service: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    duration_s: Annotated[float, Field(ge=MIN_SESSION_SECONDS, le=MAX_SESSION_SECONDS)] = (
        DEFAULT_SESSION_SECONDS
    )
    mode: Mode = Mode.ADAPTIVE
    goal: RewardWeights = Field(default_factory=RewardWeights)
    budget: OverheadBudget = Field(default_factory=OverheadBudget)
    initial_params: Params | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SessionSpec:
        """Validate a JSON-like mapping; raise :class:`ContractError` naming the field."""
        if not isinstance(data, Mapping):
            raise ContractError([("", f"must be a JSON object, got {type(data).__name__}")])
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise from_validation_error(exc) from None
