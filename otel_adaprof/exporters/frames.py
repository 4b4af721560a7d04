"""Parsing collapsed stacks into frames, shared by the profile exporters.

A collapsed stack is ``root;...;leaf`` with frames written ``function (file:line)``
(py-spy's format). Frames without a location keep an empty file and line 0.

>>> parse_frame("burn_cpu (work.py:42)")
Frame(name='burn_cpu', file='work.py', line=42)
>>> [f.name for f in parse_stack("main (a.py:1);<module>")]
['main', '<module>']
"""

from __future__ import annotations

import re
from typing import NamedTuple

_FRAME = re.compile(r"^(?P<name>.*?)\s*\((?P<file>[^()]*?):(?P<line>\d+)\)$")


class Frame(NamedTuple):
    """One stack frame."""

    name: str
    file: str
    line: int


def parse_frame(text: str) -> Frame:
    """Split ``function (file:line)``; anything else is a bare name."""
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip() or "?", "", 0)
    return Frame(match["name"] or "?", match["file"], int(match["line"]))


def parse_stack(stack: str) -> list[Frame]:
    """Frames of a collapsed stack, root first."""
    return [parse_frame(part) for part in stack.split(";") if part.strip()]
