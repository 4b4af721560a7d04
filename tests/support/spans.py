"""Reading spans that a real OTLP receiver wrote (``SpanSink``'s JSON lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def attrs(span: dict[str, Any]) -> dict[str, Any]:
    """``{key: python value}`` of an OTLP-JSON span's attributes."""
    out: dict[str, Any] = {}
    for item in span.get("attributes", []):
        value = item.get("value", {})
        if "arrayValue" in value:
            out[item["key"]] = [v.get("stringValue") for v in value["arrayValue"].get("values", [])]
        elif "intValue" in value:
            out[item["key"]] = int(value["intValue"])
        elif "doubleValue" in value:
            out[item["key"]] = float(value["doubleValue"])
        elif "boolValue" in value:
            out[item["key"]] = bool(value["boolValue"])
        else:
            out[item["key"]] = value.get("stringValue")
    return out


def read_spans(path: Path) -> list[dict[str, Any]]:
    """Every span written so far, each with ``attrs`` added."""
    if not path.exists():
        return []
    rows = []
    # The receiver may be writing as we read: a last line without its newline is not
    # complete yet, and is read next time.
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    for line in complete.splitlines():
        if line.strip():
            row = json.loads(line)
            row["attrs"] = attrs(row)
            rows.append(row)
    return rows


def start_ns(span: dict[str, Any]) -> int:
    """The span's start, unix ns."""
    return int(span.get("startTimeUnixNano", 0))
