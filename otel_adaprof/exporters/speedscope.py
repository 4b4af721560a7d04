"""Speedscope's file format (https://www.speedscope.app/file-format-schema.json).

One ``sampled`` profile: each distinct stack is a sample (frame indices, root first)
weighted by its count.

>>> doc = to_speedscope({"main (a.py:1);work (a.py:5)": 3}, name="shop")
>>> doc["profiles"][0]["samples"], doc["profiles"][0]["weights"]
([[0, 1]], [3])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otel_adaprof import __version__
from otel_adaprof.exporters.frames import Frame, parse_stack

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def to_speedscope(histogram: Mapping[str, float], name: str = "otel-adaprof") -> dict[str, Any]:
    """A speedscope document for a ``{collapsed_stack: count}`` histogram."""
    frames: list[dict[str, Any]] = []
    index: dict[Frame, int] = {}
    samples: list[list[int]] = []
    weights: list[float] = []
    for stack, count in sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0])):
        if count <= 0:
            continue
        ids = []
        for frame in parse_stack(stack):
            if frame not in index:
                index[frame] = len(frames)
                entry: dict[str, Any] = {"name": frame.name}
                if frame.file:
                    entry["file"] = frame.file
                    entry["line"] = frame.line
                frames.append(entry)
            ids.append(index[frame])
        samples.append(ids)
        weights.append(int(count) if float(count).is_integer() else float(count))
    total = sum(weights)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": total,
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"otel-adaprof {__version__}",
    }
