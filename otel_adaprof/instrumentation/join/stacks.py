"""Stack frames as text, as both profiler backends produce them.

A frame is written ``function (file:line)`` — py-spy's collapsed format, which the
controller's exporters parse (:mod:`otel_adaprof.exporters.frames`). Files are
shortened to their path below the ``sys.path`` entry that holds them, as py-spy does.
A stack is a tuple of frames, root first; truncating to a depth keeps the leaf end.

    >>> frame_text("burn", "/srv/app/shop/work.py", 12, roots=("/srv/app",))
    'burn (shop/work.py:12)'
    >>> collapse(("main (a.py:1)", "handle (b.py:2)", "burn (c.py:3)"), depth=2)
    'handle (b.py:2);burn (c.py:3)'
    >>> is_waiting(("serve_forever (socketserver.py:233)",
    ...             "_PollLikeSelector.select (selectors.py:415)"))
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import lru_cache
from types import CodeType, FrameType

Stack = tuple[str, ...]

#: ``(file name, function name)`` pairs of the standard library where a thread waits
#: rather than runs (the class, if any, is ignored: ``_PollLikeSelector.select`` is
#: ``select``). A sample whose leaf is one of these is *waiting*: it stays on the spans
#: it falls in (it shows what a slow span waited on) but is left out of the CPU
#: histogram sent to the controller.
WAIT_FRAMES: frozenset[tuple[str, str]] = frozenset(
    {
        ("selectors.py", "select"),
        ("threading.py", "wait"),
        ("threading.py", "_wait_for_tstate_lock"),
        ("threading.py", "join"),
        ("queue.py", "get"),
        ("socket.py", "accept"),
        ("socket.py", "readinto"),
        ("socketserver.py", "serve_forever"),
        ("ssl.py", "read"),
        ("ssl.py", "recv_into"),
        ("subprocess.py", "_wait"),
        ("subprocess.py", "wait"),
        ("subprocess.py", "_communicate"),
        ("base_events.py", "_run_once"),
        ("connection.py", "_recv"),
        ("connection.py", "_recv_bytes"),
        ("connection.py", "_poll"),
    }
)


@lru_cache(maxsize=1)
def _default_roots() -> tuple[str, ...]:
    roots = {os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)}
    return tuple(sorted(roots, key=len, reverse=True))


@lru_cache(maxsize=8192)
def short_file(path: str, roots: tuple[str, ...] | None = None) -> str:
    """``path`` below the longest matching ``sys.path`` entry, else its last two parts."""
    for root in roots if roots is not None else _default_roots():
        if path.startswith(root + os.sep):
            return path[len(root) + 1 :]
    parts = path.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:]).lstrip("/") if len(parts) > 1 else path


def frame_text(function: str, path: str, line: int, roots: tuple[str, ...] | None = None) -> str:
    """One frame as ``function (file:line)``."""
    return f"{function} ({short_file(path, roots)}:{line})"


class FrameNames:
    """The text of live frames, cached by code object and line (both in-process
    samplers read the same few hundred frames over and over).

        >>> import sys
        >>> names = FrameNames()
        >>> def here() -> str:
        ...     return names(sys._getframe())
        >>> here().startswith("here (")
        True
    """

    #: Cached frames at most (the cache starts again beyond it).
    MAX_NAMES = 20_000

    def __init__(self) -> None:
        self._names: dict[tuple[CodeType, int], str] = {}

    def __call__(self, frame: FrameType) -> str:
        key = (frame.f_code, frame.f_lineno)
        text = self._names.get(key)
        if text is None:
            if len(self._names) > self.MAX_NAMES:
                self._names.clear()
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            text = self._names[key] = frame_text(name, code.co_filename, frame.f_lineno)
        return text


def collapse(stack: Sequence[str], depth: int, max_chars: int | None = None) -> str:
    """``root;...;leaf`` keeping the last ``depth`` frames (the leaf end), and at most
    ``max_chars`` characters (whole frames, cut at the root end)."""
    text = ";".join(stack[-depth:]) if depth > 0 else ""
    if max_chars is not None and len(text) > max_chars:
        text = text[-max_chars:].split(";", 1)[-1]
    return text


def _leaf_key(frame: str) -> tuple[str, str]:
    name, _, rest = frame.partition(" (")
    file = rest.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return file, name.rsplit(".", 1)[-1]


def is_waiting(stack: Sequence[str]) -> bool:
    """Whether the stack's leaf is a known waiting call of the standard library."""
    return bool(stack) and _leaf_key(stack[-1]) in WAIT_FRAMES
