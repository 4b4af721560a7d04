"""The action catalog: the candidate params the adaptive policy chooses between.

A catalog is a YAML document (``configs/actions.yaml`` is the packaged default) with a
list of named params. Each entry is validated with :meth:`Params.parse`, so a bad
entry is refused with an error that names the entry and the field. Every action also
gets *action features* derived from its params (log rate, depth, trace ratio,
filters, trigger) plus optional tags, so the model generalises across actions.

Usage::

    >>> from otel_adaprof.controller.policy.catalog import load_catalog, parse_catalog
    >>> catalog = load_catalog()          # the packaged default
    >>> len(catalog) <= 64, catalog.cheapest().name
    (True, 'off')
    >>> parse_catalog({"actions": [{"name": "x", "params": {"stack_depth": 0}}]})
    Traceback (most recent call last):
    ...
    otel_adaprof.errors.ContractError: actions[0].params.stack_depth: 0 is out of bounds, ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from otel_adaprof.errors import ContractError
from otel_adaprof.params import ALL_CATEGORIES, Category, Params

#: Most entries a catalog may hold (decision latency is measured at this size).
MAX_ACTIONS = 64
#: File name of the packaged default catalog (``configs/actions.yaml`` is a link to it).
DEFAULT_CATALOG = "actions.yaml"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TAG = re.compile(r"^[A-Za-z0-9_]{1,32}$")


def action_features(params: Params, tags: Sequence[str] = ()) -> dict[str, float]:
    """Numeric features of one action, on comparable scales (about 0..1).

    >>> f = action_features(Params(sampling_interval_ms=10, stack_depth=64))
    >>> round(f["log_rate"], 2), f["depth"], f["off"]
    (0.67, 0.5, 0.0)
    """
    rate = params.rate_hz
    cats = params.span_filters.categories
    feats: dict[str, float] = {
        # log10(1 + Hz) / 3: 1 Hz -> 0.1, 100 Hz -> 0.67, 1000 Hz -> 1.0
        "log_rate": math.log10(1.0 + rate) / 3.0,
        "rate_frac": rate / 1000.0,
        "off": 0.0 if params.profiling_enabled else 1.0,
        "depth": params.stack_depth / 128.0 if params.profiling_enabled else 0.0,
        "ratio": params.trace_ratio,
        "log_ratio": math.log10(max(params.trace_ratio, 1e-3)) / 3.0 + 1.0,
        "cat_share": len(cats) / len(ALL_CATEGORIES),
        "errors_only": 1.0 if params.span_filters.errors_only else 0.0,
        "pct_trigger": (params.marker_trigger.latency_percentile or 0.0) / 100.0,
        "min_dur": math.log10(1.0 + params.marker_trigger.min_duration_ms) / 5.0,
    }
    sensitivity = float(getattr(params, "burst_sensitivity", 0.0) or 0.0)
    if sensitivity > 0:
        # the agent's reflex: 1.0 at 4 baseline std, 0.5 at 8; burst length in minutes
        feats["reflex"] = min(1.0, 4.0 / sensitivity)
        feats["burst_len"] = float(getattr(params, "burst_seconds", 0.0) or 0.0) / 60.0
    if int(getattr(params, "slow_span_interval_ms", 0) or 0) > 0:
        feats["capture"] = 1.0
    if str(getattr(params, "profile_mode", "wall")) == "cpu":
        feats["cpu_mode"] = 1.0
    for cat in Category:
        feats[f"cat_{cat.value}"] = 1.0 if cat in cats else 0.0
    for tag in tags:
        feats[f"tag_{tag}"] = 1.0
    return feats


@dataclass(frozen=True)
class Action:
    """One catalog entry: a name, its params and its features."""

    name: str
    params: Params
    tags: tuple[str, ...] = ()
    features: Mapping[str, float] = field(default_factory=dict)


class Catalog:
    """An ordered, validated set of actions (indexable, iterable, by name)."""

    def __init__(self, actions: Sequence[Action]) -> None:
        if not actions:
            raise ContractError([("actions", "the catalog needs at least one action")])
        self._actions = tuple(actions)
        self._by_name = {a.name: i for i, a in enumerate(self._actions)}

    def __len__(self) -> int:
        return len(self._actions)

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions)

    def __getitem__(self, index: int) -> Action:
        return self._actions[index]

    def index(self, name: str) -> int:
        """Position of the action called ``name`` (``KeyError`` if absent)."""
        return self._by_name[name]

    def get(self, name: str) -> Action | None:
        """The action called ``name``, or ``None``."""
        i = self._by_name.get(name)
        return None if i is None else self._actions[i]

    @property
    def names(self) -> list[str]:
        """Action names in catalog order."""
        return [a.name for a in self._actions]

    def cheapest(self) -> Action:
        """The action with the least profiling work: lowest rate, then depth, then ratio."""
        return min(
            self._actions,
            key=lambda a: (a.params.rate_hz, a.params.stack_depth, a.params.trace_ratio),
        )

    def profiling_ladder(self) -> list[Action]:
        """One action per distinct rate (the most ordinary one), slowest first.

        The threshold heuristic steps along this ladder.
        """
        best: dict[int, Action] = {}
        for action in self._actions:
            p = action.params
            if p.span_filters.errors_only or p.span_filters.categories != ALL_CATEGORIES:
                continue
            if p.marker_trigger.latency_percentile is not None:
                continue
            cur = best.get(p.rate_hz)
            if cur is None or p.trace_ratio < cur.params.trace_ratio:
                best[p.rate_hz] = action
        return [best[r] for r in sorted(best)]


def parse_catalog(data: Any, source: str = "") -> Catalog:
    """Validate a catalog document (already loaded from YAML or JSON)."""
    prefix = f"{source}: " if source else ""
    if not isinstance(data, Mapping):
        raise ContractError([(source, "catalog must be a mapping with an 'actions' list")])
    unknown = sorted(set(data) - {"version", "actions"})
    if unknown:
        raise ContractError([(f"{prefix}{unknown[0]}", "unknown field")])
    entries = data.get("actions")
    if not isinstance(entries, list) or not entries:
        raise ContractError([(f"{prefix}actions", "must be a non-empty list of actions")])
    if len(entries) > MAX_ACTIONS:
        reason = f"{len(entries)} actions is too many, at most {MAX_ACTIONS} allowed"
        raise ContractError([(f"{prefix}actions", reason)])
    actions: list[Action] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{prefix}actions[{i}]"
        if not isinstance(entry, Mapping):
            raise ContractError([(where, "must be a mapping with name and params")])
        extra = sorted(set(entry) - {"name", "params", "tags"})
        if extra:
            raise ContractError([(f"{where}.{extra[0]}", "unknown field")])
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            reason = f"{name!r} is not a valid name (letters, digits, - and _, up to 64)"
            raise ContractError([(f"{where}.name", reason)])
        if name in seen:
            raise ContractError([(f"{where}.name", f"duplicate action name {name!r}")])
        seen.add(name)
        tags = entry.get("tags", [])
        if not isinstance(tags, list) or not all(
            isinstance(t, str) and _TAG.match(t) for t in tags
        ):
            raise ContractError([(f"{where}.tags", "must be a list of simple names")])
        params = Params.parse(entry.get("params", {}), prefix=f"{where}.params")
        actions.append(Action(name, params, tuple(tags), action_features(params, tags)))
    return Catalog(actions)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read a catalog YAML file; ``None`` loads the packaged default."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_CATALOG).read_text("utf-8")
        source = DEFAULT_CATALOG
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ContractError([(source, f"cannot read catalog: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ContractError([(source, f"not valid YAML: {exc}")]) from None
    return parse_catalog(data, source if path is not None else "")
