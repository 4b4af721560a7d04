"""The session report folder: an HTML page with plots and a flame graph, plus data files.

``write_report`` writes into ``out``:

``index.html``             params, reward, information and overhead over time, the
                           function shares against ground truth, and a flame graph —
                           self-contained (inline SVG and a few lines of inline script,
                           nothing fetched from the network)
``profile.speedscope.json`` the session profile (open it in https://speedscope.app)
``profile.collapsed.txt``  the same profile as collapsed stacks
``timeline.json``          the controller's timeline as received
``spans.jsonl``            the spans (copied from the span sink), when given
``summary.json``           the run's figures

Usage::

    >>> from otel_adaprof.demo.report import write_report
    >>> paths = write_report("/tmp/report", timeline={"windows": []},
    ...                      collapsed={"main;work": 10})   # doctest: +SKIP
    >>> sorted(p.name for p in paths)                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from otel_adaprof.demo.ground_truth import GROUND_TRUTH, function_shares
from otel_adaprof.demo.svg import flame_graph, line_chart
from otel_adaprof.demo.timeline import TimelineRow, param_change_labels, parse_timeline
from otel_adaprof.exporters.speedscope import to_speedscope

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1160px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.sub{color:#666} .charts{display:flex;flex-wrap:wrap;gap:12px}
.chart .plot{fill:#fafafa;stroke:#ccc} .chart .grid{stroke:#eee}
.chart-title{font-weight:600;font-size:12px} .tick{font-size:10px;fill:#666}
.mark{stroke:#999;stroke-dasharray:3 3} .mark-label{font-size:9px;fill:#777}
.legend{font-size:10px} .empty{fill:#999}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left}
.flame text{font:11px monospace;pointer-events:none} .flame rect{stroke:#fff;stroke-width:.5}
.flame .frame.hit rect{fill:#6cf!important} #search{margin:4px 0 8px;padding:3px 6px;width:260px}
"""

# Highlights flame graph frames matching the search box; marks the page ready, which
# the Chromium test reads to know the script ran to its end without an error.
_SCRIPT = """
(function(){
  var box=document.getElementById('search');
  var frames=document.querySelectorAll('.flame .frame');
  var out=document.getElementById('matches');
  function run(){
    var q=box.value.toLowerCase(), hits=0;
    frames.forEach(function(f){
      var on=q.length>0&&f.getAttribute('data-name').toLowerCase().indexOf(q)>=0;
      f.classList.toggle('hit',on); if(on){hits++;}
    });
    out.textContent=q?hits+' frames match':'';
  }
  box.addEventListener('input',run);
  document.body.setAttribute('data-report-ready','1');
})();
"""


def _series(rows: Sequence[TimelineRow], key: str) -> dict[str, list[tuple[float, float | None]]]:
    """Per-agent series of a row attribute or state figure."""
    out: dict[str, list[tuple[float, float | None]]] = {}
    for r in rows:
        value = getattr(r, key) if hasattr(TimelineRow, key) else r.figure(key)
        out.setdefault(r.agent or "agent", []).append((r.t, value))
    return out


def _shares_table(captured: Mapping[str, float], truth: Mapping[str, float], label: str) -> str:
    head = "<tr><th>function</th><th>captured share</th>"
    head += f"<th>true share ({escape(label)})</th></tr>" if truth else "</tr>"
    body = []
    for name, share in sorted(captured.items(), key=lambda kv: -kv[1]):
        cells = f"<td>{escape(name)}</td><td>{100 * share:.1f} %</td>"
        if truth:
            cells += f"<td>{100 * truth.get(name, 0.0):.1f} %</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _truth_of(summary: Mapping[str, Any]) -> tuple[dict[str, float], str]:
    """The ground truth the report compares with: ``summary["truth"]`` (a share map,
    labelled ``truth_label``) or the shares of phase ``summary["truth_phase"]``."""
    given = summary.get("truth")
    if isinstance(given, Mapping) and given:
        return {str(k): float(v) for k, v in given.items()}, str(summary.get("truth_label", ""))
    phase = summary.get("truth_phase")
    if isinstance(phase, str) and phase in GROUND_TRUTH:
        return dict(GROUND_TRUTH[phase]), phase
    return {}, ""


def render_html(
    rows: Sequence[TimelineRow],
    collapsed: Mapping[str, float],
    summary: Mapping[str, Any],
    marks: Sequence[tuple[float, str]] = (),
    title: str = "otel-adaprof session report",
) -> str:
    """The report page as one self-contained HTML string."""
    charts = [
        line_chart("py-spy rate", _series(rows, "rate_hz"), step=True, marks=marks, unit="Hz"),
        line_chart("stack depth", _series(rows, "stack_depth"), step=True, marks=marks),
        line_chart("trace ratio", _series(rows, "trace_ratio"), step=True, marks=marks),
        line_chart("reward", _series(rows, "reward"), marks=marks),
        line_chart("information gain", _series(rows, "information"), marks=marks),
        line_chart("samples", _series(rows, "samples_per_s"), marks=marks, unit="/s"),
        line_chart(
            "profiler CPU", _series(rows, "profiler_cpu_fraction"), marks=marks, unit="of a core"
        ),
        line_chart(
            "bytes exported", _series(rows, "bytes_exported_per_s"), marks=marks, unit="B/s"
        ),
        line_chart("markers", _series(rows, "markers_per_s"), marks=marks, unit="/s"),
    ]
    changes = param_change_labels(rows)
    t0 = rows[0].t if rows else 0.0
    change_items = "".join(
        f"<li>{t - t0:.0f} s: {escape(a)} → <b>{escape(b)}</b>"
        + (f' <span class="sub">({escape(action)})</span>' if action else "")
        + "</li>"
        for t, a, b, action in changes
    )
    summary_rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
        for k, v in summary.items()
        if not isinstance(v, (dict, list))
    )
    shares = function_shares(collapsed)
    truth, truth_label = _truth_of(summary)
    total_samples = sum(collapsed.values())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<div class="sub">generated {time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} ·
{len(rows)} windows · {len(changes)} params changes · {total_samples:g} samples</div>
<h2>Summary</h2><table>{summary_rows}</table>
<h2>Params in force</h2><div class="charts">{"".join(charts[:3])}</div>
<h2>Reward and information</h2><div class="charts">{"".join(charts[3:6])}</div>
<h2>Overhead and markers</h2><div class="charts">{"".join(charts[6:])}</div>
<h2>Params changes</h2><ul>{change_items or "<li>none</li>"}</ul>
<h2>Function shares (session profile)</h2>
{_shares_table(shares, truth, truth_label)}
<h2>Flame graph (session profile)</h2>
<input id="search" type="search" placeholder="highlight frames…"> <span id="matches"></span>
<div class="flamewrap">{flame_graph(collapsed)}</div>
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(
    out: str | Path,
    timeline: Any,
    collapsed: Mapping[str, float],
    speedscope: Mapping[str, Any] | None = None,
    spans_file: str | Path | None = None,
    summary: Mapping[str, Any] | None = None,
    marks: Sequence[tuple[float, str]] = (),
) -> list[Path]:
    """Write the report folder; returns the files written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows = parse_timeline(timeline)
    data = dict(summary or {})
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    put("index.html", render_html(rows, collapsed, data, marks))
    put("profile.speedscope.json", json.dumps(speedscope or to_speedscope(collapsed)))
    put(
        "profile.collapsed.txt",
        "".join(f"{s} {c:g}\n" for s, c in sorted(collapsed.items(), key=lambda kv: -kv[1])),
    )
    put("timeline.json", json.dumps(timeline, indent=1))
    if spans_file is not None and Path(spans_file).exists():
        target = folder / "spans.jsonl"
        if Path(spans_file).resolve() != target.resolve():
            shutil.copyfile(spans_file, target)
        written.append(target)
    put("summary.json", json.dumps(data, indent=1, default=str))
    return written
