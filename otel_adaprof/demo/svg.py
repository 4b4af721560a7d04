"""Inline SVG drawing for the report: time-series charts and a flame graph.

No dependencies and no scripts: every figure is an ``<svg>`` string that the report
embeds, with ``<title>`` tooltips. Pure functions, so tests can pin their output.

Usage::

    >>> from otel_adaprof.demo.svg import line_chart, flame_graph
    >>> svg = line_chart("reward", [(0.0, 1.0), (5.0, 2.0)])
    >>> svg.startswith("<svg") and "reward" in svg
    True
    >>> "price_items" in flame_graph({"main;price_items": 3, "main;parse_catalog": 1})
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from html import escape

Series = Sequence[tuple[float, float | None]]

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def line_chart(
    title: str,
    series: Series | Mapping[str, Series],
    width: int = 370,
    height: int = 180,
    step: bool = False,
    marks: Sequence[tuple[float, str]] = (),
    unit: str = "",
) -> str:
    """An SVG line chart of one or several ``(t, value)`` series (``None`` values skipped).

    ``step`` draws a staircase (for params, which hold until changed); ``marks`` are
    labelled vertical lines (phase starts).
    """
    named: Mapping[str, Series] = series if isinstance(series, Mapping) else {title: series}
    points = [(t, v) for s in named.values() for t, v in s if v is not None]
    left, right, top, bottom = 52, 10, 24, 24
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{left}" y="15" class="chart-title">{escape(title)}'
        f"{escape(f' ({unit})') if unit else ''}</text>",
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot"/>',
    ]
    if not points:
        parts.append(f'<text x="{left + 8}" y="{top + ph / 2}" class="empty">no data</text></svg>')
        return "".join(parts)
    t0 = min(t for t, _ in points)
    t1 = max(max(t for t, _ in points), t0 + 1e-9)
    lo = min(0.0, min(v for _, v in points))
    hi = max(v for _, v in points)
    hi = hi if hi > lo else lo + 1.0

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * pw

    def y(v: float) -> float:
        return top + ph - (v - lo) / (hi - lo) * ph

    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        parts.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">'
            f"{_fmt(v)}</text>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 6}" class="tick">0 s</text>'
        f'<text x="{left + pw}" y="{height - 6}" class="tick" text-anchor="end">'
        f"{_fmt(t1 - t0)} s</text>"
    )
    for t, label in marks:
        if t0 <= t <= t1:
            parts.append(
                f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + ph}" class="mark"/>'
                f'<text x="{x(t) + 3:.1f}" y="{top + 10}" class="mark-label">{escape(label)}</text>'
            )
    for i, (name, s) in enumerate(named.items()):
        color = _PALETTE[i % len(_PALETTE)]
        pts = [(t, v) for t, v in s if v is not None]
        coords: list[str] = []
        for j, (t, v) in enumerate(pts):
            if step and j > 0:
                coords.append(f"{x(t):.1f},{y(pts[j - 1][1]):.1f}")
            coords.append(f"{x(t):.1f},{y(v):.1f}")
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.8" '
            f'points="{" ".join(coords)}"><title>{escape(name)}</title></polyline>'
        )
        for t, v in pts:
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.2" fill="{color}">'
                f"<title>{escape(name)} at {_fmt(t - t0)} s: {_fmt(v)}</title></circle>"
            )
        if len(named) > 1:
            parts.append(
                f'<text x="{left + pw - 4}" y="{top + 12 + 12 * i}" text-anchor="end" '
                f'fill="{color}" class="legend">{escape(name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _color(name: str) -> str:
    digest = hashlib.blake2s(name.encode(), digest_size=2).digest()
    hue = 10 + digest[0] % 45  # warm flame colours
    light = 55 + digest[1] % 20
    return f"hsl({hue},85%,{light}%)"


def _tree(stacks: Mapping[str, float]) -> dict[str, object]:
    root: dict[str, object] = {"n": 0.0, "c": {}}
    for stack, count in stacks.items():
        node = root
        node["n"] = float(node["n"]) + count  # type: ignore[arg-type]
        for frame in stack.split(";"):
            children: dict[str, dict[str, object]] = node["c"]  # type: ignore[assignment]
            node = children.setdefault(frame, {"n": 0.0, "c": {}})
            node["n"] = float(node["n"]) + count  # type: ignore[arg-type]
    return root


def flame_graph(
    stacks: Mapping[str, float], width: int = 1100, row: int = 17, max_depth: int = 48
) -> str:
    """An icicle-style flame graph (root at the top) of ``{collapsed stack: count}``.

    Frames narrower than half a pixel are left out; each frame's tooltip gives its
    samples and share.
    """
    tree = _tree(stacks)
    total = float(tree["n"])  # type: ignore[arg-type]
    rects: list[str] = []
    depth_seen = 0

    def walk(node: dict[str, object], x0: float, depth: int) -> None:
        nonlocal depth_seen
        children: dict[str, dict[str, object]] = node["c"]  # type: ignore[assignment]
        x = x0
        for name, child in sorted(children.items()):
            n = float(child["n"])  # type: ignore[arg-type]
            w = n / total * width
            if w >= 0.5 and depth < max_depth:
                depth_seen = max(depth_seen, depth + 1)
                label = name if w > 40 else ""
                chars = int(w / 7)
                text = label if len(label) <= chars else label[: max(0, chars - 1)] + "…"
                rects.append(
                    f'<g class="frame" data-name="{escape(name)}">'
                    f"<title>{escape(name)} — {n:g} samples ({100 * n / total:.1f} %)</title>"
                    f'<rect x="{x:.1f}" y="{depth * row}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="{_color(name)}"/>'
                    f'<text x="{x + 3:.1f}" y="{depth * row + row - 5}">{escape(text)}</text></g>'
                )
                walk(child, x, depth + 1)
            x += w

    if total > 0:
        walk(tree, 0.0, 0)
    height = max(1, depth_seen) * row + 2
    body = "".join(rects) if rects else '<text x="8" y="14">no samples</text>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flame" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="flame graph">{body}</svg>'
    )
