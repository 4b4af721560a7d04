"""The action catalog: default content, validation with field-naming errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_adaprof.controller.policy.catalog import MAX_ACTIONS, load_catalog, parse_catalog
from otel_adaprof.errors import ContractError

ROOT = Path(__file__).resolve().parents[2]


def test_default_catalog_covers_every_family_within_64():
    cat = load_catalog()
    assert 1 <= len(cat) <= MAX_ACTIONS
    tags = {t for a in cat for t in a.tags}
    assert {"off", "sentinel", "light", "balanced", "deep", "focused"} <= tags
    assert cat.cheapest().params.profiling_enabled is False
    focused = [a for a in cat if "focused" in a.tags]
    assert any(a.params.span_filters.errors_only for a in focused)
    assert any(len(a.params.span_filters.categories) == 1 for a in focused)
    # every action has features, and different params give different features
    assert len({tuple(sorted(a.features.items())) for a in cat}) == len(cat)


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
