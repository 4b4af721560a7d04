"""Start the native sampler in this process, with new threads timed from their start.

Copied beside the built module by ``build.py``; the bench scripts' targets run::

    import native_start
    native_start.start(10_000, "thread")

On the ``thread`` clock each Python thread gets its CPU-clock timer when the sampler
lists the threads (every 100 ms) or, for a ``threading.Thread``, as soon as it starts
(``Thread._bootstrap_inner`` calls ``track_current`` first): a thread-per-request
server's threads often end before the next listing.
"""

from __future__ import annotations

import threading
from typing import Any

import _native_sampler as ns  # type: ignore[import-not-found]

_bootstrap_inner = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]


def _tracked_bootstrap_inner(self: threading.Thread) -> Any:
    ns.track_current()
    return _bootstrap_inner(self)


def start(
    interval_us: int, clock: str, depth: int = 64, threads: str = "holder", on_cpu: bool = False
) -> None:
    """Start sampling on ``clock`` ('wall', 'thread', 'tick' or 'cpu'); ``threads='all'``
    (wall clock): every thread at each read, not the GIL holder; ``on_cpu=True``: keep a
    GIL holder's sample only when it ran while it was read (``drain()`` leaves the others
    out; since session 42 a holder whose clock stood still is looked at again after the
    sampler has slept 0.1 ms, so the sampler's own wake-up does not count against it)."""
    ns.start(interval_us, depth, clock, threads, on_cpu)
    threading.Thread._bootstrap_inner = _tracked_bootstrap_inner  # type: ignore[attr-defined]
