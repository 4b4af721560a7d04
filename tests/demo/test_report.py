"""The report folder: files, plots from the timeline, flame graph, speedscope document."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from otel_adaprof.demo.report import write_report
from otel_adaprof.demo.svg import flame_graph, line_chart
from otel_adaprof.demo.timeline import param_changes, parse_timeline
from otel_adaprof.exporters.collapsed import parse_collapsed

from .report_data import COLLAPSED, T0, timeline


def test_timeline_rows_and_params_changes():
    rows = parse_timeline(timeline())
    assert len(rows) == 12 and rows[0].t == T0
    assert rows[0].rate_hz == 20.0 and rows[-1].rate_hz == 100.0
    assert rows[-1].profiler_cpu_fraction == 0.03
    assert rows[0].information == pytest.approx(0.6)
    assert rows[3].reward == pytest.approx(0.0)
    changes = param_changes(rows)
    assert [t for t, _, _ in changes] == [T0 + 10]
    # a list body and missing figures are read without failing
    assert parse_timeline([{"params": None, "reward": "x"}])[0].reward is None
    assert parse_timeline("garbage") == []


def test_charts_and_flame_graph_are_well_formed_svg():
    chart = line_chart("rate", {"a": [(0.0, 1.0), (1.0, None), (2.0, 3.0)]}, step=True,
                       marks=[(1.0, "hot_path")])  # fmt: skip
    root = ET.fromstring(chart)
    assert root.tag.endswith("svg") and "hot_path" in chart
    assert "no data" in line_chart("empty", [])
    flame = flame_graph(COLLAPSED)
    ET.fromstring(flame)
    assert "price_items" in flame and "&lt;select &amp; escape&gt;" in flame
    # widths are proportional to samples: price_items (40 of 105) ≈ 38 % of 1100 px
    assert 'width="419.0"' in flame


def test_write_report_folder(tmp_path):
    spans = tmp_path / "in.jsonl"
    spans.write_text('{"name": "GET /price"}\n')
    files = write_report(tmp_path / "r", timeline(), COLLAPSED, spans_file=spans,
                         summary={"windows": 12, "truth_phase": "steady"},
                         marks=[(T0 + 9, "hot_path")])  # fmt: skip
    names = sorted(p.name for p in files)
    assert names == ["index.html", "profile.collapsed.txt", "profile.speedscope.json",
                     "spans.jsonl", "summary.json", "timeline.json"]  # fmt: skip
    html = (tmp_path / "r/index.html").read_text()
    assert html.count("<svg") == 10  # 9 charts + the flame graph
    assert "1 params changes" in html and "true share (steady)" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    doc = json.loads((tmp_path / "r/profile.speedscope.json").read_text())
    assert doc["profiles"][0]["type"] == "sampled"
    assert sum(doc["profiles"][0]["weights"]) == 105
    again = parse_collapsed((tmp_path / "r/profile.collapsed.txt").read_text())
    assert again == COLLAPSED
    assert json.loads((tmp_path / "r/timeline.json").read_text()) == timeline()


def test_timeline_agent_as_identity_object():
    raw = [{"agent": {"service": "shop", "instance_id": "shop-1"}, "config_version": 3}]
    row = parse_timeline(raw)[0]
    assert row.agent == "shop-1" and row.config_version == 3


def test_timeline_in_the_controller_store_shape():
    """The shape ``otel_adaprof.controller.store.Store.timeline`` returns (a list)."""
    raw = [{"agent": "shop-1", "config_version": 2, "at": 1.0e9, "action": "deep-100hz",
            "probability": 0.9, "params": {"sampling_interval_ms": 10}, "state": None,
            "reward": 0.25,
            "reward_terms": {"information_gain": 0.125, "novelty": 0.0}}]  # fmt: skip
    row = parse_timeline(raw)[0]
    assert (row.t, row.rate_hz, row.reward, row.information) == (1.0e9, 100.0, 0.25, 0.125)
