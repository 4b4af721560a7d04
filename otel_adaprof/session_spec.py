"""What a client asks for when it opens a profiling session.

Usage::

    >>> from otel_adaprof.session_spec import SessionSpec
    >>> spec = SessionSpec.parse({"service": "shop", "duration_s": 300,
    ...                           "budget": {"cpu_fraction": 0.02}})
    >>> spec.mode.value, spec.policy.value, spec.budget.cpu_fraction, spec.budget.bytes_per_s
    ('adaptive', 'adaptive', 0.02, None)
    >>> SessionSpec.parse({"service": "shop", "policy": "heuristic"}).policy.value
    'heuristic'
    >>> SessionSpec.parse({"service": "shop", "mode": "static"}).policy.value
    'static'

"""

from __future__ import annotations

import enum
import functools
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


class PolicyKind(str, enum.Enum):
    """Who chooses the params of an adaptive session.

    ``adaptive``: the service's learned bandit; ``heuristic``: the threshold rule
    (:class:`~otel_adaprof.controller.policy.heuristic.ThresholdPolicy`), server side;
    ``static``: the initial params, never changed.
    """

    ADAPTIVE = "adaptive"
    HEURISTIC = "heuristic"
    STATIC = "static"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RewardWeights(_Spec):
    """The session's goal: weights and targets of the reward terms (``docs/policy.md``).

    reward = accuracy·A + detection·D + coverage·S + density·M
             − cpu·C − over_budget·O − bytes·B − switch·W

    The defaults make a phase's profile worth gathering to ``accuracy_target`` (about
    440 samples over 8 functions: 1.5× the expected L1 error of the samples a fixed
    100 Hz py-spy takes in a minute-long phase of the benchmark's shop service, median
    974 over 60 phases, ``bench/accuracy_target.py`` → ``bench/output/accuracy_target.json``)
    at a few tenths of a core for a few windows, and not worth a sample more once it is
    there.
    """

    accuracy: Weight = 10.0  # per nat of expected L1 error removed
    #: L1 error. Unset, it is the agent's profiler's (:meth:`for_profiler`): this value
    #: for py-spy, :data:`PROFILER_ACCURACY_TARGETS` for the others.
    accuracy_target: Annotated[float, Field(gt=0.0, le=2.0)] = 0.108
    functions: Annotated[int, Field(ge=2, le=10_000)] = 8  # K, functions to resolve
    detection: Weight = 3.0  # per confirmed change, × exp(-delay/τ)
    detection_tau_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 10.0
    coverage: Weight = 0.5  # per 5 s with every slow span sampled
    density: Weight = 0.1  # per 5 s at target_markers_per_s markers with samples
    cpu: Weight = 1.0  # per 5 s at the CPU budget
    over_budget: Weight = 3.0  # per 5 s with the horizon average one budget over
    cost_horizon_s: Annotated[float, Field(ge=5.0, le=86_400.0)] = 300.0
    bytes: Weight = 0.1  # per 5 s at the bytes budget (only when one is set)
    switch: Weight = 0.3  # per params change
    target_markers_per_s: Annotated[float, Field(gt=0.0, le=1e6)] = 5.0
    #: The service's usual load is its own CPU averaged over this horizon; a phase busier
    #: than that has the samples of its ``accuracy_target`` scaled by the ratio (at most
    #: 4x), as a fixed-rate profiler's are. 0: the target is the same whatever the load.
    load_horizon_s: Annotated[float, Field(ge=0.0, le=86_400.0)] = 600.0

    def for_profiler(self, backend: str) -> RewardWeights:
        """This goal as it applies to an agent whose profiler is ``backend``.

        The default ``accuracy_target`` is derived from a fixed 100 Hz profiler's samples
        per phase, and profilers differ in how many samples 100 Hz gives: py-spy samples
        every thread at every tick, the native sampler only a thread that holds the GIL
        (a median of 974 samples a minute-long phase of the benchmark's shop with py-spy,
        453 with the native sampler, which also leaves out a holder waiting for a CPU).
        So a goal that does not set its target gets its
        profiler's (:data:`PROFILER_ACCURACY_TARGETS`, each the same derivation from its
        own runs); one that sets it keeps it for every profiler.

        >>> RewardWeights().for_profiler("native").accuracy_target
        0.117
        >>> RewardWeights().for_profiler("py-spy").accuracy_target
        0.108
        >>> RewardWeights(accuracy_target=0.2).for_profiler("native").accuracy_target
        0.2
        """
        if "accuracy_target" in self.model_fields_set:
            return self
        target = PROFILER_ACCURACY_TARGETS.get(backend)
        if target is None or target == self.accuracy_target:
            return self
        return _with_target(self, target)


#: The default ``accuracy_target`` of a profiler other than py-spy (whose is the field's
#: default): the expected L1 error of the median samples a fixed 100 Hz profiler of that
#: kind takes in a minute-long phase of the benchmark's shop, times a ratio. py-spy's
#: ratio is the L1 bound itself (1.5x); the native sampler's is 1.1x (``python
#: bench/accuracy_target.py bench/output/bench_s51_shop_seed?_native.json --ratio 1.1``
#: → ``bench/output/accuracy_target_native_s51.json``: static-100's median 453 samples
#: a phase, about 372 at the target). At 1.5x a phase's expected error sat on the
#: bound, and a single draw of static-100 put half the phases over it
#: (docs/benchmarks.md, session 48); sampling only while a request is open
#: (``sample_scope: requests``) buys the extra samples for about the CPU the 1.5x
#: target cost. Until session 51 it was 0.093 (717 samples, 589 at the target, from
#: session 44's runs): the sampler then counted a holder that waited for a CPU as CPU
#: when it got the CPU the sampler gave back, and its late ticks read short stretches
#: low (docs/benchmarks.md, "Late ticks under contention, and a holder that waited");
#: read right, static-100 takes fewer samples a phase and its profile is at its
#: sampling error.
#: The in-process fallback keeps py-spy's (its samples a phase not measured).
PROFILER_ACCURACY_TARGETS: Mapping[str, float] = {"native": 0.117}


@functools.lru_cache(maxsize=64)
def _with_target(goal: RewardWeights, target: float) -> RewardWeights:
    """``goal`` with ``target``, set (kept: the poll path asks at every window)."""
    return goal.model_copy(update={"accuracy_target": target})


class OverheadBudget(_Spec):
    """Limits: profiler CPU of all agent threads (fraction of one core, held on average
    over the goal's ``cost_horizon_s``) and, only if set, bytes exported per second."""

    cpu_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.02
    bytes_per_s: Annotated[float, Field(gt=0.0, le=1e9)] | None = None


class SessionSpec(_Spec):
    """Body of ``POST /v1/sessions``."""

    service: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    duration_s: Annotated[float, Field(ge=MIN_SESSION_SECONDS, le=MAX_SESSION_SECONDS)] = (
        DEFAULT_SESSION_SECONDS
    )
    mode: Mode = Mode.ADAPTIVE
    policy: PolicyKind | None = None  # default: "adaptive" in adaptive mode, else "static"
    goal: RewardWeights = Field(default_factory=RewardWeights)
    budget: OverheadBudget = Field(default_factory=OverheadBudget)
    initial_params: Params | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> SessionSpec:
        """Validate a JSON-like mapping; raise :class:`ContractError` naming the field."""
        if not isinstance(data, Mapping):
            raise ContractError([("", f"must be a JSON object, got {type(data).__name__}")])
        try:
            spec = cls.model_validate(dict(data))
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        if spec.policy is None:
            kind = PolicyKind.ADAPTIVE if spec.mode is Mode.ADAPTIVE else PolicyKind.STATIC
            spec = spec.model_copy(update={"policy": kind})
        elif spec.mode is Mode.STATIC and spec.policy is not PolicyKind.STATIC:
            raise ContractError(
                [("policy", f"{spec.policy.value!r} needs mode 'adaptive' (mode is 'static')")]
            )
        return spec
