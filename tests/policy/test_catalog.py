"""The action catalog: default content, validation with field-naming errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_adaprof.controller.policy.catalog import MAX_ACTIONS, load_catalog, parse_catalog
from otel_adaprof.errors import ContractError

ROOT = Path(__file__).resolve().parents[2]


def test_default_catalog_has_maintenance_learning_reflex_and_capture():
    cat = load_catalog()
    assert 1 <= len(cat) <= 16  # small: a bandit learns it in a few hundred windows
    tags = {t for a in cat for t in a.tags}
    assert {"off", "fallback", "maintain", "learn", "reflex"} <= tags
    assert cat.cheapest().params.profiling_enabled is False
    maintain = [a.params for a in cat if "maintain" in a.tags]
    learn = [a.params for a in cat if "learn" in a.tags]
    assert max(p.rate_hz for p in maintain) <= 5 < min(p.rate_hz for p in learn)
    # fast reflexes in the agent: maintenance actions arm the burst reflex
    assert any(p.burst_sensitivity > 0 and p.burst_seconds > 0 for p in maintain)
    # markers on the slowest tenth of each operation, captured in-process between
    # py-spy's samples (the reader is safe on every Python: thread_stacks); while py-spy
    # learns at 20-100 Hz it samples the slow spans too; of the fallbacks only the one
    # that keeps the capture does (no py-spy but the glimpse: one short burst on a change)
    assert all(p.marker_trigger.latency_percentile == 90 for p in maintain + learn)
    assert all(p.slow_span_interval_ms == 50 for p in maintain)
    assert all(p.slow_span_interval_ms == 0 for p in learn)
    capturing = [a for a in cat if "fallback" in a.tags and a.params.slow_span_interval_ms]
    assert [a.name for a in capturing] == ["fallback-capture"]
    assert not capturing[0].params.profiling_enabled
    # every retreat but off keeps a glimpse: the reflex armed for one short burst
    retreats = [a.params for a in cat if "fallback" in a.tags and "off" not in a.tags]
    assert retreats and all(p.burst_sensitivity > 0 and p.burst_seconds <= 3 for p in retreats)
    assert not cat.cheapest().params.burst_sensitivity  # off is off
    # no trace is dropped to save bytes nobody asked to save
    assert all(a.params.trace_ratio == 1.0 for a in cat)
    # every action has features, and different params give different features
    assert len({tuple(sorted(a.features.items())) for a in cat}) == len(cat)
    assert len(cat) <= MAX_ACTIONS


def test_configs_actions_yaml_is_the_packaged_default():
    packaged = ROOT / "otel_adaprof" / "controller" / "policy" / "actions.yaml"
    assert (ROOT / "configs" / "actions.yaml").read_text() == packaged.read_text()
    assert load_catalog(ROOT / "configs" / "actions.yaml").names == load_catalog().names


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        (
            {"actions": [{"name": "x", "params": {"trace_ratio": 2}}]},
            "actions[0].params.trace_ratio",
            "out of bounds",
        ),
        (
            {"actions": [{"name": "x", "params": {"span_filters": {"categories": ["gpu"]}}}]},
            "actions[0].params.span_filters.categories",
            "unknown category",
        ),
        (
            {"actions": [{"name": "x", "params": {}}, {"name": "x", "params": {}}]},
            "actions[1].name",
            "duplicate",
        ),
        ({"actions": [{"name": "bad name!", "params": {}}]}, "actions[0].name", "not a valid"),
        ({"actions": [{"name": "x", "params": {}, "colour": 1}]}, "actions[0].colour", "unknown"),
        ({"actions": []}, "actions", "non-empty"),
        ({"actions": [{"name": f"a{i}", "params": {}} for i in range(65)]}, "actions", "too many"),
    ],
)
def test_bad_catalogs_name_the_field(doc, field, words):
    with pytest.raises(ContractError) as info:
        parse_catalog(doc)
    assert info.value.field == field
    assert words in str(info.value)


def test_user_catalog_file_replaces_the_default(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "actions:\n"
        "  - {name: quiet, params: {sampling_interval_ms: 0}}\n"
        "  - {name: loud, params: {sampling_interval_ms: 10, stack_depth: 32}}\n"
    )
    cat = load_catalog(path)
    assert cat.names == ["quiet", "loud"]
    assert cat[cat.index("loud")].params.rate_hz == 100
    with pytest.raises(ContractError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
