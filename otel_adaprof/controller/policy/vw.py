"""The adaptive policy: a Vowpal Wabbit contextual bandit over the action catalog.

One :class:`VWPolicy` (one VW model) per service. Each decision builds a multi-line
``cb_explore_adf`` example: a *shared* line with the state features (namespace ``S``,
see :mod:`~otel_adaprof.controller.policy.features`) and one line per action the
safety guard allows (namespace ``A``: the action's features, tags and its id).
``-q SA`` crosses every state feature with every action feature, so the model learns,
per action and per action trait (rate, depth, ratio, filters), how the reward moves
with the state: a linear model per action that still shares what actions have in common.

Exploration is **SquareCB** (``--squarecb``, Foster & Rakhlin 2020): an action's
probability falls with its estimated gap to the best, ``p = 1 / (A + γ·gap)``, and
``γ`` grows with the number of decisions. Unlike ε-greedy it almost never tries an
action the model already knows is much worse (on this problem: expensive rates while
the profile is converged), and unlike cover/bagging it needs one model, so a decision
stays well under a millisecond. The probability of every decision is logged with it.

Learning is delayed credit: :meth:`VWPolicy.learn` is called by the controller only
with the reward of a window that ran under the decision's config version; the example
is rebuilt from the features logged in the decision, so it needs nothing else.

Usage::

    >>> from otel_adaprof.controller.policy.base import DecisionContext
    >>> from otel_adaprof.params import Params
    >>> from otel_adaprof.session_spec import Mode
    >>> policy = VWPolicy(seed=1)
    >>> ctx = DecisionContext(service="shop", initial_params=Params(),
    ...                       params_in_force=Params(), mode=Mode.ADAPTIVE)
    >>> d = policy.decide(ctx)
    >>> 0.0 < d.probability <= 1.0, d.action in policy.catalog.names
    (True, True)
    >>> policy.learn(ctx, d, reward=0.5)
    >>> clone = VWPolicy(seed=1, model=policy.snapshot())
    >>> offered = list(policy.catalog)
    >>> clone.scores(d.features["state"], offered) == policy.scores(d.features["state"], offered)
    True
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import vowpal_wabbit_next as vw

from otel_adaprof.controller.config import PolicyConfig
from otel_adaprof.controller.policy.base import Decision, DecisionContext, Policy
from otel_adaprof.controller.policy.catalog import Action, Catalog, load_catalog
from otel_adaprof.controller.policy.features import (
    C_FEATURES,
    ActionContext,
    Trend,
    context_dict,
    reflex_burst_seconds,
    state_features,
)
from otel_adaprof.controller.policy.safety import SafetyGuard
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.session_spec import Mode

#: SquareCB's γ scale: higher = greedier. Tuned in the simulator (``adaprof sim``).
DEFAULT_GAMMA_SCALE = 100.0
#: Rewards are clipped to ±this before learning (one wild window must not wreck the model).
REWARD_CLIP = 10.0
#: In a steady phase, the params in force are kept while the model gives them at least
#: this share of the best action's probability (hysteresis: no flip-flop between equals).
SETTLE_RATIO = 0.2
#: A settled phase chooses among the maintenance actions expected to cost at most this
#: many times the cheapest one's (the guard's cost per action). The packaged model
#: preferred ``maintain-1hz-calm`` when settled: in session 31's 4x run 120 windows at
#: 0.0068 of a core against the watch's 0.0039, 2.5 of the run's 11.6 CPU-seconds
#: (bench/output/cpu_by_action_s31.json), for samples no settled phase needs and a
#: duller reflex (12 std; docs/benchmarks.md, session 32). A retrained model preferred
#: it more.
SETTLE_COST_SLACK = 1.25
#: Bits of the feature hash (2**16 weights): the state × action crossings number about
#: 2,000, so collisions stay rare while a model stays a few hundred kB, not megabytes.
HASH_BITS = 16
#: Examples in VW's example pool. The controller hands VW one multi-line example at a
#: time, so a small pool is enough; VW's default (256) costs about 7 MB of RSS per model
#: whatever ``-b`` is (bench/model_bits.py, bench/output/model_bits.md). Not stored in
#: snapshots: models load under any pool size.
RING_SIZE = 16
#: The packaged pretrained model (``adaprof train --sim --out`` this path), used by
#: services without a snapshot unless the config names another (or ``"none"``).
DEFAULT_MODEL = "default_model.vw"
#: Tag of the catalog's maintenance actions (what a steady phase settles on).
MAINTAIN_TAG = "maintain"
#: Tag of the learning actions (20-100 Hz): what a phase short of its target chooses from.
LEARN_TAG = "learn"
#: Slowest learning rate the phase rule runs (Hz). With the budget bank counting only
#: the windows seen (session 28) the bank rarely affords 100 Hz for long, and the rule
#: kept learning at 20 Hz instead: the benchmark's 20 Hz windows gave 0.8-1.7 samples a
#: second for 0.0115-0.0134 of a core (100 Hz: 12.8 for 0.040, with the watch between
#: bursts the same samples per CPU-second), slow-request coverage 0.26-0.31 (the watch's
#: capture 0.52-0.56), and 10 s py-spy runs that held the hot path's first samples back
#: (detection 1.84x static-100's in one run). Below this rate the rule watches and
#: saves for a faster burst; the model may still choose a slower rate itself. 100 Hz
#: only was tried in session 32 (a sample learnt at 50 Hz cost 2.8-4.5 ms of CPU, at
#: 100 Hz 1.7-2.1: bench/output/cpu_by_action_s32.json): CPU fell 4-10 % in four
#: benchmark runs, but saving for three 100 Hz windows spent 0.74-0.87 of the budget at
#: 1x (0.83-0.92 with 50 Hz), and four demos got 471-695 workload samples (one under
#: the 500 target); docs/benchmarks.md, session 32. Not kept. Instead the clock beacon
#: moves every other sample (session 33): 50 Hz learning's samples cost 2.0-2.9 ms
#: (bench/output/cpu_by_action_s33.json).
RULE_MIN_LEARN_HZ = 50.0
#: Windows the bank must carry for a burst at the fastest learning rate the budget
#: guard offers to start (100 Hz; 50 Hz when 100 Hz does not fit one window); a slower
#: one needs :data:`~otel_adaprof.controller.policy.safety.BURST_WINDOWS`.
#: Two windows of 100 Hz cost about what three of 50 Hz do, and their samples come
#: sooner and no dearer: in session 36's runs a sample learnt at 50 Hz cost 2.6-3.3 ms
#: of profiler CPU, at 100 Hz 2.0-2.6 (the 4x runs), static-100's 1.9-2.9
#: (``bench/cpu_by_action.py``, ``bench/output/cpu_by_action_s36.json``), and a
#: 50 Hz py-spy run lasts 4 s (200 samples), so the samples of a hot path that came on
#: during it reached the controller up to 4 s + a window later: with learning at 50 Hz
#: through the onset, detection took 7.1 s against static-100's 2.2 (session 36, ledger
#: seed 3). Until session 37 every rate needed three windows, and learning at 1x ran
#: at 50 Hz in every one of its windows.
SHORT_BURST_WINDOWS = 2
#: A change building up: the window's CPU-per-request or span-rate statistic (CUSUM, in
#: baseline standard deviations, either sign) at least this far from 0, a quarter of the
#: sensitive reflex's threshold (8). The phase is then not settled but learnt on: a
#: change the agent has not signalled yet must not be met by a drop to the watch
#: (session 27). Latency is left out: a latency change alone does not show in cpu-mode
#: samples, and under the benchmark's doubled load its statistic sat at 4-5 for a
#: minute, alternating the phase between learning and settling window by window.
#: From a settled phase (a maintenance action in force) only a *rise* counts
#: (:func:`_phase_needs_samples`).
BUILDING_STD = 2.0


def change_building(state: ObservedState | None, *, rising_only: bool = False) -> bool:
    """Whether the window's change signals show a change building up (not yet fired);
    ``rising_only``: more CPU per request or more spans only (work appearing).

    >>> from otel_adaprof.protocol import ChangeSignals, ObservedState
    >>> def state(**signals: float) -> ObservedState:
    ...     return ObservedState(window_start=0.0, window_seconds=3.0,
    ...                          change_signals=ChangeSignals(**signals))
    >>> change_building(state(cpu_per_request=2.4)), change_building(state(latency=4.5))
    (True, False)
    >>> change_building(state(cpu_per_request=-2.4), rising_only=True)
    False
    """
    if state is None:
        return False
    signals = state.change_signals
    if rising_only:
        return max(signals.cpu_per_request, signals.span_rate) >= BUILDING_STD
    return max(abs(signals.cpu_per_request), abs(signals.span_rate)) >= BUILDING_STD


def _bursting(ctx: DecisionContext) -> bool:
    """Whether the agent's reflex burst during the reported window (no rule decides then);
    a glimpse alone is no burst (:func:`reflex_burst_seconds`)."""
    return ctx.state is not None and reflex_burst_seconds(ctx.state) > 0


def _phase_needs_samples(ctx: DecisionContext, *, settled: bool = False) -> bool | None:
    """Whether the service's current phase still needs samples: a change just seen, or
    signalled and not yet confirmed, or building up in the window's change signals
    (only a rise once the phase is ``settled``: a maintenance action in force), or its
    profile short of the accuracy target. ``None`` before the agent's first report
    (nothing to judge: neither phase rule applies).

    A change building up keeps a phase from settling, because settling moves the agent
    to a profiling level whose change detector may have no baseline since the last
    change (it would learn the new regime as its own: session 27). From a phase settled
    already it starts learning on a rise only: the onset of a hot path is a rise of the
    CPU per request, and a learning window on it is what finds a subtle one (the
    ledger's, +18 % a request: in a session-36 run that did not learn on a rise either,
    the watch's statistic climbed 2.3, 2.4, 3.2 ... 7.2 over 25 s before its reflex
    fired, and detection took 27.8 s against static-100's 9.5). A drop waits for the
    detector: in session 36's ``--phase-scale 4`` ledger run the statistic alone had
    started 20 of adaptive's 73 learning windows, 14 of them on a drop (in the shop's 4
    of 17), about a fifth of its profiler CPU-seconds with their sequels
    (``bench/building_windows.py``)."""
    phase = ctx.phase
    if phase is None or ctx.state is None:
        return None
    return bool(
        phase.changed
        or phase.pending_change_unix
        or change_building(ctx.state, rising_only=settled)
        or phase.accuracy_reached(ctx.goal.functions) > phase.target(ctx.goal)
    )


#: Params objects whose "same as in force" mask over the catalog is kept (cleared beyond).
SAME_CACHE_MAX = 256
#: Use only vowpal_wabbit_next's public API (tests compare both paths; see _VWCalls).
FORCE_PUBLIC_API = False
#: Learning rate and its decay exponent (0 = constant: the world drifts, keep adapting).
LEARNING_RATE = 0.1
POWER_T = 0.0


def vw_args(gamma_scale: float = DEFAULT_GAMMA_SCALE) -> list[str]:
    """The VW command line of every model (a snapshot loads with the same arguments).

    No ``--random_seed``: SquareCB's probabilities are deterministic, the policy samples
    from them with its own seeded generator, and a snapshot must load under any seed.
    """
    return [
        "--cb_explore_adf",
        "--squarecb",
        "--gamma_scale",
        str(gamma_scale),
        "-q",
        "SA",
        "-q",
        "SC",
        "-l",
        str(LEARNING_RATE),
        "--power_t",
        str(POWER_T),
        "-b",
        str(HASH_BITS),
        "--ring_size",
        str(RING_SIZE),
        "--quiet",
    ]


def default_model() -> bytes | None:
    """The packaged pretrained model's bytes (``None`` if the package has none).

    >>> blob = default_model()
    >>> blob is None or len(blob) < 2_000_000
    True
    """
    path = resources.files("otel_adaprof.controller.policy").joinpath(DEFAULT_MODEL)
    return path.read_bytes() if path.is_file() else None


#: ``"|NS name:%.5g ..."`` templates, by namespace and names of the non-zero features.
_TEMPLATES: dict[tuple[str, tuple[str, ...]], str] = {}
_TEMPLATES_MAX = 4096


def _template(namespace: str, names: tuple[str, ...]) -> str:
    template = _TEMPLATES.get((namespace, names))
    if template is None:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        template = f"|{namespace} " + " ".join(n.replace("%", "%%") + ":%.5g" for n in names)
        _TEMPLATES[(namespace, names)] = template
    return template


def _line(namespace: str, features: Mapping[str, float]) -> str:
    """One namespace of a VW text line: ``|NS name:value ...``, values with 5
    significant digits, zeros left out (one ``%`` formatting from a kept template;
    ``"%.5g" % v`` is ``f"{v:.5g}"``).

    >>> _line("S", {"a": 0.123456, "b": 0.0, "c": 2})
    '|S a:0.12346 c:2'
    """
    names = tuple([name for name, value in features.items() if value])
    return _template(namespace, names) % tuple([v for v in features.values() if v])


#: ``"shared |S name:%.5g ..."`` templates, by the names of a state's features.
_SHARED: dict[tuple[str, ...], str] = {}


def _shared_text(feats: Mapping[str, float]) -> str:
    """``"shared " + _line("S", feats)`` as VW parses it: every feature written (one
    ``%`` from a template kept per tuple of names), zeros included, which VW's text
    parser drops as ``_line`` leaves them out; a value that is not a number takes
    ``_line``'s path.

    >>> _shared_text({"a": 0.123456, "b": 0.0})
    'shared |S a:0.12346 b:0'
    """
    names = tuple(feats)
    template = _SHARED.get(names)
    if template is None:
        if len(_SHARED) >= _TEMPLATES_MAX:
            _SHARED.clear()
        template = "shared |S " + " ".join(n.replace("%", "%%") + ":%.5g" for n in names)
        _SHARED[names] = template
    try:
        return template % tuple(feats.values())
    except TypeError:
        return "shared " + _line("S", feats)


#: Index of the ``C`` namespace's feature group in an example.
_C = ord("C")
#: Columns of a logged ``C`` row.
_C_WIDTH = len(C_FEATURES)


class _VWCalls:
    """Parse, predict and learn on one workspace.

    vowpal_wabbit_next's ``Workspace.predict_one``/``learn_one`` check the label type of
    every example in Python (twice per example) and ``TextFormatParser.parse_line``
    wraps each parsed example in a Python object: a third of the policy's VW time for
    a dozen examples per decision. The examples here are parsed by the workspace's own
    parser, so their label type is the workspace's by construction, and these calls go
    to the same native functions the wrapper calls (vowpal-wabbit-next 0.7, pinned).
    When the package does not have them, the public API is used: the same results.
    """

    def __init__(self, ws: Any) -> None:
        core = getattr(vw, "_core", None)
        inner = getattr(ws, "_workspace", None)
        self.direct = all(
            (
                hasattr(core, "_parse_line_text"),
                hasattr(inner, "predict_multi_ex_one"),
                hasattr(inner, "learn_multi_ex_one"),
            )
        )
        if self.direct and not FORCE_PUBLIC_API:
            parse_text = core._parse_line_text  # type: ignore[union-attr]
            self.parse: Callable[[str], Any] = lambda line: parse_text(inner, line)
            self.predict: Callable[[list[Any]], Any] = inner.predict_multi_ex_one  # type: ignore[union-attr]
            self.learn: Callable[[list[Any]], Any] = inner.learn_multi_ex_one  # type: ignore[union-attr]
        else:
            self.direct = False
            self.parse = vw.TextFormatParser(ws).parse_line
            self.predict = ws.predict_one
            self.learn = ws.learn_one


class _State(dict[str, float]):
    """A decision's state features (a plain dict to everything else: logged as JSON,
    compared, copied), carrying the text of its shared line once it is formatted."""

    __slots__ = ("line",)

    def __init__(self, feats: Mapping[str, float]) -> None:
        super().__init__(feats)
        self.line: str | None = None


def _c_line(value: object) -> str:
    """``_line("C", context_dict(value))`` without the dict for a row logged as a list
    (what :meth:`VWPolicy.decide` logs): the same text."""
    if isinstance(value, list) and len(value) == len(C_FEATURES):
        values = [float(v) for v in value]
        names = tuple([name for name, v in zip(C_FEATURES, values, strict=True) if v])
        return _template("C", names) % tuple([v for v in values if v])
    return _line("C", context_dict(value))


def _action_line(action: Action) -> str:
    return _line("A", action.features) + f" id_{action.name.replace('-', '_')}"


class VWPolicy(Policy):
    """Contextual bandit over a catalog with a budget guard (see the module doc)."""

    name: ClassVar[str] = "adaptive"

    def __init__(
        self,
        catalog: Catalog | None = None,
        *,
        seed: int = 0,
        model: bytes | None = None,
        gamma_scale: float = DEFAULT_GAMMA_SCALE,
        guard: SafetyGuard | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else load_catalog()
        self.guard = guard if guard is not None else SafetyGuard(self.catalog)
        self._args = vw_args(gamma_scale)
        self._rng = random.Random(seed)
        self._ws = vw.Workspace(self._args, model_data=model) if model else vw.Workspace(self._args)
        self._vw = _VWCalls(self._ws)
        self._lines = {a.name: _action_line(a) for a in self.catalog}
        self.updates = 0
        self.trend = Trend()
        self._names = self.catalog.names
        self._same_cache: dict[int, tuple[Params, list[float]]] = {}
        self._rows_templates: dict[tuple[str, ...], str] = {}
        g = self.guard
        #: Rate, trace ratio and prior marker pass share per action (catalog order).
        self._action_constants = (g.rate.tolist(), g.ratio.tolist(), g.pass_share.tolist())
        self._maintains = [MAINTAIN_TAG in a.tags for a in self.catalog]
        self._learns = [LEARN_TAG in a.tags for a in self.catalog]
        self._init_parsing()

    def _init_parsing(self) -> None:
        self._cached: dict[str, tuple[Any, Any]] = {}  # name -> (example, its C group)
        self._c_template = "|C " + " ".join(f"{k}:1" for k in C_FEATURES)
        probe = self._vw.parse(self._c_template)
        self._c_indices = np.array(probe[_C].indices, dtype=np.uint64)
        assert len(self._c_indices) == len(C_FEATURES)

    @classmethod
    def from_config(cls, config: PolicyConfig, seed: int = 0) -> VWPolicy:
        """The policy of a new service: catalog from ``config.catalog`` (default: the
        packaged one), seeded from ``config.model`` (``adaprof train``), or, when that is
        unset and the catalog is the packaged one, from the packaged pretrained model
        (:data:`DEFAULT_MODEL`); ``model: none`` starts cold.

        This is the one call the controller's policy factory needs for ``adaptive``
        sessions; a service with a snapshot in the database then calls
        :meth:`restore` with it.

        >>> from otel_adaprof.controller.config import PolicyConfig
        >>> VWPolicy.from_config(PolicyConfig()).catalog.cheapest().name
        'off'
        """
        catalog = load_catalog(config.catalog)
        if config.model and config.model.lower() != "none":
            model: bytes | None = Path(config.model).read_bytes()
        elif config.model is None and config.catalog is None:
            model = default_model()
        else:
            model = None
        return cls(catalog, seed=seed, model=model)

    @classmethod
    def from_file(cls, path: str | Path, catalog: Catalog | None = None, seed: int = 0) -> VWPolicy:
        """A policy seeded from a model file written by ``adaprof train``."""
        return cls(catalog, seed=seed, model=Path(path).read_bytes())

    # -- deciding --------------------------------------------------------------------

    def decide(self, ctx: DecisionContext) -> Decision:
        if ctx.mode == Mode.STATIC:
            # A static session never explores: its params, with certainty.
            return Decision(params=ctx.initial_params, probability=1.0, action="static")
        self.guard.observe(ctx)
        return self._decide_observed(ctx)

    def decide_shared(self, ctx: DecisionContext, shared: Decision) -> Decision:
        """``shared`` (the service's decision for another agent's poll moments ago), or
        the budget's retreat when this window leaves the bank spent. The window still
        counts in the budget bank; the model neither predicts nor learns (the answer
        logs no ``offered`` actions: :meth:`learn` skips it).

        >>> from otel_adaprof.controller.policy.base import DecisionContext
        >>> from otel_adaprof.params import Params
        >>> from otel_adaprof.session_spec import Mode
        >>> policy = VWPolicy()
        >>> ctx = DecisionContext.initial("shop", Params())
        >>> ctx = DecisionContext(**{**ctx.__dict__, "mode": Mode.ADAPTIVE})
        >>> first = policy.decide(ctx)
        >>> again = policy.decide_shared(ctx, first)
        >>> (again.params is first.params, again.action == first.action, dict(again.features))
        (True, True, {'shared': True})
        """
        if ctx.mode == Mode.STATIC:
            return self.decide(ctx)
        self.guard.observe(ctx)
        if self.guard.must_retreat(ctx):
            return self._decide_observed(ctx)
        # a settled service's agents all poll less often (AgentsConfig.interval_for)
        settled = {"settled": True} if shared.features.get("settled") else {}
        return Decision(
            params=shared.params,
            probability=shared.probability,
            action=shared.action,
            explored=shared.explored,
            features={"shared": True, **settled},
        )

    def _decide_observed(self, ctx: DecisionContext) -> Decision:
        """:meth:`decide` once the guard has seen the window."""
        feats = _State(state_features(ctx))
        feats["bank"] = min(self.guard.average / ctx.budget.cpu_fraction, 5.0) / 5.0
        if ctx.state is not None:
            feats.update(self.trend.update(ctx.state))
        if self.guard.must_retreat(ctx):
            cheap = self.guard.retreat_action(ctx)
            return Decision(
                params=cheap.params,
                probability=1.0,
                action=cheap.name,
                features={"state": feats, "offered": [cheap.name], "forced": "over_budget"},
            )
        idx, cpu, data = self.guard.assess_lists(ctx)
        names = [self._names[i] for i in idx]
        mask = self._same_as(ctx.params_in_force)
        same = [mask[i] for i in idx]
        rates, ratios, shares = self._action_constants
        rows = ActionContext(ctx).rows(
            [rates[i] for i in idx],
            [ratios[i] for i in idx],
            [shares[i] for i in idx],
            cpu,
            data,
            same,
        )
        pmf = self._pmf(feats, names, rows)
        greedy = pmf.index(max(pmf))  # the first most probable
        # the phase rules, once the agent has reported: learn while the phase needs
        # samples, settle once it does not (None: the model draws as usual)
        maintains = self._maintains  # a maintenance action in force: the phase settled
        at_rest = any(m and w for m, w in zip(mask, maintains, strict=True))
        needs = _phase_needs_samples(ctx, settled=at_rest)
        settled = self._settled(ctx, pmf, same, idx, cpu) if needs is False else None
        learning = self._learning(ctx, same, idx, cpu) if needs else None
        # short of the target with no room for a burst: watch and save for one
        saving = self._saving(ctx, same, idx, cpu) if needs and learning is None else None
        ruled = next((r for r in (settled, learning, saving) if r is not None), None)
        choice = ruled if ruled is not None else self._sample(pmf)
        probability = 1.0 if ruled is not None else pmf[choice]
        action = self.catalog[idx[choice]]
        # logged as plain lists (columns C_FEATURES): JSON-ready
        context = dict(zip(names, rows, strict=True))
        features: dict[str, Any] = {"state": feats, "offered": names, "context": context}
        if settled is not None:
            features["settled"] = True
        elif learning is not None:
            features["learning"] = True
        elif saving is not None:
            features["saving"] = True
        return Decision(
            params=action.params,
            probability=probability,
            action=action.name,
            explored=ruled is None and choice != greedy,  # a rule's choice is no draw
            features=features,
        )

    def _same_as(self, params: Params) -> list[float]:
        """1.0 for each catalog action whose params equal ``params`` (catalog order),
        0.0 elsewhere; computed once per params object (params are immutable, and the
        params in force are mostly the catalog's own objects)."""
        hit = self._same_cache.get(id(params))
        if hit is not None and hit[0] is params:
            return hit[1]
        mask = [1.0 if a.params is params or a.params == params else 0.0 for a in self.catalog]
        if len(self._same_cache) >= SAME_CACHE_MAX:
            self._same_cache.clear()
        self._same_cache[id(params)] = (params, mask)
        return mask

    def _settled(
        self, ctx: DecisionContext, pmf: Sequence[float], same: Sequence[float],
        idx: Sequence[int], cpu: Sequence[float],
    ) -> int | None:  # fmt: skip
        """In a steady phase (its profile at the target, no change just seen or building
        up, no burst in flight) the reward's accuracy term is 0 by construction, so the
        policy does not explore and chooses among the maintenance actions only (tag
        ``maintain``) expected to cost at most :data:`SETTLE_COST_SLACK` times the
        cheapest of them: a settled phase needs no samples, so a dearer maintenance rate
        buys nothing the reward counts. Among those it keeps the params in force while
        the model gives them at least :data:`SETTLE_RATIO` of the best one's
        probability, else takes that best one. A steady phase sees one step down to
        maintenance, then no change. Called only for a phase that needs no more samples
        (:func:`_phase_needs_samples`); ``None`` while a burst is in flight."""
        if _bursting(ctx):
            return None
        maintains = self._maintains
        maintain = [i for i, j in enumerate(idx) if maintains[j]]
        if maintain:
            low = min(cpu[i] for i in maintain)
            maintain = [i for i in maintain if cpu[i] <= SETTLE_COST_SLACK * low]
        else:
            ceiling = ctx.params_in_force.rate_hz
            maintain = [
                i for i in range(len(pmf)) if self.catalog[int(idx[i])].params.rate_hz <= ceiling
            ]
        if not maintain:
            return None
        best = max(maintain, key=pmf.__getitem__)
        here = [i for i in maintain if same[i]]
        if here and pmf[here[0]] >= SETTLE_RATIO * pmf[best]:
            return here[0]
        return best

    def _saving(
        self, ctx: DecisionContext, same: Sequence[float], idx: Sequence[int],
        cpu: Sequence[float],
    ) -> int | None:  # fmt: skip
        """A phase short of its target with no room for a learning burst saves for one:
        the maintenance action (tag ``maintain``) expected to cost least, the one in
        force among equals. The cheapest one refills the bank soonest, and a burst's
        samples cost less than a low rate's (the cost fit; docs/benchmarks.md, session
        28: saving on the model's preferred 5 Hz maintenance, the demo never afforded a
        burst in 180 s). ``None`` while a reflex burst is in flight or with no
        maintenance action offered (the model chooses)."""
        if _bursting(ctx):
            return None
        maintains = self._maintains
        maintain = [i for i, j in enumerate(idx) if maintains[j]]
        if not maintain:
            return None
        low = min(cpu[i] for i in maintain)
        cheapest = [i for i in maintain if cpu[i] <= low]
        here = [i for i in cheapest if same[i]]
        return here[0] if here else cheapest[0]

    def _learning(
        self, ctx: DecisionContext, same: Sequence[float], idx: Sequence[int],
        cpu: Sequence[float],
    ) -> int | None:  # fmt: skip
        """While a phase needs samples (:func:`_phase_needs_samples`), the reward pays
        for them and the policy gathers them: the learning action (tag ``learn``) in
        force while the budget guard still offers it (no flapping between rates as the
        bank's room moves), else the fastest one, at :data:`RULE_MIN_LEARN_HZ` or faster,
        whose burst the bank can carry for
        :data:`~otel_adaprof.controller.policy.safety.BURST_WINDOWS` windows
        (:data:`SHORT_BURST_WINDOWS` for the fastest rate; bursts that last, not a
        window squeezed in whenever the bank refills), since py-spy's cost per
        sample falls with its rate (the committed cost fit, ``a + b·rate``: 0.0008 of a
        core per Hz at 20 Hz, 0.00057 at 100 Hz; docs/benchmarks.md, "Profiler cost
        model") and the phase's target comes soonest.
        ``None`` when the bank has no room for such a burst (then the phase saves for
        one, :meth:`_saving`, logged ``"saving": true``; during a reflex burst the model
        chooses as usual among what the guard offers): the budget bounds the rule, not
        the rule the budget.

        Without it the pretrained model watched through a detected hot path at 4x phases
        (``watch-reflex`` at 0.999 for 240 s with the phase's error at 0.119 against the
        target 0.09: 77 samples, docs/benchmarks.md, session 26); drawing the rate by
        the model's probabilities instead gave 20 Hz in a third of the learning windows
        in the simulator and fewer samples per phase than before the rule. Without the
        change building up, a phase reaching its target as the hot path came on settled
        on the watch, whose change detector had no baselines yet (the level not visited
        since the last change) and learnt the new regime as its own: nothing fired for
        66 s (docs/benchmarks.md, session 27)."""
        learns, rates = self._learns, self._action_constants[0]
        learn = [i for i, j in enumerate(idx) if learns[j] and rates[j] >= RULE_MIN_LEARN_HZ]
        if not learn:
            return None
        here = [i for i in learn if same[i]]
        if here:  # learning already, at a rate the bank still allows: no flapping
            return here[0]
        # the fastest rate on offer starts a burst that can last SHORT_BURST_WINDOWS
        # windows; a slower one only a burst of BURST_WINDOWS (a new burst starts only if
        # it can last)
        fastest = max(learn, key=lambda i: rates[idx[i]])  # the first of equal rates
        if cpu[fastest] <= self.guard.burst_room(ctx, windows=SHORT_BURST_WINDOWS):
            return fastest
        room = self.guard.burst_room(ctx)
        learn = [i for i in learn if cpu[i] <= room]
        if not learn:
            return None
        return max(learn, key=lambda i: rates[idx[i]])

    def _examples(
        self,
        feats: Mapping[str, float],
        names: Sequence[str],
        dyn: Mapping[str, Any],
        label: tuple[str, str] | None = None,
    ) -> list[Any]:
        """Fresh examples parsed from text (for learning: the labelled example is new)."""
        parse = self._vw.parse
        examples = [parse(self._shared_line(feats))]
        lines = self._action_lines(names, dyn)
        for name, line in zip(names, lines, strict=True):
            if label is not None and label[0] == name:
                line = f"{label[1]} {line}"
            examples.append(parse(line))
        return examples

    def _action_lines(self, names: Sequence[str], dyn: Mapping[str, Any]) -> list[str]:
        """Each offered action's line, its ``C`` features from ``dyn`` (as logged).

        Rows logged as lists of :data:`C_FEATURES` (what :meth:`decide` logs) are all
        formatted by one ``%`` from a template kept per tuple of names, zeros included:
        VW's text parser drops zero-valued features, so the examples are the ones the
        per-action ``_c_line`` text (zeros left out) gives. Anything else takes that
        per-action path."""
        flat: list[Any] = []
        for name in names:
            row = dyn.get(name)
            if type(row) is not list or len(row) != _C_WIDTH:
                return [f"{self._lines[name]} {_c_line(dyn.get(name))}" for name in names]
            flat += row
        key = tuple(names)
        template = self._rows_templates.get(key)
        if template is None:
            if len(self._rows_templates) >= _TEMPLATES_MAX:
                self._rows_templates.clear()
            c_part = " ".join(f"{k}:%.5g" for k in C_FEATURES)
            template = "\n".join(
                f"{self._lines[name].replace('%', '%%')} |C {c_part}" for name in names
            )
            self._rows_templates[key] = template
        try:
            return (template % tuple(flat)).split("\n")
        except TypeError:  # a value that is not a number: the per-action path says how
            return [f"{self._lines[name]} {_c_line(dyn.get(name))}" for name in names]

    def _reused_examples(
        self,
        feats: Mapping[str, float],
        names: Sequence[str],
        matrix: np.ndarray | Sequence[Sequence[float]],
    ) -> list[Any]:
        """Examples for prediction: each action's example is parsed once and only its
        ``C`` features are rewritten (text formatting and parsing of 64 lines would
        cost most of the millisecond a decision may take)."""
        examples = [self._vw.parse(self._shared_line(feats))]
        rows = np.asarray(matrix, dtype=np.float32)
        indices = self._c_indices
        cached = self._cached
        for name, row in zip(names, rows, strict=True):
            hit = cached.get(name)
            if hit is None:
                ex = self._vw.parse(f"{self._lines[name]} {self._c_template}")
                hit = cached[name] = (ex, ex[_C])
            group = hit[1]
            group.truncate_to(0)
            group.push_many_features(indices, row)
            examples.append(hit[0])
        return examples

    @staticmethod
    def _shared_line(feats: Mapping[str, float]) -> str:
        """The shared (state) line of a decision's examples: formatted once per decision
        and kept on its state features (:class:`_State`) for its learning; a decision
        read back from the database is formatted again (the same text)."""
        line = getattr(feats, "line", None)
        if line is None:
            line = _shared_text(feats)
            if isinstance(feats, _State):
                feats.line = line
        return line

    def scores(
        self,
        feats: Mapping[str, float],
        offered: Sequence[Action],
        dyn: Mapping[str, Any] | None = None,
    ) -> list[float]:
        """The model's probability of each offered action in the state ``feats``;
        ``dyn`` maps action names to their ``C`` features in this state (dicts or
        lists in :data:`C_FEATURES` order, as logged), missing = zeros."""
        names = [a.name for a in offered]
        dyn = dyn or {}
        matrix = np.array(
            [[context_dict(dyn.get(n)).get(k, 0.0) for k in C_FEATURES] for n in names]
        ).reshape(len(names), len(C_FEATURES))
        return self._pmf(feats, names, matrix)

    def _pmf(
        self,
        feats: Mapping[str, float],
        names: Sequence[str],
        matrix: np.ndarray | Sequence[Sequence[float]],
    ) -> list[float]:
        result = cast(
            "list[tuple[int, float]]",
            self._vw.predict(self._reused_examples(feats, names, matrix)),
        )
        pmf = [0.0] * len(names)
        for index, prob in result:
            pmf[index] = prob
        total = sum(pmf)
        if not total > 0 or math.isnan(total):
            return [1.0 / len(names)] * len(names)
        return [p / total for p in pmf]

    def _sample(self, pmf: Sequence[float]) -> int:
        r = self._rng.random()
        acc = 0.0
        for i, p in enumerate(pmf):
            acc += p
            if r < acc:
                return i
        return len(pmf) - 1

    # -- learning --------------------------------------------------------------------

    def learn(self, ctx: DecisionContext, decision: Decision, reward: float) -> None:
        """Learn from a credited decision (rebuilt from its logged features)."""
        feats = decision.features.get("state")
        offered = decision.features.get("offered")
        if not isinstance(feats, Mapping) or not isinstance(offered, list):
            return  # a static or foreign decision: nothing this model can learn from
        names = [n for n in offered if n in self._lines]
        if decision.action not in names or not math.isfinite(reward):
            return
        cost = -max(-REWARD_CLIP, min(REWARD_CLIP, reward))
        prob = min(1.0, max(decision.probability, 1e-4))
        dyn = decision.features.get("context")
        dyn = dyn if isinstance(dyn, Mapping) else {}
        label = (decision.action, f"0:{cost:.6g}:{prob:.6g}")
        self._vw.learn(self._examples(feats, names, dyn, label))
        self.updates += 1

    # -- persistence -----------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The VW model as bytes (load with ``VWPolicy(model=...)`` or :meth:`restore`)."""
        return bytes(self._ws.serialize())

    def restore(self, blob: bytes) -> None:
        self._ws = vw.Workspace(self._args, model_data=blob)
        self._vw = _VWCalls(self._ws)
        self._init_parsing()

    def describe(self) -> dict[str, Any]:
        """Arguments and counters, for logs and ``adaprof policy``."""
        return {"args": list(self._args), "actions": len(self.catalog), "updates": self.updates}
