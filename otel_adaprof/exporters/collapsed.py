"""Collapsed stacks (Brendan Gregg's folded format): one ``stack count`` per line.

Readable by flamegraph.pl, inferno, speedscope and most flame-graph tools.

>>> print(to_collapsed({"main (a.py:1);work (a.py:5)": 3, "main (a.py:1)": 1}), end="")
main (a.py:1);work (a.py:5) 3
main (a.py:1) 1
>>> parse_collapsed("a;b 3\\na 1\\n")
{'a;b': 3, 'a': 1}
"""

from __future__ import annotations

from collections.abc import Mapping


def to_collapsed(histogram: Mapping[str, int]) -> str:
    """Lines ``stack count``, most samples first (ties by stack)."""
    rows = sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))
    return "".join(f"{stack} {count}\n" for stack, count in rows if count > 0)


def parse_collapsed(text: str) -> dict[str, int]:
    """Read folded lines back (counts of repeated stacks are summed; lines that are not
    ``stack count`` are skipped)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            out[stack] = out.get(stack, 0) + int(count)
    return out
