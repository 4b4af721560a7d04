"""The examples in docs/protocol.md are valid messages (the doc cannot drift)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from otel_adaprof.protocol import ErrorResponse, decode, decode_poll_request, decode_poll_response

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _examples() -> dict[str, dict[str, object]]:
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, dict[str, object]] = {}
    for section in re.split(r"^## ", text, flags=re.M):
        title = section.splitlines()[0].strip("` ")
        block = re.search(r"```json\n(.*?)```", section, flags=re.S)
        if block:
            found[title] = json.loads(block.group(1))
    return found


def test_every_message_has_a_valid_example():
    examples = _examples()
    assert set(examples) == {"PollRequest", "PollResponse", "ErrorResponse"}
    request = decode_poll_request(examples["PollRequest"])
    assert request.window is not None and request.stacks is not None
    response = decode_poll_response(examples["PollResponse"])
    assert response.params.rate_hz == 100
    assert decode(ErrorResponse, examples["ErrorResponse"]).field == "window.window_seconds"
